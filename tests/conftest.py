"""Shared fixtures. Everything is built offline: no test downloads a model or a dataset."""

from __future__ import annotations

import atexit
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest
from filelock import FileLock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A datasets cache of this run's own: two folders written at the same tmp path (ds0, card0, ...) by two
# runs, or a user's earlier cache, must never hand one test another's rows.
_HF_CACHE = tempfile.mkdtemp(prefix="ap2o-tests-hf-")
atexit.register(shutil.rmtree, _HF_CACHE, ignore_errors=True)
os.environ.setdefault("HF_DATASETS_CACHE", _HF_CACHE)
from synthetic_samples import humaneval_completions
from tiny_models import make_tiny_model

import builder  # noqa: E402,F401 - its OpenMP setting must precede the first torch import of any test

REPO = pathlib.Path(__file__).resolve().parents[1]
# MBPP as a save_to_disk folder (train/validation/test), for the tests that read a real copy; they skip
# without it. Nothing outside the repository is read unless named here.
MBPP_COPY = os.environ.get("AP2O_MBPP")

# The README runs the suite on pytest-xdist's workers, a module per worker at a time (--dist loadfile:
# module fixtures such as the Ray cluster and the vLLM probe start once). A module is handed out when a
# worker is free, in collection order, so the longest modules go first: one that started last would
# be the suite's tail. Quiet 2-core figures, in seconds (--durations): the rest take under 30 each.
LONGEST_FIRST = ("test_ray.py", "test_sampling_vllm.py", "test_benchmark_scripts.py", "test_run.py",
                 "test_quickstart.py", "test_evaluate.py", "test_grade_cli.py", "test_sandbox.py",
                 "test_train_e2e.py", "test_bad_inputs.py", "test_quiz_vllm.py")
MAX_WORKERS = 4  # -n auto: a worker per core up to this; each holds torch, and some start Ray or vLLM


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def pytest_xdist_auto_num_workers(config):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


@pytest.fixture(scope="module")
def grader(request):
    """A started ``Grader`` for a module's tests (its worker pool is the slow part to start): the
    settings are ``GraderConfig``'s defaults with 2 workers and a 5 s limit, changed by the module's
    ``GRADER_SETTINGS`` (a short limit for the Timeout tests, one worker where answers must follow
    each other). ``sandboxed.grade_one`` grades one answer with it."""
    from builder.grading.grader import Grader, GraderConfig

    settings = {"timeout_s": 5.0, "workers": 2, **getattr(request.module, "GRADER_SETTINGS", {})}
    with Grader(GraderConfig(**settings)) as g:
        yield g


@pytest.fixture(scope="session")
def embedded_default(tmp_path_factory) -> tuple[pathlib.Path, subprocess.CompletedProcess]:
    """The embedded default as a user builds it, ``ap2o-build run --output DIR --quiet`` in a process
    of its own, once for the whole run: the folder and the finished process (its stdout and stderr).
    Tests read it; none writes to it. Under pytest-xdist the workers share one build: the first to
    ask makes it under a file lock, in the run's common temporary folder, and the others read it."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # xdist: gw0, gw1, ... share it
    out, log = root / "embedded-default" / "ap2o-humaneval", root / "embedded-default.json"
    with FileLock(str(log) + ".lock"):
        if not log.exists():
            proc = subprocess.run([sys.executable, "-m", "builder.cli", "run", "--output", str(out), "--quiet"],
                                  capture_output=True, text=True, cwd=REPO, timeout=600, check=False)
            assert proc.returncode == 0, proc.stderr[-3000:]
            log.write_text(json.dumps({"stdout": proc.stdout, "stderr": proc.stderr}))
    done = json.loads(log.read_text())
    return out, subprocess.CompletedProcess([], 0, done["stdout"], done["stderr"])


@pytest.fixture(scope="session")
def completions(tmp_path_factory) -> pathlib.Path:
    """A completions file for the ``file`` backend (``synthetic_samples.humaneval_completions``): 8
    HumanEval problems, each with two right answers and broken variants. Never written to."""
    path = tmp_path_factory.mktemp("completions") / "answers.jsonl"
    humaneval_completions(path, problems=8)
    return path


@pytest.fixture(scope="session")
def slow_completions(tmp_path_factory) -> pathlib.Path:
    """The same answers with the second right one sleeping 0.5 s first: a chunk of two problems
    grades for a second or more, long enough for a test to interrupt a build or kill an actor."""
    path = tmp_path_factory.mktemp("slow-completions") / "answers.jsonl"
    humaneval_completions(path, problems=8, slow_s=0.5)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> pathlib.Path:
    pytest.importorskip("transformers")
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def chatml_model_dir(tmp_path_factory) -> pathlib.Path:
    pytest.importorskip("transformers")
    return make_tiny_model(tmp_path_factory.mktemp("tiny-chatml-model"), chatml=True)


@pytest.fixture(scope="session")
def mbpp_path() -> pathlib.Path:
    if not MBPP_COPY or not pathlib.Path(MBPP_COPY).exists():
        pytest.skip(f"no MBPP copy: set AP2O_MBPP to MBPP's save_to_disk folder (now: {MBPP_COPY or 'unset'})")
    return pathlib.Path(MBPP_COPY)
