"""The one sample -> grade engine: ``ap2o-build run``, ``ap2o-eval`` and the trainer's quiz all turn
problems into graded answers (``schemas.ANSWERS`` rows) here, so a row means the same wherever it
was made.

Work is split into chunks of problems. Each chunk is sampled (a backend answers its problems) and
then graded (the sandbox runs the answers), and each result is stored under a *content key*: a hash
of what produced it (the chunk's problem rows and the settings that change answers, resp. the
sample key and the settings that change verdicts). A run killed at any point and started again
finds its finished chunks by their keys and redoes only the rest; a changed setting redoes only
the chunks it affects.

The seam (stable names; an executor other than the local one, e.g. Ray, builds on these)::

    tasks = plan(problems, sample_cfg, grader_cfg, chunk_problems)   # list[ChunkTask], picklable
    store = Store(folder)          # <folder>/sampled/<key>.parquet, <folder>/graded/<key>.parquet
                                   # Store(None): in memory, this process only (the quiz)
    store.done(SAMPLED, task.sample_key), store.done(GRADED, task.grade_key), store.path(stage, key)
    needs_sampling(task, store) / needs_grading(task, store)
    sample_chunk(task, sample_cfg, store, backend)  # one chunk's answers -> store (atomic), returned
    grade_chunk(task, grader_cfg, store, grader=None)  # one chunk's verdicts -> store (atomic), returned
    collect(tasks, store)          # the graded table, in task order
    run_local(tasks, sample_cfg, grader_cfg, store, ...) -> EngineResult   # the local driver
    run(tasks, ..., engine="local"|"ray", address=None)   # picks the driver; sample_and_grade = plan + run
    result.placement_lines()       # where chunks ran, for the log (none for a local run)
    # drivers take run_local's keywords: backend=, make_backend=, grader=, progress=
    # builder.engine_ray.run(tasks, sample_cfg, grader_cfg, store, **those, address=None) -> EngineResult
    # is what run() loads by name for engine="ray" (engine_ray builds on this module: no import circle)

``sample_chunk`` and ``grade_chunk`` are top-level functions of picklable arguments (a task, the
``SampleConfig``/``GraderConfig`` dataclasses, a folder ``Store``): they run the same in another
process. What does not pickle stays with the worker that made it: a sampling worker builds its
backend once with ``make_backend`` (default ``functools.partial(build_backend, sample_cfg)``; a
picklable zero-argument callable) and passes it to every ``sample_chunk`` call; a grading worker
owns one ``builder.grading.grader.Grader`` (its sandbox pool) and passes it to ``grade_chunk``.
Both write the chunk's Parquet file themselves (``builder.io.write_parquet``: temporary name,
rename), so a worker killed mid-chunk leaves no file and a retry writes the same one.

Keys in short: sampling = the chunk's problem rows (less ``GRADE_ONLY_COLUMNS``) + the
``SampleConfig`` fields that change answers + a completions file's bytes + a local model folder's
files (+ ``identity``: e.g. an evaluation's adapter); grading = the sampling key + the grader's
limits (not its worker count) + replacement tests + grade-only columns. Tasks that grade the same
answers on other tests (EvalPlus's plus tests) share one sampling key, so the answers are made once.

A driver returns an ``EngineResult``: the tasks, the store, how many chunks of each stage were
found done (``reused["sample"]``, ``reused["grade"]``) and seconds per stage. Progress bars are
named "sample" (problems) and "grade" (answers).

Verdicts are read only through ``builder.grading.grader.grade_table`` (a table in, a table out),
never as ``Grader.grade``'s objects, so the verdict type can change under the engine.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

import schemas
from builder.errors import UserError
from builder.keys import content_key, file_digest

SAMPLED, GRADED = "sampled", "graded"  # the store's two stages (and its two folders)
ENGINES = ("local", "ray")
# settings that never change an answer, so they stay out of the sampling key: the openai backend
# seeds each answer by (seed, problem, k) whatever the concurrency; which problem set, split and
# limit are keyed through the chunk's problem rows themselves. Batch size and device DO change
# transformers' answers, so they stay in.
SAMPLE_FIELDS_NOT_IN_KEY = ("concurrency", "max_retries", "problems", "split", "limit")
# problem columns that change a verdict but never an answer: a measured reference time (the
# per-problem time limit). They stay out of the sampling key -- a re-measured time must not resample
# hours of model answers -- and go into the grading key; ``grade_chunk`` grades on the task's values.
GRADE_ONLY_COLUMNS = ("reference_cpu_s",)


# --- content keys --------------------------------------------------------------------------------

def folder_fingerprint(path: str | os.PathLike | None) -> Any:
    """What identifies local weights without reading gigabytes: a file's digest, or a folder's
    (name, size, mtime) per file. So a checkpoint retrained into the same folder is not taken for
    the old one. None for what is no local path (a Hub id, a served model name)."""
    if not path:
        return None
    p = pathlib.Path(path)
    if p.is_file():
        return file_digest(p)
    if p.is_dir():
        return sorted((str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns)
                      for f in p.rglob("*") if f.is_file())
    return None


def grading_settings(grader_config: Any) -> dict[str, Any]:
    """The grader settings a verdict depends on: the sandbox limits, not how many workers run them."""
    return {k: v for k, v in dataclasses.asdict(grader_config).items() if k != "workers"}


def sampling_key(problems: pa.Table, sample_cfg: Any, identity: Mapping[str, Any] | None = None) -> str:
    """What a chunk's answers depend on: its problem rows and the sampling settings (the
    completions file by content, not by name; local model weights by ``folder_fingerprint``).
    ``identity``: anything else that decides the answers and is no ``SampleConfig`` field (an
    evaluation's adapter)."""
    from builder.generation.backends.file import resolve_path

    settings = {k: v for k, v in dataclasses.asdict(sample_cfg).items() if k not in SAMPLE_FIELDS_NOT_IN_KEY}
    if not settings.get("vllm_args"):  # only when given: keys of runs without it stay as they were
        settings.pop("vllm_args", None)
    settings["completions"] = file_digest(resolve_path(sample_cfg.completions) if sample_cfg.completions else None)
    weights = folder_fingerprint(sample_cfg.model) if sample_cfg.backend != "file" else None
    if weights is not None:  # only then: keys of builds from Hub ids and recordings stay as they were
        settings["model_files"] = weights
    rows = problems.drop_columns([c for c in GRADE_ONLY_COLUMNS if c in problems.column_names]).to_pylist()
    parts: list[Any] = ["sample", schemas.SCHEMA_VERSION, rows, settings]
    if identity:
        parts.append(dict(identity))
    return content_key(*parts)


def grading_key(sample_key: str, grader_cfg: Any, tests: Mapping[str, str] | None = None,
                grade_only: Mapping[str, list] | None = None) -> str:
    """What a chunk's verdicts depend on: its answers (by their sample key), the sandbox limits
    (not how many workers run them), when the answers are graded on other tests than their
    problems' own (EvalPlus's plus tests) those tests, and the chunk's ``GRADE_ONLY_COLUMNS``."""
    parts: list[Any] = ["grade", schemas.SCHEMA_VERSION, sample_key, grading_settings(grader_cfg)]
    if tests is not None:
        parts.append(dict(tests))
    if grade_only:  # only when the problems have such columns: keys of tables without them stay as they were
        parts.append(dict(grade_only))
    return content_key(*parts)


# --- chunks and where they are kept --------------------------------------------------------------

@dataclass(frozen=True, eq=False)  # identity: a task holds a table
class ChunkTask:
    """One chunk of work, picklable: its problems, the keys its answers and verdicts are stored
    under, and (optionally) the tests to grade on instead of the problems' own, by problem id."""

    index: int
    problems: pa.Table = field(repr=False)
    sample_key: str
    grade_key: str
    tests: Mapping[str, str] | None = field(default=None, repr=False)

    @property
    def num_problems(self) -> int:
        return self.problems.num_rows


def plan(problems: pa.Table, sample_cfg: Any, grader_cfg: Any, chunk_problems: int, *,
         tests: Mapping[str, str] | None = None, identity: Mapping[str, Any] | None = None) -> list[ChunkTask]:
    """The chunks of ``problems``, ``chunk_problems`` problems each, in order. ``tests``: problem id
    -> test code to grade on instead of the problems' own (the answers, and their sample keys,
    stay those of the problems); ``identity``: see ``sampling_key``."""
    if chunk_problems < 1:
        raise UserError(f"chunk_problems must be >= 1, got {chunk_problems}")
    tasks = []
    for i, start in enumerate(range(0, problems.num_rows, chunk_problems)):
        # its own copy of the rows (take, not slice): a pickled slice carries the whole table's
        # buffers, and a task travels to another process
        part = problems.take(pa.array(range(start, min(start + chunk_problems, problems.num_rows))))
        mine = None
        if tests is not None:
            mine = {pid: tests[pid] for pid in part.column("problem_id").to_pylist()}
        skey = sampling_key(part, sample_cfg, identity)
        grade_only = {c: part.column(c).to_pylist() for c in GRADE_ONLY_COLUMNS if c in part.column_names}
        tasks.append(ChunkTask(i, part, skey, grading_key(skey, grader_cfg, mine, grade_only), mine))
    return tasks


class Store:
    """Tables kept under (stage, content key). With a folder: ``<root>/<stage>/<key>.parquet``,
    written atomically (a killed writer leaves no file), so any process that sees the folder sees
    every finished chunk. With ``root=None``: a dict in this process (the quiz: nothing to resume,
    nothing to clean up)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = pathlib.Path(root) if root is not None else None
        self._memory: dict[tuple[str, str], pa.Table] = {}

    def __repr__(self) -> str:
        return f"Store({str(self.root) if self.root else 'memory'})"

    def __getstate__(self) -> dict[str, Any]:
        if self.root is None:  # a copy in another process would never be read back here
            raise TypeError("an in-memory Store cannot travel to another process; give Store a folder")
        return {"root": self.root, "_memory": {}}

    def path(self, stage: str, key: str) -> pathlib.Path:
        if self.root is None:
            raise ValueError("an in-memory Store has no paths")
        return self.root / stage / f"{key}.parquet"

    def done(self, stage: str, key: str) -> bool:
        if self.root is None:
            return (stage, key) in self._memory
        return self.path(stage, key).exists()

    def get(self, stage: str, key: str) -> pa.Table:
        if self.root is None:
            return self._memory[(stage, key)]
        import pyarrow.parquet as pq

        return pq.read_table(self.path(stage, key))

    def num_rows(self, stage: str, key: str) -> int:
        if self.root is None:
            return self._memory[(stage, key)].num_rows
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.path(stage, key)).metadata.num_rows

    def put(self, stage: str, key: str, table: pa.Table) -> pa.Table:
        if self.root is None:
            self._memory[(stage, key)] = table
        else:
            from builder.io import write_parquet

            write_parquet(table, self.path(stage, key))
        return table

    def any_files(self) -> bool:
        """Whether a folder store holds any finished chunk (a build that failed before the first
        one removes a work dir it created)."""
        return bool(self._memory) if self.root is None else any(self.root.rglob("*.parquet"))


def needs_sampling(task: ChunkTask, store: Store) -> bool:
    """Neither its answers nor its verdicts are stored (verdicts imply answers were made)."""
    return not store.done(GRADED, task.grade_key) and not store.done(SAMPLED, task.sample_key)


def needs_grading(task: ChunkTask, store: Store) -> bool:
    return not store.done(GRADED, task.grade_key)


# --- the work of one chunk (callable from any process) -------------------------------------------

def default_backend_factory(sample_cfg: Any) -> Callable[[], Any]:
    """A picklable zero-argument callable that builds the backend ``sample_cfg`` names."""
    from builder.generation.sample import build_backend

    return functools.partial(build_backend, sample_cfg)


def sample_chunk(task: ChunkTask, sample_cfg: Any, store: Store, backend: Any, *, progress: bool = False) -> pa.Table:
    """Sample ``sample_cfg.n`` answers to each problem of ``task`` with ``backend`` (built by the
    caller, once per process) and store them under ``task.sample_key``. ``progress``: the
    backend's own bar within the chunk."""
    from builder.generation.backends import BackendError
    from builder.generation.sample import sample_problems

    try:
        table = sample_problems(task.problems, backend, sample_cfg.params(), sample_cfg.prompt_format,
                                progress=progress, default_stop=sample_cfg.stop is None,
                                sanitize=sample_cfg.sanitize)
    except BackendError as e:
        raise UserError(f"sampling chunk {task.index}: {e}") from None
    return store.put(SAMPLED, task.sample_key, table)


def grade_chunk(task: ChunkTask, grader_cfg: Any, store: Store, grader: Any = None) -> pa.Table:
    """Grade ``task``'s stored answers (on ``task.tests`` when given) and store the graded rows
    (``schemas.ANSWERS``) under ``task.grade_key``. ``grader``: a started ``Grader`` to reuse
    (one sandbox pool for many chunks); without it a pool is started and stopped for this chunk."""
    sampled = store.get(SAMPLED, task.sample_key)
    if task.tests is not None:
        sampled = with_tests(sampled, task.tests)
    sampled = _with_grade_only_columns(sampled, task.problems)
    return store.put(GRADED, task.grade_key, grade_rows(sampled, grader_cfg, grader))


def grade_rows(sampled: pa.Table, grader_cfg: Any = None, grader: Any = None) -> pa.Table:
    """Sampled rows plus their verdicts, ``schemas.ANSWERS`` (only its columns)."""
    from builder.grading.grader import GraderConfig, grade_table

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


# --- drivers -------------------------------------------------------------------------------------

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


def _tqdm(*, disable: bool = False, **kwargs):
    from builder.progress import bar

    return bar(disable=disable, **kwargs)


def run_local(tasks: Sequence[ChunkTask], sample_cfg: Any, grader_cfg: Any, store: Store, *,
              backend: Any = None, make_backend: Callable[[], Any] | None = None, grader: Any = None,
              progress: bool = True) -> EngineResult:
    """Drive every chunk in this process: sample each one not done, then grade each one not done.

    ``backend``: a backend to use (the caller keeps and closes it: the quiz's model in training, the
    build's file backend); else one is built with ``make_backend`` (default: the backend
    ``sample_cfg`` names) only when some chunk needs sampling, and closed afterwards. ``grader``: a
    started ``Grader`` to use (the quiz's long-lived pool); else one pool serves every chunk."""
    tasks = list(tasks)
    reused, seconds = {}, {}
    t = time.monotonic()
    reused["sample"] = _sample_all(tasks, sample_cfg, store, backend, make_backend, progress)
    seconds["sample"] = time.monotonic() - t
    t = time.monotonic()
    reused["grade"] = _grade_all(tasks, grader_cfg, store, grader, progress)
    seconds["grade"] = time.monotonic() - t
    return EngineResult(tasks, store, reused, seconds)


def _sample_all(tasks: list[ChunkTask], sample_cfg: Any, store: Store, backend: Any,
                make_backend: Callable[[], Any] | None, progress: bool) -> int:
    """Sample each distinct chunk of answers once (tasks grading the same answers on other tests
    share a sample key); return how many were found done."""
    by_key: dict[str, list[ChunkTask]] = {}
    for task in tasks:
        by_key.setdefault(task.sample_key, []).append(task)
    own, reused = None, 0
    bar = _tqdm(total=sum(group[0].num_problems for group in by_key.values()), desc="sample", unit="problem",
                disable=not progress)
    try:
        for group in by_key.values():
            if not any(needs_sampling(t, store) for t in group):
                reused += 1
            else:
                if backend is None and own is None:  # a model loads only when some chunk needs it
                    own = (make_backend or default_backend_factory(sample_cfg))()
                sample_chunk(group[0], sample_cfg, store, backend if backend is not None else own, progress=progress)
            bar.update(group[0].num_problems)
    finally:
        bar.close()
        if own is not None:
            own.close()
    return reused


def _grade_all(tasks: list[ChunkTask], grader_cfg: Any, store: Store, grader: Any, progress: bool) -> int:
    todo = [needs_grading(t, store) for t in tasks]
    sizes = [store.num_rows(SAMPLED, t.sample_key) if due else store.num_rows(GRADED, t.grade_key)
             for t, due in zip(tasks, todo)]
    bar = _tqdm(total=sum(sizes), desc="grade", unit="answer", disable=not progress)
    bar.update(sum(n for n, due in zip(sizes, todo) if not due))
    try:
        if any(todo):
            from builder.grading.grader import Grader

            pool = grader if grader is not None else Grader(grader_cfg)
            try:
                for task, n, due in zip(tasks, sizes, todo):
                    if due:
                        grade_chunk(task, grader_cfg, store, pool)
                        bar.update(n)
            finally:
                if grader is None:
                    pool.close()
    finally:
        bar.close()
    return todo.count(False)


def run(tasks: Sequence[ChunkTask], sample_cfg: Any, grader_cfg: Any, store: Store, *, engine: str = "local",
        address: str | None = None, **kwargs: Any) -> EngineResult:
    """The driver ``engine`` names: ``local`` (``run_local``) or ``ray`` (``builder.engine_ray.run``,
    with the ``.[ray]`` extra installed). Every driver takes ``run_local``'s keywords (``backend``,
    ``make_backend``, ``grader``, ``progress``) and returns an ``EngineResult``; one that runs chunks
    in other processes cannot send them a live ``backend`` or ``grader``: it builds backends there
    with ``make_backend`` (or ``default_backend_factory(sample_cfg)``: the build passes its file
    backend as ``backend`` but the recording is rebuilt from ``sample_cfg`` as well) and grader
    pools from ``grader_cfg``. ``address``: the Ray cluster to join (``engine="ray"`` only; a local
    run has none to use)."""
    if engine == "local":
        return run_local(tasks, sample_cfg, grader_cfg, store, **kwargs)
    if engine == "ray":
        import importlib

        # by name: builder.engine_ray is a driver one layer up (it builds on this module), so an
        # import statement here would make the two an import circle (tests/test_layers.py)
        return importlib.import_module("builder.engine_ray").run(tasks, sample_cfg, grader_cfg, store,
                                                                 address=address, **kwargs)
    raise UserError(f"unknown engine {engine!r} (choose from: {', '.join(ENGINES)})")


def sample_and_grade(problems: pa.Table, sample_cfg: Any, grader_cfg: Any, *, store: Store | None = None,
                     chunk_problems: int | None = None, tests: Mapping[str, str] | None = None,
                     identity: Mapping[str, Any] | None = None, engine: str = "local",
                     **kwargs: Any) -> EngineResult:
    """``plan`` + ``run`` in one call. ``store`` None: in memory; ``chunk_problems`` None: one chunk."""
    store = store if store is not None else Store(None)
    size = chunk_problems or max(problems.num_rows, 1)
    tasks = plan(problems, sample_cfg, grader_cfg, size, tests=tests, identity=identity)
    return run(tasks, sample_cfg, grader_cfg, store, engine=engine, **kwargs)


__all__ = [
    "ENGINES", "GRADED", "GRADE_ONLY_COLUMNS", "SAMPLED", "ChunkTask", "EngineResult", "Store", "collect", "content_key",
    "default_backend_factory", "file_digest", "folder_fingerprint", "grade_chunk", "grade_rows",
    "grading_key", "grading_settings", "needs_grading", "needs_sampling", "plan", "run", "run_local",
    "sample_and_grade", "sample_chunk", "sampling_key", "with_tests",
]
