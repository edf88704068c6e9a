"""The local driver: every chunk in this process, sampled then graded, one backend and one sandbox
pool for all of them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from builder.engine.config import EngineConfig
from builder.engine.store import GRADED, SAMPLED, Store
from builder.engine.tasks import ChunkTask
from builder.engine.work import (
    EngineResult,
    default_backend_factory,
    grade_chunk,
    needs_grading,
    needs_sampling,
    sample_chunk,
)
from builder.generation.backends import Backend
from builder.generation.sample import SampleConfig
from builder.grading.grader import Grader, GraderConfig
from builder.progress import bar


def run(tasks: Sequence[ChunkTask], sample_cfg: SampleConfig, grader_cfg: GraderConfig, store: Store,
        engine: EngineConfig | None = None, *, backend: Backend | None = None,
        make_backend: Callable[[], Backend] | None = None, grader: Grader | None = None,
        progress: bool = True) -> EngineResult:
    """Drive every chunk in this process: sample each one not done, then grade each one not done.
    ``engine``: nothing in it concerns a local run (the chunks are cut already); taken as every
    driver takes it.

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


def _sample_all(tasks: list[ChunkTask], sample_cfg: SampleConfig, store: Store, backend: Backend | None,
                make_backend: Callable[[], Backend] | None, progress: bool) -> int:
    """Sample each distinct chunk of answers once (tasks grading the same answers on other tests
    share a sample key); return how many were found done."""
    by_key: dict[str, list[ChunkTask]] = {}
    for task in tasks:
        by_key.setdefault(task.sample_key, []).append(task)
    own, reused = None, 0
    shown = bar(total=sum(group[0].num_problems for group in by_key.values()), desc="sample", unit="problem",
                disable=not progress)
    try:
        for group in by_key.values():
            if not any(needs_sampling(t, store) for t in group):
                reused += 1
            else:
                if backend is None and own is None:  # a model loads only when some chunk needs it
                    own = (make_backend or default_backend_factory(sample_cfg))()
                sample_chunk(group[0], sample_cfg, store, backend if backend is not None else own, progress=progress)
            shown.update(group[0].num_problems)
    finally:
        shown.close()
        if own is not None:
            own.close()
    return reused


def _grade_all(tasks: list[ChunkTask], grader_cfg: GraderConfig, store: Store, grader: Grader | None,
               progress: bool) -> int:
    todo = [needs_grading(t, store) for t in tasks]
    sizes = [store.num_rows(SAMPLED, t.sample_key) if due else store.num_rows(GRADED, t.grade_key)
             for t, due in zip(tasks, todo)]
    shown = bar(total=sum(sizes), desc="grade", unit="answer", disable=not progress)
    shown.update(sum(n for n, due in zip(sizes, todo) if not due))
    try:
        if any(todo):
            pool = grader if grader is not None else Grader(grader_cfg)
            try:
                for task, n, due in zip(tasks, sizes, todo):
                    if due:
                        grade_chunk(task, grader_cfg, store, pool)
                        shown.update(n)
            finally:
                if grader is None:
                    pool.close()
    finally:
        shown.close()
    return todo.count(False)


__all__ = ["run"]
