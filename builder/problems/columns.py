"""How sources spell their columns: from a source row to a ``schemas.PROBLEMS`` row.

Columns are found by name (``task_id`` -> ``problem_id``, ``question`` -> ``prompt``, TACO's JSON
``input_output`` -> ``inputs``/``outputs``...) or through an explicit ``column_map`` from schema
column to source column. A source column may be a path into a JSON string or struct column:
``"input_output.inputs"`` or ``"public_test_cases[].input"`` (a list of objects). Also the split
order every reader and report uses, and the test's ``check`` function (its parameter names the
entry point in HumanEvalPack; the quality report asks whether it is ever used).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

import schemas
from builder.errors import UserError

SPLIT_ORDER = ("train", "validation", "test")

# schema column -> source columns tried in order when the user maps nothing for it
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "problem_id": ("problem_id", "task_id", "question_id", "id"),
    "prompt": ("prompt", "question", "question_content", "problem", "description"),
    "test": ("test",),
    "entry_point": ("entry_point",),
    "inputs": ("inputs", "input_output.inputs"),
    "outputs": ("outputs", "input_output.outputs"),
    "canonical_solution": ("canonical_solution",),
    "split": ("split",),
}
MAPPABLE = tuple(DEFAULT_COLUMNS) + ("kind",)


def split_key(split: str) -> tuple[int, str]:
    """Sort key of a split name: train, validation, test, then any other by name."""
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else 99, split)


def check_function(tree: ast.AST) -> ast.FunctionDef | None:
    """The test's ``def check(<param>)``; the parameter is usually ``candidate`` but HumanEvalPack
    names it after the function (``def check(has_close_elements)``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "check" and node.args.args:
            return node
    return None


def entry_point_from_test(test: str | None) -> str | None:
    """For sets without an ``entry_point`` column whose ``check`` names its parameter after the
    function under test (HumanEvalPack), that name is the entry point."""
    try:
        check = check_function(ast.parse(test or ""))
    except SyntaxError:
        return None
    name = check.args.args[0].arg if check else None
    return name if name and name != "candidate" else None


# --- mapping source columns onto the schema ------------------------------------------------------

Getter = Callable[[Mapping[str, Any], str], Any]


def resolve_mapping(raw: dict[str, pa.Table], column_map: Mapping[str, str] | None,
                     label: str) -> dict[str, Getter]:
    """schema column -> function reading it from a source row. Explicit entries must exist
    (``UserError`` names the column and lists the available ones); defaults are used if present."""
    columns: list[str] = []
    for t in raw.values():
        columns += [c for c in t.column_names if c not in columns]
    mapping: dict[str, Getter] = {}
    for target, path in (column_map or {}).items():
        if target not in MAPPABLE:
            raise UserError(f"column map: {target!r} is not a problems column (choose from {', '.join(MAPPABLE)})")
        if _root_column(path) not in columns:
            raise UserError(f"column map: {target!r} -> {path!r}, but {label} has no column "
                            f"{_root_column(path)!r} (available: {', '.join(columns)})")
        mapping[target] = _getter(path)
    for target, candidates in DEFAULT_COLUMNS.items():
        if target in mapping:
            continue
        for path in candidates:
            if _root_column(path) in columns:
                mapping[target] = _getter(path)
                break
    for required in ("problem_id", "prompt"):
        if required not in mapping:
            raise UserError(f"{label}: no {required!r} column (tried {', '.join(DEFAULT_COLUMNS[required])}; "
                            f"available: {', '.join(columns)}); map one with column_map")
    return mapping


def _root_column(path: str) -> str:
    return re.split(r"\.|\[\]", path, maxsplit=1)[0]


def _getter(path: str) -> Getter:
    """A reader for ``col``, ``col.key`` or ``col[].key``: the column may hold a dict/struct or a
    JSON string of one (TACO's ``input_output``), or a list of them (LiveCodeBench's test cases)."""
    root, *rest = re.split(r"(?=\.|\[\])", path)
    steps = [s for s in rest if s]

    def get(record: Mapping[str, Any], where: str) -> Any:
        value = record.get(root)
        for step in steps:
            if value is None:
                return None
            value = _parse_json(value, f"{where}, column {root!r}")
            if step == "[]":
                if not isinstance(value, list):
                    raise UserError(f"{where}: column {root!r} is not a list at {path!r}")
                continue
            key = step[1:]
            if isinstance(value, list):
                value = [_parse_json(v, f"{where}, column {root!r}") for v in value]
                value = [v.get(key) if isinstance(v, dict) else None for v in value]
            elif isinstance(value, dict):
                value = value.get(key)
            else:
                raise UserError(f"{where}: column {root!r} holds {type(value).__name__}, no key {key!r} at {path!r}")
        return value

    return get


def _parse_json(value: Any, where: str) -> Any:
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: not valid JSON ({e.msg} at position {e.pos})") from None
    return value


def to_problem(record: Mapping[str, Any], mapping: Mapping[str, Getter], *, kind: str | None, name: str,
                split: str, where: str) -> dict[str, Any]:
    values = {target: get(record, where) for target, get in mapping.items()}
    pid = values.get("problem_id")
    if pid is None or str(pid).strip() == "":
        raise UserError(f"{where}: empty problem id")
    pid = str(pid).strip()
    prompt = values.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError(f"{where} ({pid}): empty or non-text prompt")
    inputs, outputs = _cases(values.get("inputs"), where, "inputs"), _cases(values.get("outputs"), where, "outputs")
    test, entry = values.get("test"), values.get("entry_point")
    if _row_kind_is_function(kind, values) and not entry:
        entry = entry_point_from_test(test)
    row_kind = kind or values.get("kind") or ("function" if test else "stdio" if inputs is not None else None)
    if row_kind not in schemas.PROBLEM_KINDS:
        raise UserError(f"{where} ({pid}): cannot tell the problem kind: no 'test' (function problems) and "
                        f"no 'inputs' (stdio problems); map them with column_map or pass kind=")
    return {
        "problem_id": pid if "/" in pid else f"{name}/{pid}",
        "source": name,
        "split": str(values.get("split") or split),
        "kind": row_kind,
        "prompt": prompt,
        "test": test if row_kind == "function" else None,
        "entry_point": entry.strip() if isinstance(entry, str) and row_kind == "function" else None,
        "inputs": inputs if row_kind == "stdio" else None,
        "outputs": outputs if row_kind == "stdio" else None,
        "canonical_solution": values.get("canonical_solution") if isinstance(values.get("canonical_solution"), str) else None,
    }


def _row_kind_is_function(kind: str | None, values: Mapping[str, Any]) -> bool:
    return (kind or values.get("kind")) == "function" or (kind is None and bool(values.get("test")))


def _cases(value: Any, where: str, column: str) -> list[str] | None:
    """Normalise stdio cases to a list of strings: a case given as a list of lines becomes one
    text with newlines (TACO/APPS use both forms)."""
    if value is None:
        return None
    value = _parse_json(value, f"{where}, {column}") if isinstance(value, str) and value[:1] == "[" else value
    if not isinstance(value, list):
        raise UserError(f"{where}: {column} must be a list of test cases, got {type(value).__name__}")
    out = []
    for case in value:
        if isinstance(case, list):
            out.append("".join(f"{line}\n" for line in case))
        else:
            out.append(case if isinstance(case, str) else json.dumps(case))
    return out
