"""``ap2o-build execute`` as users run it: a real subprocess, real files, output read back with
``datasets``; bad input gives a named error, exit status 2 and no output file."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas

TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n"
FUNCTION = {"prompt": "def add(a, b):\n", "test": TEST, "entry_point": "add", "inputs": None, "outputs": None}
STDIO = {"prompt": "Read two ints, print the sum.", "test": None, "entry_point": None,
         "inputs": ["1 2\n"], "outputs": ["3\n"]}

ROWS = [
    {"problem_id": "add", **FUNCTION, "completion": "def add(a, b):\n    return a + b\n", "note": "right"},
    {"problem_id": "add", **FUNCTION, "completion": "def add(a, b):\n    return a + c\n", "note": "typo"},
    {"problem_id": "sum", **STDIO, "completion": "print(sum(map(int, input().split())))\n", "note": "io"},
    {"problem_id": "add", **FUNCTION, "completion": "Sorry, I can't.", "note": "prose"},
]


def execute(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder.cli", "execute", "--workers", "1", "--timeout", "2",
                           "--no-progress", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def write_jsonl(path: pathlib.Path, rows) -> pathlib.Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_in_parquet_out_readable_by_datasets(tmp_path):
    from datasets import load_dataset

    out = tmp_path / "graded.parquet"
    proc = execute("--input", str(write_jsonl(tmp_path / "rows.jsonl", ROWS)), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    ds = load_dataset("parquet", data_files=str(out), split="train")
    assert ds.num_rows == 4
    assert ds["passed"] == [True, False, True, False]
    assert ds["error_type"] == [None, "NameError", None, "NoCode"]
    assert ds["kind"] == ["function", "function", "stdio", "function"]
    assert ds["note"] == ["right", "typo", "io", "prose"]  # every input column is kept
    table = pq.read_table(out)
    schemas.validate(table, schemas.SAMPLES)
    assert schemas.schema_of(table) == ("samples", schemas.SCHEMA_VERSION)
    # the per-error-type summary
    assert "| NameError" in proc.stdout and "| NoCode" in proc.stdout and "| (passed)" in proc.stdout
    assert "pass rate 50.0%" in proc.stdout


def test_parquet_input(tmp_path):
    src = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS[:2]), src)
    out = tmp_path / "out.parquet"
    proc = execute("--input", str(src), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(out).column("error_type").to_pylist() == [None, "NameError"]


def _assert_clean_failure(proc, tmp_path, out, *fragments):
    assert proc.returncode == 2
    assert proc.stderr.startswith("ap2o-build execute: error: ")
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written temp file


def test_missing_column_names_line_and_column(tmp_path):
    rows = [ROWS[0], {k: v for k, v in ROWS[1].items() if k != "entry_point"}]
    src, out = write_jsonl(tmp_path / "rows.jsonl", rows), tmp_path / "out.parquet"
    _assert_clean_failure(execute("--input", str(src), "--output", str(out)), tmp_path, out,
                          f"{src}:2", "'entry_point'")


def test_stdio_row_without_outputs_names_line_and_column(tmp_path):
    rows = [ROWS[2], {**ROWS[2], "outputs": None}]
    src, out = write_jsonl(tmp_path / "rows.jsonl", rows), tmp_path / "out.parquet"
    _assert_clean_failure(execute("--input", str(src), "--output", str(out)), tmp_path, out,
                          f"{src}:2", "'outputs'")


def test_malformed_line_names_the_line(tmp_path):
    src, out = tmp_path / "rows.jsonl", tmp_path / "out.parquet"
    src.write_text(json.dumps(ROWS[0]) + "\n" + '{"problem_id": "x", "completion": \n')
    _assert_clean_failure(execute("--input", str(src), "--output", str(out)), tmp_path, out,
                          f"{src}:2", "malformed JSON")


def test_non_utf8_byte_names_the_line(tmp_path):
    src, out = tmp_path / "rows.jsonl", tmp_path / "out.parquet"
    src.write_bytes(json.dumps(ROWS[0]).encode() + b"\n" + json.dumps(ROWS[1]).encode()[:-2] + b"\xff\"}\n")
    _assert_clean_failure(execute("--input", str(src), "--output", str(out)), tmp_path, out,
                          f"{src}:2", "UTF-8")


def test_lone_surrogate_escape_names_line_and_column(tmp_path):
    src, out = tmp_path / "rows.jsonl", tmp_path / "out.parquet"
    src.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({**ROWS[1], "completion": "x = '\ud800'"}) + "\n")
    _assert_clean_failure(execute("--input", str(src), "--output", str(out)), tmp_path, out,
                          f"{src}:2", "'completion'", "surrogate")


def test_missing_input_file(tmp_path):
    out = tmp_path / "out.parquet"
    _assert_clean_failure(execute("--input", str(tmp_path / "nope.jsonl"), "--output", str(out)), tmp_path, out,
                          "nope.jsonl", "no such file")


def test_demo_grades_the_bundled_examples(tmp_path):
    out = tmp_path / "demo.parquet"
    proc = execute("--demo", "--limit", "2", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    for label in ("(passed)", "NameError", "WrongResult", "SyntaxError", "ZeroDivisionError", "EarlyExit",
                  "Timeout", "NoCode"):
        assert f"| {label}" in proc.stdout
    table = pq.read_table(out)
    assert table.num_rows == 2 * 8 and "variant" in table.column_names


@pytest.mark.parametrize("module", ["builder.cli", "builder.execute", "builder.grader"])
def test_grading_never_imports_the_training_stack(module):
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
