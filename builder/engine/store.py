"""Where a run's results are kept: tables under (stage, content key), in a folder or in memory."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from builder.io import write_parquet

SAMPLED, GRADED = "sampled", "graded"  # the stages of a chunk (and their folders)
CHUNK_STAGES = (SAMPLED, GRADED)


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
        return pq.read_table(self.path(stage, key))

    def num_rows(self, stage: str, key: str) -> int:
        if self.root is None:
            return self._memory[(stage, key)].num_rows
        return pq.ParquetFile(self.path(stage, key)).metadata.num_rows

    def put(self, stage: str, key: str, table: pa.Table) -> pa.Table:
        if self.root is None:
            self._memory[(stage, key)] = table
        else:
            write_parquet(table, self.path(stage, key))
        return table

    def any_chunks(self) -> bool:
        """Whether the store holds any finished chunk (sampled or graded): a build that failed
        before the first one removes a work dir it created."""
        if self.root is None:
            return any(stage in CHUNK_STAGES for stage, _ in self._memory)
        return any(any((self.root / stage).glob("*.parquet")) for stage in CHUNK_STAGES)


__all__ = ["CHUNK_STAGES", "GRADED", "SAMPLED", "Store"]
