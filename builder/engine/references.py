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

An engine stage: the runs go through a ``Grader``'s sandbox pool (the caller's, or one started for
them) and the times are kept in the run's ``Store`` under ``references/<key>``, keyed by the
problems' content and the procedure, like every chunk of answers and verdicts.

    from builder.engine import Store, measure_references
    problems = measure_references(problems, grader_config, store=Store(work))   # + reference_cpu_s
"""

from __future__ import annotations

import ast
import dataclasses
import statistics
import sys
from collections.abc import Mapping

import pyarrow as pa

import schemas
from builder.engine.store import Store
from builder.errors import UserError
from builder.grading.grader import Grader, GraderConfig, make_job
from builder.grading.sandbox.jobs import STDIO, stdio_job
from builder.keys import content_key
from builder.progress import bar

COLUMN = "reference_cpu_s"
REFERENCES = "references"  # the store's stage of the measured times
REPEATS = 3
# the wall clock a reference may take while it is measured: generous (the reference is trusted code
# from the dataset, but a slow one must get a time, not a Timeout), bounded (a broken one loops)
MEASURE_TIMEOUT_S = 30.0
# the measuring procedure, in the store's key: change it when what is measured changes
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
    if job["kind"] != STDIO:
        return [job]
    return [stdio_job(job["code"], [i], [o], timeout=job["timeout"], cpu_limit=job["cpu_limit"])
            for i, o in zip(job["inputs"], job["outputs"])]


def _time_all(grader: Grader, jobs: list[list[dict]], repeats: int, progress: bool) -> list[float | None]:
    """Per problem, the largest over its jobs of each job's median CPU time over ``repeats`` (a
    stdio problem's slowest case); None where a run of it fails. A problem is repeated only after
    its first timing passed."""
    times: list[list[list[float]]] = [[[] for _ in runs] for runs in jobs]
    failed = [not runs for runs in jobs]
    shown = bar(total=sum(len(r) for r in jobs) * repeats, desc="references", unit="run", disable=not progress,
                dynamic_ncols=True)
    try:
        for _ in range(repeats):
            todo = [(p, j) for p, runs in enumerate(jobs) if not failed[p] for j in range(len(runs))]
            for (p, j), result in zip(todo, grader.run_jobs([jobs[p][j] for p, j in todo], bar=shown)):
                if result.get("error_type") is not None:
                    failed[p] = True
                else:
                    times[p][j].append(float(result.get("cpu_s") or 0.0))
    finally:
        shown.close()
    return [None if failed[p] else max(statistics.median(t) for t in times[p]) for p in range(len(jobs))]


def measure_references(problems: pa.Table, grader_config: GraderConfig | None = None, *, store: Store | None = None,
                       grader: Grader | None = None, repeats: int = REPEATS, progress: bool = False) -> pa.Table:
    """``problems`` (a ``schemas.PROBLEMS`` table) with ``reference_cpu_s`` filled: each problem's
    reference solution run ``repeats`` times against its tests in the sandbox ``grader_config``
    describes (its limits and isolation; the time limit is ``MEASURE_TIMEOUT_S`` of wall clock
    here), on ``grader``'s pool when given, else on a pool started for them. With ``store`` the
    times are kept under the ``references`` stage, keyed by the problems' content and the
    procedure, not by grader settings: a rerun, or a build that only changes the time-limit policy,
    reuses them instead of measuring again (a measurement varies a little, and the build's
    sampling checkpoints are keyed by the problem rows that carry it)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    table = schemas.conform(problems, schemas.PROBLEMS)
    rows = table.select([f.name for f in schemas.PROBLEMS if f.name != COLUMN]).to_pylist()
    key = content_key("references", PROCEDURE, repeats, rows)
    if store is not None and store.done(REFERENCES, key) and store.num_rows(REFERENCES, key) == len(rows):
        values = store.get(REFERENCES, key).column(COLUMN).combine_chunks()
    else:
        values = _measure(rows, grader_config or GraderConfig(), grader, repeats, progress)
        if store is not None:
            store.put(REFERENCES, key, pa.table({COLUMN: values}))
    return table.set_column(table.schema.get_field_index(COLUMN), schemas.PROBLEMS.field(COLUMN), values)


def _measure(rows: list[dict], config: GraderConfig, grader: Grader | None, repeats: int, progress: bool) -> pa.Array:
    jobs = [_runs(row, i) for i, row in enumerate(rows)]
    if not any(jobs):
        measured: list[float | None] = [None] * len(rows)
    elif grader is not None:
        measured = _time_all(grader, jobs, repeats, progress)
    else:  # no more workers than runs: a pool starts in ~0.75 s per worker on a loaded machine
        with Grader(dataclasses.replace(config, workers=min(config.worker_count(), sum(map(len, jobs))))) as own:
            measured = _time_all(own, jobs, repeats, progress)
    failing = sum(1 for runs, t in zip(jobs, measured) if runs and t is None)
    if failing:
        print(f"references: {failing} of {len(rows)} reference solutions fail their own tests here; "
              "those problems keep the fixed time limit", file=sys.stderr)
    return pa.array([None if t is None else round(t, 6) for t in measured], pa.float64())


__all__ = ["COLUMN", "REFERENCES", "measure_references", "reference_program"]
