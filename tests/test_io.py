"""Reading user rows names the line and column at fault; writing never leaves half a file."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from builder import io
from builder.errors import UserError


def test_jsonl_malformed_line_is_named(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(UserError, match=r"rows.jsonl:2: malformed JSON"):
        io.read_rows(p)


def test_jsonl_non_utf8_byte_is_named(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_bytes(b'{"a": "ok"}\n\n{"a": "\xff"}\n')
    with pytest.raises(UserError, match=r"rows.jsonl:3: not valid UTF-8"):
        io.read_rows(p)


def test_jsonl_missing_column_is_named(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"a": 1, "b": 2}\n{"a": 1}\n')
    with pytest.raises(UserError, match=r"rows.jsonl:2: missing column 'b'"):
        io.read_rows(p, required=["a", "b"])


def test_parquet_missing_column_is_named(tmp_path):
    p = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"a": [1]}), p)
    with pytest.raises(UserError, match=r"missing column 'b'"):
        io.read_rows(p, required=["b"])
    assert io.read_rows(p).num_rows == 1


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_write_parquet_replaces_atomically_with_zstd(tmp_path):
    target = tmp_path / "out.parquet"
    io.write_parquet(pa.table({"a": [1, 2]}), target)
    io.write_parquet(pa.table({"a": [3]}), target)
    assert pq.read_table(target).column("a").to_pylist() == [3]
    assert pq.ParquetFile(target).metadata.row_group(0).column(0).compression == "ZSTD"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_jsonl_rows_with_different_columns_keep_all_of_them(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"a": 1, "test": "t"}\n{"a": 2, "inputs": ["1"]}\n')
    table = io.read_rows(p)
    assert table.column_names == ["a", "test", "inputs"]
    assert table.column("inputs").to_pylist() == [None, ["1"]]


def test_jsonl_lone_surrogate_escape_is_named(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"a": "ok \\u00e9"}\n{"a": "x", "b": "\\ud800"}\n')
    with pytest.raises(UserError, match=r"rows.jsonl:2: column 'b' holds a lone surrogate"):
        io.read_rows(p)


def test_jsonl_mixed_types_in_a_column_are_named(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"a": 1}\n{"a": "one"}\n')
    with pytest.raises(UserError, match=r"rows.jsonl: a column mixes types"):
        io.read_rows(p)


@pytest.mark.parametrize(("content", "message"), [
    ("", r"rows.jsonl: no rows \(the file is empty"),
    ("\n   \n\t\n", r"rows.jsonl: no rows \(the file is empty"),
    ('{"a": 1}\n{"a": ' + "7" * 5000 + "}\n", r"rows.jsonl:2: an integer with more than \d+ digits"),
    ('{"a": 1}\n{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n", r"rows.jsonl:2: JSON nested too deeply"),
    ('{"a": 1}\n{"a": ' + str(10**30) + "}\n", r"rows.jsonl: an integer does not fit in 64 bits"),
], ids=["empty", "blank", "5000-digit-int", "100k-deep-array", "int-beyond-64-bits"])
def test_jsonl_bad_content_is_one_named_user_error(tmp_path, content, message):
    p = tmp_path / "rows.jsonl"
    p.write_text(content)
    with pytest.raises(UserError, match=message) as info:
        io.read_rows(p)
    assert "\n" not in str(info.value)


def test_a_directory_is_named_as_one(tmp_path):
    d = tmp_path / "rows.jsonl"
    d.mkdir()
    with pytest.raises(UserError, match=r"rows.jsonl: is a directory"):
        io.read_rows(d)
