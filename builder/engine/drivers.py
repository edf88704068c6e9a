"""Which driver runs the chunks: the one module that knows every driver (``local``, ``ray``), so that
the engine's core (keys, tasks, store, the work of one chunk) knows none of them, as datatrove's
executors build on a base that knows no executor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from builder.engine import local, ray
from builder.engine.store import Store
from builder.engine.tasks import ChunkTask, plan
from builder.engine.work import EngineResult
from builder.errors import UserError
from builder.generation.sample import SampleConfig
from builder.grading.grader import GraderConfig

ENGINES = ("local", "ray")


def run(tasks: Sequence[ChunkTask], sample_cfg: SampleConfig, grader_cfg: GraderConfig, store: Store, *,
        engine: str = "local", address: str | None = None, **kwargs: Any) -> EngineResult:
    """The driver ``engine`` names: ``local`` (``builder.engine.local.run``) or ``ray``
    (``builder.engine.ray.run``, with the ``.[ray]`` extra installed). Every driver takes the local
    one's keywords (``backend``, ``make_backend``, ``grader``, ``progress``) and returns an
    ``EngineResult``; one that runs chunks in other processes cannot send them a live ``backend``
    or ``grader``: it builds backends there with ``make_backend`` (or
    ``default_backend_factory(sample_cfg)``: the build passes its file backend as ``backend`` but
    the recording is rebuilt from ``sample_cfg`` as well) and grader pools from ``grader_cfg``.
    ``address``: the Ray cluster to join (``engine="ray"`` only; a local run has none to use)."""
    if engine == "local":
        return local.run(tasks, sample_cfg, grader_cfg, store, **kwargs)
    if engine == "ray":
        return ray.run(tasks, sample_cfg, grader_cfg, store, address=address, **kwargs)
    raise UserError(f"unknown engine {engine!r} (choose from: {', '.join(ENGINES)})")


def sample_and_grade(problems: pa.Table, sample_cfg: SampleConfig, grader_cfg: GraderConfig, *,
                     store: Store | None = None, chunk_problems: int | None = None,
                     tests: Mapping[str, str] | None = None, identity: Mapping[str, Any] | None = None,
                     engine: str = "local", **kwargs: Any) -> EngineResult:
    """``plan`` + ``run`` in one call. ``store`` None: in memory; ``chunk_problems`` None: one chunk."""
    store = store if store is not None else Store(None)
    size = chunk_problems or max(problems.num_rows, 1)
    tasks = plan(problems, sample_cfg, grader_cfg, size, tests=tests, identity=identity)
    return run(tasks, sample_cfg, grader_cfg, store, engine=engine, **kwargs)


__all__ = ["ENGINES", "run", "sample_and_grade"]
