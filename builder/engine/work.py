"""The work of one chunk, callable from any process, and what a driver returns.

``sample_chunk`` and ``grade_chunk`` are top-level functions of picklable arguments (a task, the
``SampleConfig``/``GraderConfig`` dataclasses, a folder ``Store``): they run the same in another
process. What does not pickle stays with the worker that made it: a sampling worker builds its
backend once with ``make_backend`` (default ``default_backend_factory(sample_cfg)``; a picklable
zero-argument callable) and passes it to every ``sample_chunk`` call; a grading worker owns one
``Grader`` (its sandbox pool) and passes it to ``grade_chunk``. Both write the chunk's Parquet file
through the ``Store`` (temporary name, rename), so a worker killed mid-chunk leaves no file and a
retry writes the same one.

Verdicts are read only through ``builder.grading.grader.grade_table`` (a table in, a table out),
never as ``Grader.grade``'s objects, so the verdict type can change under the engine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

import schemas
from builder.engine.keys import GRADE_ONLY_COLUMNS
from builder.engine.store import GRADED, SAMPLED, Store
from builder.engine.tasks import ChunkTask
from builder.errors import UserError
from builder.generation.backends import Backend, BackendError
from builder.generation.sample import SampleConfig, build_backend, sample_table
from builder.grading.grader import Grader, GraderConfig, grade_table


def needs_sampling(task: ChunkTask, store: Store) -> bool:
    """Neither its answers nor its verdicts are stored (verdicts imply answers were made)."""
    return not store.done(GRADED, task.grade_key) and not store.done(SAMPLED, task.sample_key)


def needs_grading(task: ChunkTask, store: Store) -> bool:
    return not store.done(GRADED, task.grade_key)


def default_backend_factory(sample_cfg: SampleConfig) -> Callable[[], Backend]:
    """A picklable zero-argument callable that builds the backend ``sample_cfg`` names."""
    return functools.partial(build_backend, sample_cfg)


def sample_chunk(task: ChunkTask, sample_cfg: SampleConfig, store: Store, backend: Backend, *,
                 progress: bool = False) -> pa.Table:
    """Sample ``sample_cfg.n`` answers to each problem of ``task`` with ``backend`` (built by the
    caller, once per process) and store them under ``task.sample_key``. ``progress``: the
    backend's own bar within the chunk."""
    try:
        table = sample_table(task.problems, backend, sample_cfg, progress=progress)
    except BackendError as e:
        raise UserError(f"sampling chunk {task.index}: {e}") from None
    return store.put(SAMPLED, task.sample_key, table)


def grade_chunk(task: ChunkTask, grader_cfg: GraderConfig, store: Store, grader: Grader | None = None) -> pa.Table:
    """Grade ``task``'s stored answers (on ``task.tests`` when given) and store the graded rows
    (``schemas.ANSWERS``) under ``task.grade_key``. ``grader``: a started ``Grader`` to reuse
    (one sandbox pool for many chunks); without it a pool is started and stopped for this chunk."""
    sampled = store.get(SAMPLED, task.sample_key)
    if task.tests is not None:
        sampled = with_tests(sampled, task.tests)
    sampled = _with_grade_only_columns(sampled, task.problems)
    return store.put(GRADED, task.grade_key, grade_rows(sampled, grader_cfg, grader))


def grade_rows(sampled: pa.Table, grader_cfg: GraderConfig | None = None, grader: Grader | None = None) -> pa.Table:
    """Sampled rows plus their verdicts, ``schemas.ANSWERS`` (only its columns)."""
    if sampled.num_rows == 0:
        return schemas.ANSWERS.empty_table()
    graded = grade_table(sampled, grader_cfg or GraderConfig(), progress=False, grader=grader)
    return schemas.conform(graded, schemas.ANSWERS, keep_extra=False)


def with_tests(sampled: pa.Table, tests: Mapping[str, str]) -> pa.Table:
    """``sampled`` with each row's ``test`` replaced by ``tests[problem_id]``: the same answers,
    graded on other tests (EvalPlus's plus tests)."""
    column = pa.array([tests[pid] for pid in sampled.column("problem_id").to_pylist()], pa.string())
    return sampled.set_column(sampled.schema.get_field_index("test"), "test", column)


def _with_grade_only_columns(sampled: pa.Table, problems: pa.Table) -> pa.Table:
    """``sampled`` with each ``GRADE_ONLY_COLUMNS`` column taken from ``problems`` by problem id:
    stored answers were keyed without them, so they may carry an older measurement."""
    for name in (c for c in GRADE_ONLY_COLUMNS if c in problems.column_names):
        values = dict(zip(problems.column("problem_id").to_pylist(), problems.column(name).to_pylist()))
        column = pa.array([values[pid] for pid in sampled.column("problem_id").to_pylist()],
                          problems.schema.field(name).type)
        if name in sampled.column_names:
            sampled = sampled.set_column(sampled.schema.get_field_index(name), name, column)
        else:
            sampled = sampled.append_column(problems.schema.field(name), column)
    return sampled


def collect(tasks: Sequence[ChunkTask], store: Store) -> pa.Table:
    """Every task's graded rows, in task order (``schemas.ANSWERS``)."""
    tables = [store.get(GRADED, t.grade_key) for t in tasks]
    if not tables:
        return schemas.ANSWERS.empty_table()
    return pa.concat_tables(tables, promote_options="permissive")


@dataclass
class EngineResult:
    """What a driver did: the tasks (their rows are in ``store``), chunks found done per stage
    (``reused["sample"]``, ``reused["grade"]``) and seconds per stage."""

    tasks: list[ChunkTask]
    store: Store
    reused: dict[str, int]
    seconds: dict[str, float]

    def table(self, tasks: Sequence[ChunkTask] | None = None) -> pa.Table:
        """The graded rows of ``tasks`` (default: all), in order."""
        return collect(self.tasks if tasks is None else tasks, self.store)

    def placement_lines(self) -> list[str]:
        """Where the chunks ran, for a log or summary (never the rows): nothing to say for a local
        run; a cluster driver's result says which node did what."""
        return []


__all__ = ["EngineResult", "collect", "default_backend_factory", "grade_chunk", "grade_rows", "needs_grading",
           "needs_sampling", "sample_chunk", "with_tests"]
