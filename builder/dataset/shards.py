"""Writing and reading one config of a dataset folder as Hub-style Parquet shards.

The Hub's dataset viewer and ``datasets.load_dataset`` both expect
``data/<config>/<split>-NNNNN-of-NNNNN.parquet``; shards are capped at ~500 MB and row groups at
~100 MB (so a reader streaming the file never holds more than one row group). Shards are cut by
the *uncompressed* Arrow size of what went into them, an upper bound of the zstd file size, so the
cap holds on disk whatever the data compresses to.

Rows arrive as a table or as an iterator of record batches, so a million-row ``samples`` config is
written without ever being whole in memory. Each shard is written through ``builder.io`` under a
provisional name and renamed to its final ``-of-NNNNN`` name once the count is known; callers
build the whole folder in a temporary directory (see ``builder.pipeline``) so a reader never sees a
half-written config.
"""

from __future__ import annotations

import inspect
import json
import os
import pathlib
import re
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from builder import io
from builder.errors import UserError

MAX_SHARD_BYTES = 500 * 1024 * 1024  # shards at most ~500 MB (docs/dataset.md)
DATA_DIR = "data"
_BATCH_BYTES = 8 * 1024 * 1024
_SHARD_RE = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")
# What `datasets` 5.x writes by default (its config.DEFAULT_CDC_OPTIONS): page boundaries cut by a
# rolling hash of the content, so a rebuild that changes a few rows re-uploads a few pages (the Hub
# deduplicates by content chunks), not whole shards; and a page index, so readers can skip pages.
CDC_OPTIONS = {"min_chunk_size": 256 * 1024, "max_chunk_size": 1024 * 1024, "norm_level": 0}


def writer_options() -> dict:
    """Keyword arguments for ``pq.ParquetWriter``: zstd, plus content-defined chunking and a page
    index where the installed pyarrow has them (21+), as ``datasets`` writes Parquet."""
    opts: dict = {"compression": io.ZSTD}
    params = inspect.signature(pq.ParquetWriter.__init__).parameters
    for name, value in (("use_content_defined_chunking", CDC_OPTIONS), ("write_page_index", True)):
        if name in params:
            opts[name] = value
    return opts


def shard_name(split: str, index: int, count: int) -> str:
    """``train-00000-of-00002.parquet``: the name the Hub viewer recognises as a split's shard."""
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def config_dir(folder: str | os.PathLike, config: str) -> pathlib.Path:
    return pathlib.Path(folder) / DATA_DIR / config


def split_pattern(config: str, split: str) -> str:
    """The ``data_files`` glob of one split, relative to the folder (what the card's YAML lists)."""
    return f"{DATA_DIR}/{config}/{split}-*.parquet"


def _batches(data: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """``data`` as record batches of ``schema``, none much above ~8 MB: fine-grained enough to cut
    shards and row groups near their caps whatever the caller's batch size (32k rows of long
    programs can be hundreds of MB)."""
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        data = [data]
    for part in data:
        table = pa.Table.from_batches([part]) if isinstance(part, pa.RecordBatch) else part
        table = table.cast(schema)  # same columns, maybe looser types (e.g. large_string from Polars)
        rows = max(1, int(table.num_rows * _BATCH_BYTES / max(table.nbytes, 1)))
        yield from table.to_batches(max_chunksize=rows)


def write_split(
    folder: str | os.PathLike,
    config: str,
    split: str,
    data: pa.Table | Iterable[pa.RecordBatch],
    schema: pa.Schema,
    *,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    row_group_bytes: int = io.ROW_GROUP_BYTES,
) -> list[pathlib.Path]:
    """Write one split of one config as zstd Parquet shards; return their paths in order.

    An empty split still gets one (empty) shard, so every split a card lists exists and carries
    its schema. Existing shards of the split are replaced."""
    if not re.fullmatch(r"[\w.]+", split):
        raise UserError(f"split name {split!r}: use letters, digits, '_' and '.' only (it becomes a file name)")
    out = config_dir(folder, config)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{split}-*.parquet"):
        if (m := _SHARD_RE.match(old.name)) and m["split"] == split:
            old.unlink()

    provisional: list[pathlib.Path] = []
    writer: _ShardWriter | None = None
    for batch in _batches(data, schema):
        if writer is not None and writer.bytes + batch.nbytes > max_shard_bytes and writer.rows:
            writer.close()
            writer = None
        if writer is None:
            writer = _ShardWriter(out / f".{split}-{len(provisional):05d}.partial.parquet", schema, row_group_bytes)
            provisional.append(writer.path)
        writer.write(batch)
    if writer is None:  # no rows at all
        writer = _ShardWriter(out / f".{split}-00000.partial.parquet", schema, row_group_bytes)
        provisional.append(writer.path)
    writer.close()

    final = []
    for i, path in enumerate(provisional):
        target = out / shard_name(split, i, len(provisional))
        os.replace(path, target)
        final.append(target)
    return final


class _ShardWriter:
    """One shard: batches are buffered into row groups of at most ``row_group_bytes`` and the
    file is written through ``io.atomic_path`` (it appears only when closed)."""

    def __init__(self, path: pathlib.Path, schema: pa.Schema, row_group_bytes: int):
        self.path, self.schema, self.row_group_bytes = path, schema, row_group_bytes
        self._atomic = io.atomic_path(path)
        tmp = self._atomic.__enter__()
        options = writer_options()
        self._writer = pq.ParquetWriter(tmp, schema, **options)
        if "use_content_defined_chunking" in options:  # the marker `datasets` leaves for readers and re-writers
            self._writer.add_key_value_metadata({"content_defined_chunking": json.dumps(CDC_OPTIONS)})
        self._pending: list[pa.RecordBatch] = []
        self._pending_bytes = 0
        self.bytes = 0
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self._pending and self._pending_bytes + batch.nbytes > self.row_group_bytes:
            self._flush()
        self._pending.append(batch)
        self._pending_bytes += batch.nbytes
        self.bytes += batch.nbytes
        self.rows += batch.num_rows

    def _flush(self) -> None:
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self._pending, self._pending_bytes = [], 0

    def close(self) -> None:
        try:
            if self._pending or self.rows == 0:
                self._flush()
            self._writer.close()
        except BaseException as e:
            self._atomic.__exit__(type(e), e, e.__traceback__)
            raise
        self._atomic.__exit__(None, None, None)


def splits(folder: str | os.PathLike, config: str) -> list[str]:
    """The splits a config has on disk, in a stable order (train, validation, test, then others)."""
    found = {m["split"] for p in config_dir(folder, config).glob("*.parquet") if (m := _SHARD_RE.match(p.name))}
    order = {"train": 0, "validation": 1, "test": 2}
    return sorted(found, key=lambda s: (order.get(s, 3), s))


def configs(folder: str | os.PathLike) -> list[str]:
    """The configs a folder has on disk (subdirectories of ``data/`` holding shards)."""
    root = pathlib.Path(folder) / DATA_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and splits(folder, p.name))


def shard_paths(folder: str | os.PathLike, config: str, split: str) -> list[pathlib.Path]:
    """The shards of a split, in order; ``UserError`` naming the first that is not a whole Parquet
    file (truncated, overwritten): every reader of a dataset folder goes through here."""
    paths = sorted(p for p in config_dir(folder, config).glob(f"{split}-*.parquet")
                   if (m := _SHARD_RE.match(p.name)) and m["split"] == split)
    for path in paths:
        _check_whole(path)
    return paths


def _check_whole(path: pathlib.Path) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(max(0, path.stat().st_size - 4))
            tail = f.read(4)
    except OSError as e:
        raise UserError(f"{path}: cannot read this shard ({e.strerror or e})") from None
    if head != b"PAR1" or tail != b"PAR1":
        raise UserError(f"{path}: not a whole Parquet file (truncated or overwritten); rebuild the dataset")


def read_split(folder: str | os.PathLike, config: str, split: str, columns: list[str] | None = None) -> pa.Table:
    """One split of one config as a table (all its shards)."""
    paths = shard_paths(folder, config, split)
    if not paths:
        raise UserError(f"{config_dir(folder, config)}: no shards for split {split!r}")
    tables = []
    for p in paths:
        try:
            tables.append(pq.read_table(p, columns=columns))
        except (pa.ArrowInvalid, OSError) as e:
            raise UserError(f"{p}: not a readable Parquet shard ({str(e).splitlines()[0]})") from None
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


__all__ = [
    "DATA_DIR", "MAX_SHARD_BYTES", "config_dir", "configs", "read_split", "shard_name", "shard_paths",
    "split_pattern", "splits", "write_split", "writer_options",
]
