"""Reading user rows and writing tables without ever leaving half a file behind.

Every command that reads a user's JSONL/Parquet goes through ``read_rows`` so that a malformed
line, a non-UTF-8 byte or a missing column gets the same kind of message: which file, which line,
which column. Every command that writes goes through ``atomic_path``/``write_parquet``: the data
goes to a temporary name beside the target and is renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from builder.errors import UserError

ZSTD = "zstd"
ROW_GROUP_BYTES = 100 * 1024 * 1024  # row groups at most ~100 MB (docs/dataset.md)


def read_rows(path: str | os.PathLike, *, required: Iterable[str] = ()) -> pa.Table:
    """Read a JSONL or Parquet file into a table; raise ``UserError`` naming the file and the
    line (JSONL) or column at fault. ``required`` columns must be present in every row."""
    path = pathlib.Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a JSONL or Parquet file")
    required = list(required)
    if path.suffix in (".parquet", ".pq"):
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise UserError(f"{path}: not a readable Parquet file ({e})") from None
        missing = [c for c in required if c not in table.column_names]
        if missing:
            raise UserError(f"{path}: missing column {missing[0]!r} (have: {', '.join(table.column_names)})")
        return table
    try:
        rows = list(_iter_jsonl(path, required))
    except OSError as e:  # a FIFO that fails, a file removed under us, a permission denied...
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    if not rows:
        raise UserError(f"{path}: no rows (the file is empty or holds only blank lines)")
    try:
        return _table_from_rows(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise UserError(f"{path}: a column mixes types across lines ({e})") from None
    except OverflowError:
        raise UserError(f"{path}: an integer does not fit in 64 bits") from None


def _table_from_rows(rows: list[dict]) -> pa.Table:
    """Columns are the union of every row's keys, in order of first appearance: a file that mixes
    function and stdio rows keeps both kinds' columns (``Table.from_pylist`` would keep only the
    first row's keys and silently drop the rest)."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    return pa.table({name: [row.get(name) for row in rows] for name in names})


def _iter_jsonl(path: pathlib.Path, required: list[str]) -> Iterator[dict]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
            except ValueError:  # an integer past Python's int-string limit
                raise UserError(f"{path}:{lineno}: an integer with more than {sys.get_int_max_str_digits()} "
                                "digits (Python's limit for reading integers)") from None
            except RecursionError:
                raise UserError(f"{path}:{lineno}: JSON nested too deeply "
                                f"(more than about {sys.getrecursionlimit()} levels)") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            if "\\u" in text:  # only an escape can smuggle in a lone surrogate (valid JSON, invalid Unicode)
                _check_unicode(row, path, lineno)
            for col in required:
                if col not in row:
                    raise UserError(f"{path}:{lineno}: missing column {col!r}")
            yield row


def _check_unicode(row: dict, path: pathlib.Path, lineno: int) -> None:
    for col, value in row.items():
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"{path}:{lineno}: column {col!r} holds a lone surrogate escape "
                            "(not valid Unicode)") from None


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block
    succeeds, remove it otherwise. Works for files and for directories."""
    target = pathlib.Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp = pathlib.Path(tmp)
    try:
        yield tmp
        if target.is_dir() and tmp.is_dir():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def check_writable(target: str | os.PathLike, what: str = "output", *, kind: str = "file") -> None:
    """Fail now, with a ``UserError`` naming ``what``, if writing ``target`` would fail at the end
    (after hours of work): a read-only file system, a directory we may not write in, a parent that
    is a file, a name too long. ``kind``: ``file`` (written atomically beside: ``atomic_path``; a
    directory there is an error), ``folder`` (a folder made atomically beside, as ``ap2o-build run``
    makes its dataset; one already there is the caller's to refuse or overwrite) or ``into`` (a
    folder written into as work goes on: ``ap2o-eval --output``, ``ap2o-train --output-dir``).
    Creates nothing (a probe file is made and removed). Every command that writes calls it before
    any work."""
    target = pathlib.Path(target)
    if kind not in ("file", "folder", "into"):
        raise ValueError(f"check_writable: unknown kind {kind!r}")
    if kind == "file" and target.is_dir():
        raise UserError(f"{what} {target}: is a directory, expected a file path")
    if kind != "file" and target.exists() and not target.is_dir():
        raise UserError(f"{what} {target}: is a file, expected a folder")
    parent = target if kind == "into" else target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{what} {target}: {parent} is not a directory")
    try:  # the very name atomic_path will use; as root os.access would say yes to a read-only mount
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise UserError(f"{what} {target}: cannot write in {parent} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def write_parquet(table: pa.Table, target: str | os.PathLike) -> pathlib.Path:
    """Write ``table`` to ``target`` atomically, zstd-compressed, row groups <= ~100 MB."""
    rows_per_group = _rows_per_group(table)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression=ZSTD, row_group_size=rows_per_group)
    return pathlib.Path(target)


def _rows_per_group(table: pa.Table) -> int:
    if table.num_rows == 0 or table.nbytes == 0:
        return max(table.num_rows, 1)
    return max(1, int(table.num_rows * ROW_GROUP_BYTES / table.nbytes))
