"""Shards are written as ``datasets`` 5.x writes Parquet (content-defined chunking, a page index),
within the shard and row-group caps, and ``datasets.load_dataset`` reads them back."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builder.dataset import shards


def _table(rows: int = 3000) -> pa.Table:
    return pa.table({"i": list(range(rows)), "text": [f"row {i} " + "x" * (i % 200) for i in range(rows)]})


@pytest.fixture
def written(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "_BATCH_BYTES", 16 * 1024)  # batches fine enough for caps this small
    table = _table()
    paths = shards.write_split(tmp_path, "demo", "train", table, table.schema,
                               max_shard_bytes=table.nbytes // 3, row_group_bytes=table.nbytes // 10)
    return tmp_path, table, paths


def test_every_column_chunk_has_a_page_index(written):
    _, _, paths = written
    chunks = [pq.ParquetFile(p).metadata.row_group(g).column(c)
              for p in paths for g in range(pq.ParquetFile(p).metadata.num_row_groups)
              for c in range(pq.ParquetFile(p).metadata.num_columns)]
    assert chunks and all(c.has_offset_index and c.has_column_index for c in chunks)


def test_content_defined_chunking_is_recorded_as_datasets_records_it(written):
    _, _, paths = written
    meta = pq.ParquetFile(paths[0]).metadata.metadata
    assert json.loads(meta[b"content_defined_chunking"]) == shards.CDC_OPTIONS


def test_shard_and_row_group_caps_still_hold(written):
    _, table, paths = written
    assert len(paths) >= 3  # a third of the bytes per shard
    groups = [pq.ParquetFile(p).metadata.row_group(g) for p in paths
              for g in range(pq.ParquetFile(p).metadata.num_row_groups)]
    assert len(groups) >= 10 and sum(g.num_rows for g in groups) == table.num_rows  # a tenth of the bytes per group
    assert max(g.num_rows for g in groups) <= table.num_rows // 5


def test_datasets_reads_the_shards_back(written):
    import datasets

    folder, table, paths = written
    ds = datasets.load_dataset("parquet", data_files=[str(p) for p in paths], split="train",
                               cache_dir=str(folder / "cache"))
    assert ds["i"] == table.column("i").to_pylist()
    assert ds["text"] == table.column("text").to_pylist()
