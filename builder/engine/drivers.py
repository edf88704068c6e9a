"""Which driver runs the chunks: the one module that knows every driver (``local``, ``ray``), so that
the engine's core (keys, tasks, store, the work of one chunk) knows none of them, as datatrove's
executors build on a base that knows no executor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from builder.engine import local, ray
from builder.engine.config import ENGINES, EngineConfig
from builder.engine.store import Store
from builder.engine.tasks import ChunkTask, plan
from builder.engine.work import EngineResult
from builder.generation.sample import SampleConfig
from builder.grading.grader import GraderConfig

# name -> driver; every driver takes (tasks, sample_cfg, grader_cfg, store, engine_cfg) and the local
# one's keywords (backend, make_backend, grader, progress), and returns an EngineResult
DRIVERS = {"local": local.run, "ray": ray.run}
if tuple(DRIVERS) != ENGINES:  # EngineConfig validates the names: the two lists must be one
    raise TypeError(f"drivers {tuple(DRIVERS)} are not EngineConfig's {ENGINES}")


def run(tasks: Sequence[ChunkTask], sample_cfg: SampleConfig, grader_cfg: GraderConfig, store: Store,
        engine: EngineConfig | None = None, **kwargs: Any) -> EngineResult:
    """The driver ``engine.driver`` names (default: local): ``builder.engine.local.run`` or
    ``builder.engine.ray.run`` (with the ``.[ray]`` extra installed). One that runs chunks in other
    processes cannot send them a live ``backend`` or ``grader``: it builds backends there with
    ``make_backend`` (or ``default_backend_factory(sample_cfg)``: the build passes its file backend
    as ``backend`` but the recording is rebuilt from ``sample_cfg`` as well) and grader pools from
    ``grader_cfg``."""
    engine = engine or EngineConfig()
    return DRIVERS[engine.driver](tasks, sample_cfg, grader_cfg, store, engine, **kwargs)


def sample_and_grade(problems: pa.Table, sample_cfg: SampleConfig, grader_cfg: GraderConfig,
                     engine: EngineConfig | None = None, *, store: Store | None = None,
                     tests: Mapping[str, str] | None = None, identity: Mapping[str, Any] | None = None,
                     **kwargs: Any) -> EngineResult:
    """``plan`` + ``run`` in one call. ``store`` None: in memory; ``engine`` None: the local driver
    and one chunk of every problem (the quiz, graded answers)."""
    store = store if store is not None else Store(None)
    size = engine.chunk_problems if engine is not None else max(problems.num_rows, 1)
    tasks = plan(problems, sample_cfg, grader_cfg, size, tests=tests, identity=identity)
    return run(tasks, sample_cfg, grader_cfg, store, engine, **kwargs)


__all__ = ["DRIVERS", "run", "sample_and_grade"]
