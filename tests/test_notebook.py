"""The error notebook: counts, frequencies and ranks per error type (global per split and per
problem), the wide per-problem table, the frequencies written back on samples, the Parquet shards,
and the ``notebook`` stage from files."""

from __future__ import annotations

import os
import subprocess
import sys

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from synthetic_samples import humaneval_samples

import schemas
from builder.dataset import shards
from builder.dataset.assemble import write_configs
from builder.dataset.notebook import annotate, count_errors
from builder.errors import UserError


def _rows(spec: list[tuple[str, str | None]], split: str = "train") -> pa.Table:
    """Samples from (problem_id, error_type or None for a pass)."""
    rows = [dict(problem_id=pid, split=split, kind="function", prompt="def f():\n", completion=f"x{i}",
                 passed=et is None, status="passed" if et is None else "failed", error_type=et)
            for i, (pid, et) in enumerate(spec)]
    return schemas.conform(pa.Table.from_pylist(rows), schemas.ANSWERS)


SPEC = [("a", None), ("a", "NameError"), ("a", "NameError"), ("a", "SyntaxError"),
        ("b", None), ("b", "SyntaxError"), ("b", "WrongResult"), ("c", None)]


def test_counts_frequencies_and_ranks():
    nb = count_errors(_rows(SPEC))
    table = nb.table("train").to_pylist()
    glob = [(r["error_type"], r["count"], r["frequency"], r["rank"]) for r in table if r["scope"] == "global"]
    # 5 failures: NameError 2, SyntaxError 2, WrongResult 1; the tie goes to the name
    assert glob == [("NameError", 2, 0.4, 1), ("SyntaxError", 2, 0.4, 2), ("WrongResult", 1, 0.2, 3)]
    per_a = [(r["error_type"], r["count"], r["rank"]) for r in table if r["problem_id"] == "a"]
    assert per_a == [("NameError", 2, 1), ("SyntaxError", 1, 2)]
    assert [r["frequency"] for r in table if r["problem_id"] == "b"] == [0.5, 0.5]
    assert not [r for r in table if r["problem_id"] == "c"]  # no failures, no rows
    assert {r["error_type"]: r["error_category"] for r in table} == {
        "NameError": "runtime", "SyntaxError": "compile", "WrongResult": "wrong_result"}
    schemas.validate(nb.table("train"), schemas.NOTEBOOK)


def test_wide_table_has_one_count_column_per_type_in_every_split():
    nb = count_errors(pa.concat_tables([_rows(SPEC), _rows([("z", None), ("z", "KeyError")], split="test")]))
    assert nb.error_types == ("NameError", "SyntaxError", "KeyError", "WrongResult")
    train, test = nb.wide_table("train"), nb.wide_table("test")
    assert train.schema == test.schema  # one schema per config, whatever each split holds
    assert train.column_names == ["problem_id", "answers", "passed", "failed", "pass_rate", *nb.error_types]
    a = train.to_pylist()[0]
    assert (a["problem_id"], a["answers"], a["passed"], a["failed"], a["NameError"], a["KeyError"]) == ("a", 4, 1, 3, 2, 0)
    assert train.to_pylist()[2]["pass_rate"] == 1.0  # problem c
    assert test.to_pylist() == [dict(problem_id="z", answers=2, passed=1, failed=1, pass_rate=0.5, NameError=0,
                                     SyntaxError=0, KeyError=1, WrongResult=0)]


def test_annotate_fills_frequencies_and_keeps_every_other_column():
    samples = _rows(SPEC).append_column("user_column", pa.array(range(len(SPEC))))
    out = annotate(samples, count_errors(samples))
    assert out.column("user_column").to_pylist() == list(range(len(SPEC)))
    assert out.column("error_frequency_problem").to_pylist() == [None, 2 / 3, 2 / 3, 1 / 3, None, 0.5, 0.5, None]
    assert out.column("error_frequency_global").to_pylist() == [None, 0.4, 0.4, 0.4, None, 0.4, 0.2, None]


def test_failed_answer_without_error_type_is_named():
    rows = _rows(SPEC).to_pylist()
    rows[1]["error_type"] = None
    with pytest.raises(UserError, match=r"1 failed answers have no error_type \(first in problem 'a'\)"):
        count_errors(pa.Table.from_pylist(rows, schema=schemas.ANSWERS))
    with pytest.raises(UserError, match="missing column 'label'"):
        count_errors(pa.table({"problem_id": ["a"], "error_type": [None]}))


def test_samples_without_split_count_as_train():
    nb = count_errors(_rows(SPEC).drop_columns(["split"]))
    assert nb.splits() == ["train"]


def test_files_and_table_give_the_same_folder(tmp_path):
    samples = pa.concat_tables([humaneval_samples(6), humaneval_samples(4, split="test")])
    files = []
    for i, part in enumerate((samples.slice(0, 11), samples.slice(11))):  # a split spread over two files
        files.append(tmp_path / f"part{i}.parquet")
        pq.write_table(part, files[-1])
    rows_a = write_configs(samples, tmp_path / "a", progress=False)
    rows_b = write_configs(files, tmp_path / "b", progress=False)
    assert rows_a == rows_b
    for config in rows_a:
        for split in rows_a[config]:
            a = shards.read_split(tmp_path / "a", config, split)
            b = shards.read_split(tmp_path / "b", config, split)
            assert a.equals(b), (config, split)


def test_shards_respect_the_size_caps(tmp_path):
    table = humaneval_samples(20)
    big = pa.concat_tables([table] * 40)
    paths = shards.write_split(tmp_path, "samples", "train", big, big.schema,
                               max_shard_bytes=big.nbytes // 3, row_group_bytes=big.nbytes // 10)
    assert [p.name for p in paths] == [f"train-{i:05d}-of-{len(paths):05d}.parquet" for i in range(len(paths))]
    assert len(paths) >= 3
    for p in paths:
        meta = pq.ParquetFile(p).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"
        assert p.stat().st_size <= big.nbytes // 3
        assert all(meta.row_group(i).total_byte_size <= big.nbytes // 10 * 1.5 for i in range(meta.num_row_groups))
    assert shards.read_split(tmp_path, "samples", "train").equals(big.cast(big.schema))
    # rewriting a split replaces its old shards (no stale -of-0000N files left)
    shards.write_split(tmp_path, "samples", "train", table, table.schema)
    assert [p.name for p in shards.shard_paths(tmp_path, "samples", "train")] == ["train-00000-of-00001.parquet"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "builder.cli", "notebook", *args], check=False, capture_output=True, text=True,
                          env=env, timeout=120)


def test_notebook_stage_writes_a_loadable_folder(tmp_path):
    import datasets

    samples = tmp_path / "graded.parquet"
    pq.write_table(humaneval_samples(8), samples)
    out = tmp_path / "ds"
    proc = _cli(str(samples), "--output", str(out), "--max-pairs-per-problem", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    for config in ("samples", "notebook", "notebook_by_problem", "pairs", "problems"):
        ds = datasets.load_dataset(str(out), data_files={"train": shards.split_pattern(config, "train")}, split="train")
        assert len(ds) > 0
    pairs = pl.from_arrow(shards.read_split(out, "pairs", "train"))
    assert pairs.group_by("problem_id").len()["len"].max() == 2


def test_notebook_stage_bad_input_leaves_nothing(tmp_path):
    bad = tmp_path / "ungraded.parquet"
    pq.write_table(humaneval_samples(2).drop_columns(["passed"]), bad)
    proc = _cli(str(bad), "--output", str(tmp_path / "ds"))
    assert proc.returncode == 2
    assert "missing column 'passed'" in proc.stderr and "ungraded.parquet" in proc.stderr
    assert not (tmp_path / "ds").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ungraded.parquet"]
