"""Every script in benchmarks/ runs to its end at its smallest size.

The scripts are run by hand, to measure; nothing else imports them, so a rename in the code they
call breaks them unseen (``benchmarks/timeouts.py`` once did, at a merge). This runs each one as a
user would, with the least work it takes, and checks it printed its report without a traceback. It
asserts nothing about speed: at these sizes the numbers mean nothing, and exit status 1 (a script's
claim not met) counts as a run, where the script says so.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
from tiny_models import VLLM_TINY_MODEL, make_tiny_model
from vllm_env import VLLM_PYTHON

REPO = pathlib.Path(__file__).resolve().parents[1]
CLAIM_NOT_MET = 1  # what build.py, notebook.py and timeouts.py return when the measured claim fails

# script -> (its smallest arguments, the exit codes that mean it ran to its end); {model}: the tiny model
SMALLEST = {
    "build.py": (["--answers", "1", "--no-baseline"], {0, CLAIM_NOT_MET}),
    "grader.py": (["--limit", "1", "--loops", "1", "--timeout", "1"], {0}),
    "notebook.py": (["--rows", "400", "--problems", "20"], {0, CLAIM_NOT_MET}),
    "precision.py": (["--steps", "1", "--hidden", "64", "--layers", "1"], {0}),
    "quiz_backends.py": (["--model", "{model}", "--problems", "humaneval", "--split", "test", "--limit", "1",
                          "--max-new-tokens", "8", "--prompt-format", "completion", "--quiz-vllm-python", "{vllm}"],
                         {0}),
    "sampling.py": (["--smoke", "--model", "{model}", "--backends", "transformers", "--problems", "humaneval",
                     "--split", "test"], {0}),
    "timeouts.py": (["--problems", "2", "--workers", "2"], {0, CLAIM_NOT_MET}),
    "trainer_feed.py": (["--steps", "1", "--repeats", "1", "--epochs", "2", "--quiz-every", "1", "--batch-size", "2",
                         "--max-length", "128", "--cpu", "--plot", "{tmp}/trainer_feed.png"], {0}),
}


def test_every_benchmark_script_has_a_smallest_run():
    assert sorted(p.name for p in (REPO / "benchmarks").glob("*.py")) == sorted(SMALLEST)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMALLEST))
def test_the_script_runs_at_its_smallest_size(script, tiny_model_dir, tmp_path):
    if script in ("precision.py", "sampling.py", "trainer_feed.py"):
        pytest.importorskip("trl" if script == "trainer_feed.py" else "transformers")
    model = tiny_model_dir
    if script == "quiz_backends.py":  # both quiz backends: vLLM too, in its environment, on a model it takes
        if VLLM_PYTHON is None:
            pytest.skip("no vLLM environment (tests/vllm_env.py)")
        model = make_tiny_model(tmp_path / "vllm-model", **VLLM_TINY_MODEL)
    args, ok = SMALLEST[script]
    args = [a.format(model=model, tmp=tmp_path, vllm=VLLM_PYTHON) for a in args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "AP2O_PROGRESS": "0", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=tmp_path, check=False)
    assert done.returncode in ok, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stdout.strip(), done.stderr[-3000:]
