"""Time each problem's reference solution in the sandbox: the measure of a per-problem time limit.

Grading cost is dominated by answers that never end, and an answer that never ends costs exactly
its limit. A fixed limit must fit the slowest problem; a limit from each problem's own reference
solution (EvalPlus: ``max(floor, k x T_reference)``) fits each problem, so a loop on a fast
problem is cut early. ``measure_references`` runs each problem's reference solution (HumanEval's
``canonical_solution`` after the prompt, MBPP's ``code`` as it is: both land in the problems
table's ``canonical_solution``) against the problem's own tests, ``repeats`` times, and records the
median CPU seconds of a run (answer and judge processes together, what the grader's CPU-time limit
counts) in ``reference_cpu_s``. CPU time, not wall time: it does not grow when other processes share
the core, so a loaded machine neither inflates the reference nor (``GraderConfig.run_limits``) cuts
an answer short. The median of several runs: one run can still be slowed by a cold cache or an
interrupt storm; the median ignores one such run in three.

A reference that fails its own tests (or has none) gets null: its problem keeps the fixed limit.

    from builder.grading.reference import measure_references
    problems = measure_references(problems, grader_config, work_dir=work)   # + reference_cpu_s
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import statistics
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

import schemas
from builder.errors import UserError
from builder.keys import content_key

COLUMN = "reference_cpu_s"
REPEATS = 3
# the wall clock a reference may take while it is measured: generous (the reference is trusted code
# from the dataset, but a slow one must get a time, not a Timeout), bounded (a broken one loops)
MEASURE_TIMEOUT_S = 30.0
# the measuring procedure, in the cache key: change it when what is measured changes
PROCEDURE = "median of REPEATS runs, CPU seconds of answer + judge, v1"


def reference_program(row: Mapping) -> str | None:
    """The program to run for ``row``'s reference solution, or None when it has none. A reference
    that defines the entry point itself (MBPP's ``code``, a stdio program) runs as it is; one that
    is a function body (HumanEval's ``canonical_solution``) runs after the prompt."""
    solution = row.get("canonical_solution")
    if not isinstance(solution, str) or not solution.strip():
        return None
    if row.get("kind") == "stdio" or not row.get("entry_point") or _defines(solution, row["entry_point"]):
        return solution
    return (row.get("prompt") or "") + solution


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name for node in tree.body)


def _runs(row: Mapping, index: int) -> list[dict]:
    """The sandbox jobs one timing of ``row`` takes: the whole test of a function problem, one job
    per case of a stdio problem (the limit applies per case, so the slowest case is the measure)."""
    from builder.grading.grader import GraderConfig, make_job

    program = reference_program(row)
    if program is None:
        return []
    fixed = GraderConfig(time_limit="fixed", timeout_s=MEASURE_TIMEOUT_S)
    try:
        job = make_job({**row, "completion": program, COLUMN: None}, index, fixed)
    except UserError:  # a problem the grader cannot run (no test): no reference time; grading will say why
        return []
    if job is None:
        return []
    if job["kind"] != "stdio":
        return [job]
    return [{**job, "inputs": [i], "outputs": [o]} for i, o in zip(job["inputs"], job["outputs"])]


def _time_all(pool, jobs: list[list[dict]], repeats: int, progress: bool) -> list[float | None]:
    """Per problem, the median over ``repeats`` of the largest CPU time of its jobs; None where a
    run of it fails. A problem is repeated only after its first timing passed."""
    from builder.progress import bar as progress_bar

    times: list[list[list[float]]] = [[[] for _ in runs] for runs in jobs]
    failed = [not runs for runs in jobs]
    bar = progress_bar(total=sum(len(r) for r in jobs) * repeats, desc="references", unit="run", disable=not progress,
               dynamic_ncols=True)

    def one(p: int, j: int) -> None:
        result = pool.run(jobs[p][j])
        if result.get("error_type") is not None:
            failed[p] = True
        else:
            times[p][j].append(float(result.get("cpu_s") or 0.0))
        bar.update(1)

    with ThreadPoolExecutor(max_workers=pool.size, thread_name_prefix="ap2o-reference") as threads:
        for _ in range(repeats):
            todo = [(p, j) for p, runs in enumerate(jobs) if not failed[p] for j in range(len(runs))]
            for future in [threads.submit(one, p, j) for p, j in todo]:
                future.result()
    bar.close()
    return [None if failed[p] else max(statistics.median(t) for t in times[p]) for p in range(len(jobs))]


def _read_cache(path: pathlib.Path | None, n: int) -> list | None:
    """The cached times, or None when there are none to trust (absent, unreadable, wrong length)."""
    if path is None or not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))[COLUMN]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = isinstance(values, list) and len(values) == n and all(
        v is None or (type(v) in (int, float) and v >= 0) for v in values)
    return values if ok else None


def measure_references(problems: pa.Table, grader_config=None, *, work_dir: str | os.PathLike | None = None,
                       repeats: int = REPEATS, progress: bool = False) -> pa.Table:
    """``problems`` (a ``schemas.PROBLEMS`` table) with ``reference_cpu_s`` filled: each problem's
    reference solution run ``repeats`` times against its tests in the sandbox ``grader_config``
    describes (its limits and isolation; the time limit is ``MEASURE_TIMEOUT_S`` of wall clock
    here). With ``work_dir`` the times are kept in ``work_dir/references/<key>.json``, keyed by
    the problems' content and the procedure, not by grader settings: a rerun, or a build that only
    changes the time-limit policy, reuses them instead of measuring again (a measurement varies a
    little, and the build's sampling checkpoints are keyed by the problem rows that carry it). JSON,
    not Parquet: a build that fails before its first checkpoint removes a work dir holding no
    Parquet file, and this cache is cheap to make again."""
    from builder import io
    from builder.grading.grader import GraderConfig

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    table = schemas.conform(problems, schemas.PROBLEMS)
    rows = table.select([f.name for f in schemas.PROBLEMS if f.name != COLUMN]).to_pylist()
    cache = None
    if work_dir is not None:
        cache = pathlib.Path(work_dir) / "references" / f"{content_key('references', PROCEDURE, repeats, rows)}.json"
    cached = _read_cache(cache, len(rows))
    if cached is not None:
        values = pa.array(cached, pa.float64())
    else:
        jobs = [_runs(row, i) for i, row in enumerate(rows)]
        if any(jobs):
            from builder.grading.sandbox.pool import WorkerPool

            config = grader_config or GraderConfig()
            pool = WorkerPool(min(config.worker_count(), sum(map(len, jobs))), config.sandbox_settings())
            try:
                measured = _time_all(pool, jobs, repeats, progress)
            except BaseException:
                pool.abort()
                raise
            finally:
                pool.close()
        else:
            measured = [None] * len(rows)
        values = pa.array([None if t is None else round(t, 6) for t in measured], pa.float64())
        failing = sum(1 for runs, t in zip(jobs, measured) if runs and t is None)
        if failing:
            print(f"references: {failing} of {len(rows)} reference solutions fail their own tests here; "
                  "those problems keep the fixed time limit", file=sys.stderr)
        if cache is not None:
            with io.atomic_path(cache) as tmp:
                tmp.write_text(json.dumps({COLUMN: values.to_pylist()}), encoding="utf-8")
    return table.set_column(table.schema.get_field_index(COLUMN), schemas.PROBLEMS.field(COLUMN), values)


__all__ = ["COLUMN", "measure_references", "reference_program"]
