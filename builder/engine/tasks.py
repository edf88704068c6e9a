"""The chunks of a run: ``plan`` cuts the problems into ``ChunkTask``s, each with the keys its
answers and verdicts are stored under (``builder.engine.keys``). A task is picklable: it travels to
the process that works on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from builder.engine.keys import GRADE_ONLY_COLUMNS, grading_key, sampling_key

if TYPE_CHECKING:
    from builder.generation.sample import SampleConfig
    from builder.grading.grader import GraderConfig


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


def plan(problems: pa.Table, sample_cfg: SampleConfig, grader_cfg: GraderConfig, chunk_problems: int, *,
         tests: Mapping[str, str] | None = None, identity: Mapping[str, Any] | None = None) -> list[ChunkTask]:
    """The chunks of ``problems``, ``chunk_problems`` problems each, in order. ``tests``: problem id
    -> test code to grade on instead of the problems' own (the answers, and their sample keys,
    stay those of the problems); ``identity``: see ``builder.engine.keys.sampling_key``."""
    if chunk_problems < 1:  # a caller's mistake: a user's --chunk-problems is checked by EngineConfig
        raise ValueError(f"chunk_problems must be >= 1, got {chunk_problems}")
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


__all__ = ["ChunkTask", "plan"]
