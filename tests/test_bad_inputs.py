"""Every bad input of issue 20's red team (item 7): one line, exit status 2, nothing half-written;
SIGTERM ends a command like Ctrl-C does, and a temporary directory a killed grader left behind is
gone with the next run. Real subprocesses, real files, a real full disk (a 64 KiB tmpfs, as root).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n"
RIGHT = {"problem_id": "add", "prompt": "def add(a, b):\n", "completion": "def add(a, b):\n    return a + b\n",
         "test": TEST, "entry_point": "add"}
STDIO = {"problem_id": "sum", "prompt": "", "completion": "print(3)\n", "inputs": ["1 2\n"], "outputs": ["3\n"]}


def cli(*args: str, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO, env=ENV, check=False)


def one_line_error(proc: subprocess.CompletedProcess, stage: str) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith(f"ap2o-build {stage}: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def write_jsonl(path: pathlib.Path, rows) -> pathlib.Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- rows --------------------------------------------------------------------------------------------

BAD_ROWS = {
    "stdio inputs that are not text": ({**STDIO, "inputs": [{"a": 1}]}, "'inputs' must hold strings"),
    "a null expected output": ({**STDIO, "outputs": [None]}, "'outputs' must hold strings"),
    "an entry point that is code": ({**RIGHT, "entry_point": "add; import os"}, "entry_point must be"),
    "an entry point that is a builtin's dunder": ({**RIGHT, "entry_point": "__import__"}, "entry_point must be"),
    "an entry point that is a keyword": ({**RIGHT, "entry_point": "lambda"}, "entry_point must be"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_row_is_one_line_and_writes_nothing(tmp_path, case):
    row, words = BAD_ROWS[case]
    out = tmp_path / "out.parquet"
    proc = cli("grade", "--input", str(write_jsonl(tmp_path / "rows.jsonl", [RIGHT, row])), "--output", str(out),
               "--workers", "1", "--no-progress")
    assert words in one_line_error(proc, "grade")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]


# --- recipes ------------------------------------------------------------------------------------------

BAD_RECIPES = {
    "limit: ten": ("problems:\n  limit: ten\n", "limit must be a whole number or null, got 'ten'"),
    "limit: true": ("problems:\n  limit: true\n", "limit must be a whole number or null, got True"),
    "limit: 2.5": ("problems:\n  limit: 2.5\n", "limit must be a whole number or null, got 2.5"),
    "n: [1, 2]": ("sample:\n  n: [1, 2]\n", "n must be a whole number, got [1, 2]"),
    "chunk_problems: lots": ("chunk_problems: lots\n", "chunk_problems must be a whole number, got 'lots'"),
    "timeout_s: fast": ("grader:\n  timeout_s: fast\n", "timeout_s must be a number, got 'fast'"),
    "answer_packages: numpy": ("grader:\n  answer_packages: numpy\n", "answer_packages must be a list of strings"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_a_recipe_value_of_the_wrong_type_is_one_line_and_builds_nothing(tmp_path, case):
    text, words = BAD_RECIPES[case]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    out = tmp_path / "ds"
    proc = cli("run", "--config", str(recipe), "--output", str(out), "--quiet")
    assert words in one_line_error(proc, "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]


# --- a full disk ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def full_disk(where: pathlib.Path, size: str = "64k"):
    """A tmpfs of ``size`` mounted at ``where`` (root only), unmounted afterwards."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()[:200]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")
@pytest.mark.parametrize("stage", ["grade", "run", "notebook"])
def test_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path, stage):
    with full_disk(tmp_path / "full") as disk:
        (disk / "filler").write_bytes(b"\0" * 40_000)  # the probe file fits, the output does not
        if stage == "grade":
            args = ["grade", "--demo", "--limit", "20", "--output", str(disk / "out.parquet"), "--workers", "1",
                    "--no-progress"]
        elif stage == "run":
            args = ["run", "--limit", "3", "--output", str(disk / "ds"), "--quiet"]
        else:
            graded = tmp_path / "graded.parquet"
            made = cli("grade", "--demo", "--limit", "20", "--output", str(graded), "--workers", "1", "--no-progress")
            assert made.returncode == 0, made.stderr
            args = ["notebook", str(graded), "--output", str(disk / "ds"), "--quiet"]
        proc = cli(*args)
        line = one_line_error(proc, stage)
        assert "No space left on device" in line, line
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no half-written output, no temporary


# --- SIGTERM and SIGKILL ----------------------------------------------------------------------------------

LOOP = {**RIGHT, "completion": "def add(a, b):\n    while True:\n        pass\n"}


def _host_dirs(pid: int) -> list[pathlib.Path]:
    return sorted(pathlib.Path(tempfile.gettempdir()).glob(f"ap2o-sandbox-{pid}-*"))


def _start_grading(tmp_path: pathlib.Path) -> tuple[subprocess.Popen, pathlib.Path]:
    out = tmp_path / "out.parquet"
    src = write_jsonl(tmp_path / "rows.jsonl", [LOOP] * 4)
    proc = subprocess.Popen([sys.executable, "-m", "builder.cli", "grade", "--input", str(src), "--output", str(out),
                             "--workers", "1", "--timeout", "600", "--time-limit", "fixed", "--no-progress"],
                            cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _host_dirs(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _host_dirs(proc.pid), "the grader never started its sandbox"
    time.sleep(1.0)  # its workers are up and running the first loop
    return proc, out


def test_sigterm_says_so_cleans_up_and_exits_143(tmp_path):
    proc, out = _start_grading(tmp_path)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    stderr = proc.stderr.read()
    assert rc == 143 and "ap2o-build grade: terminated" in stderr and "Traceback" not in stderr, stderr
    assert _host_dirs(proc.pid) == [] and not out.exists()


def test_what_a_sigkilled_grader_left_is_removed_by_the_next_run(tmp_path):
    proc, _ = _start_grading(tmp_path)
    proc.kill()
    proc.wait(timeout=60)
    left = _host_dirs(proc.pid)
    assert left  # SIGKILL: no cleanup of ours ran
    from builder.grading.grader import Grader, GraderConfig

    with Grader(GraderConfig(workers=1)):
        pass
    assert _host_dirs(proc.pid) == []


# --- a dataset folder with a broken shard ----------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("built") / "ds"
    proc = cli("run", "--limit", "3", "--output", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_card_on_a_dataset_with_a_broken_shard_is_one_line(built, tmp_path, damage):
    import shutil

    folder = tmp_path / "ds"
    shutil.copytree(built, folder)
    shard = sorted((folder / "data" / "pairs").glob("*.parquet"))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not parquet at all")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    line = one_line_error(cli("card", str(folder)), "card")
    assert str(shard) in line and "not a whole Parquet file" in line
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # nothing written beside it
