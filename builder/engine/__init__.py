"""The one sample -> grade engine: ``ap2o-build run``, ``ap2o-eval`` and the trainer's quiz all turn
problems into graded answers (``schemas.ANSWERS`` rows) here, so a row means the same wherever it
was made.

Work is split into chunks of problems. Each chunk is sampled (a backend answers its problems) and
then graded (the sandbox runs the answers), and each result is stored under a *content key*: a hash
of what produced it (the chunk's problem rows and the settings that change answers, resp. the
sample key and the settings that change verdicts). A run killed at any point and started again
finds its finished chunks by their keys and redoes only the rest; a changed setting redoes only
the chunks it affects.

The package, core first; a driver builds on the core and the core knows no driver (the layers are
``pyproject.toml``'s import contracts)::

    config.py      EngineConfig: chunk_problems, the driver (--engine), ray_address
    keys.py        sampling_key, grading_key: what a chunk's results are stored under
    tasks.py       plan(problems, sample_cfg, grader_cfg, chunk_problems) -> list[ChunkTask], picklable
    store.py       Store(folder): <folder>/<stage>/<key>.parquet; Store(None): in memory (the quiz)
    work.py        sample_chunk, grade_chunk (one chunk, callable from any process), EngineResult
    references.py  measure_references: each problem's reference time, a stage on the same store
    local.py       the local driver: every chunk in this process
    ray.py         the Ray driver: the same chunks as Ray Data stages (--engine ray)
    drivers.py     run(..., EngineConfig(driver="local"|"ray")): picks the driver; sample_and_grade = plan + run

Everything a caller needs is imported from here (``from builder.engine import plan, run, Store``)::

    tasks = plan(problems, sample_cfg, grader_cfg, engine_cfg.chunk_problems)
    store = Store(folder)
    store.done(SAMPLED, task.sample_key), store.done(GRADED, task.grade_key), store.path(stage, key)
    done = run(tasks, sample_cfg, grader_cfg, store, engine_cfg, backend=None, make_backend=None,
               grader=None, progress=True) -> EngineResult
    done.table(), done.reused, done.seconds, done.placement_lines()   # where chunks ran (none locally)

Keys in short (``keys.py``): sampling = the chunk's problem rows (less ``GRADE_ONLY_COLUMNS``) + the
``SampleConfig`` fields that change answers + a completions file's bytes + a local model folder's
files (+ ``identity``: e.g. an evaluation's adapter); grading = the sampling key + the grader's
limits (not its worker count) + replacement tests + grade-only columns. Tasks that grade the same
answers on other tests (EvalPlus's plus tests) share one sampling key, so the answers are made once.

A driver returns an ``EngineResult``: the tasks, the store, how many chunks of each stage were
found done (``reused["sample"]``, ``reused["grade"]``) and seconds per stage. Progress bars are
named "sample" (problems) and "grade" (answers).
"""

from builder.engine.config import COMMAND_LINE, ENGINES, EngineConfig
from builder.engine.drivers import DRIVERS, run, sample_and_grade
from builder.engine.keys import (
    GRADE_ONLY_COLUMNS,
    SAMPLE_FIELDS_NOT_IN_KEY,
    folder_fingerprint,
    grading_key,
    grading_settings,
    sampling_key,
)
from builder.engine.local import run as run_local
from builder.engine.references import REFERENCES, measure_references, reference_program
from builder.engine.store import CHUNK_STAGES, GRADED, SAMPLED, Store
from builder.engine.tasks import ChunkTask, plan
from builder.engine.work import (
    EngineResult,
    collect,
    default_backend_factory,
    grade_chunk,
    grade_rows,
    needs_grading,
    needs_sampling,
    sample_chunk,
    with_tests,
)

__all__ = [
    "CHUNK_STAGES",
    "COMMAND_LINE",
    "DRIVERS",
    "ENGINES",
    "GRADED",
    "GRADE_ONLY_COLUMNS",
    "REFERENCES",
    "SAMPLED",
    "SAMPLE_FIELDS_NOT_IN_KEY",
    "ChunkTask",
    "EngineConfig",
    "EngineResult",
    "Store",
    "collect",
    "default_backend_factory",
    "folder_fingerprint",
    "grade_chunk",
    "grade_rows",
    "grading_key",
    "grading_settings",
    "measure_references",
    "needs_grading",
    "needs_sampling",
    "plan",
    "reference_program",
    "run",
    "run_local",
    "sample_and_grade",
    "sample_chunk",
    "sampling_key",
    "with_tests",
]
