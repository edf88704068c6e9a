"""The quiz sampled with vLLM (``--quiz-backend vllm``, ``trainer.quiz_vllm``).

Here, in the main environment: the policy written for vLLM is the policy (the same logits from the
folder as from the PEFT model, which stays as it was), the quiz's problems reach the sampling process
as they are, the settings are checked when the command line is read, and a sampling process that
fails is one line. With a vLLM environment (``$AP2O_VLLM_PYTHON``, as ``tests/vllm_env.py`` finds
it): one short LoRA run of ``ap2o-train`` whose quizzes vLLM answers. An engine start costs ~30-85 s
on 2 cores, so that is the only test that starts one.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import pyarrow.parquet as pq
import pytest

pytest.importorskip("peft")

from tiny_dataset import VALIDATION, write_dataset
from tiny_models import VLLM_TINY_MODEL, make_tiny_model
from vllm_env import VLLM_PYTHON, needs_vllm

import schemas
from builder.errors import UserError
from trainer.config import QuizConfig
from trainer.quiz_vllm import export_policy, write_problems

REPO = pathlib.Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
SMALL = ["--max-length", "128", "--per-device-train-batch-size", "2", "--learning-rate", "1e-3",
         "--quiz-max-new-tokens", "16", "--quiz-workers", "1", "--report-to", "none", "--save-strategy", "no"]


def logits(model, tokenizer):
    import torch

    ids = torch.tensor([tokenizer.encode("def add(a, b):\n    return a + b\n")])
    with torch.no_grad():
        return model(ids).logits


def state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def lora_policy(model_dir):
    """The tiny model with LoRA adapters whose B is not zero, after one optimizer step, so that the
    merge changes the output."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules="all-linear",
                                      init_lora_weights=False))
    step(model, tokenizer)
    return model, tokenizer


def step(model, tokenizer) -> None:
    import torch

    ids = torch.tensor([tokenizer.encode("def f(x):\n    return x + 1\n")])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    model.eval()


def test_a_lora_policy_is_written_merged_and_stays_as_it_was(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    model, tokenizer = lora_policy(tiny_model_dir)
    before, expected = state(model), logits(model, tokenizer)
    with model.disable_adapter():
        assert not torch.allclose(logits(model, tokenizer), expected, atol=1e-4)  # the adapters matter

    folder = export_policy(model, tokenizer, tmp_path / "policy")
    plain = AutoModelForCausalLM.from_pretrained(folder)
    assert not any("lora" in k or "base_layer" in k for k in plain.state_dict())
    torch.testing.assert_close(logits(plain, tokenizer), expected, rtol=1e-5, atol=1e-5)

    after = state(model)  # bitwise: nothing merged into the training model and back
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert not any(getattr(m, "merged", False) for m in model.modules())
    torch.testing.assert_close(logits(model, tokenizer), expected, rtol=0, atol=0)


def test_a_fully_fine_tuned_policy_is_written_as_it_is(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    step(model, tokenizer)
    expected = logits(model, tokenizer)
    plain = AutoModelForCausalLM.from_pretrained(export_policy(model, tokenizer, tmp_path / "policy"))
    torch.testing.assert_close(logits(plain, tokenizer), expected, rtol=1e-5, atol=1e-5)
    assert (tmp_path / "policy" / "tokenizer_config.json").is_file()


def test_the_quiz_problems_reach_the_sampling_process_as_they_are(tmp_path):
    """Ids without a '/' too: ``ap2o-build sample --problems FILE`` would make ``double`` ``problems/double``,
    and the quiz would find no answer for its problem."""
    rows = [{"problem_id": pid, "kind": "function", "prompt": p, "test": t, "entry_point": e, "reference_cpu_s": 0.5}
            for pid, (p, t, e) in VALIDATION.items()]
    back = schemas.conform(pq.read_table(write_problems(rows, tmp_path / "p.parquet")), schemas.PROBLEMS,
                           keep_extra=False).to_pylist()
    assert [{k: r[k] for k in rows[0]} for r in back] == rows


def test_the_backend_settings_are_checked_when_the_command_line_is_read(tmp_path):
    from trainer.arguments import parse_command_line

    line = parse_command_line(["--dataset", "d", "--model", "m", "--output-dir", "o", "--quiz-backend", "vllm",
                               "--quiz-vllm-python", sys.executable, "--quiz-vllm-args", "enforce_eager=true"])
    assert (line.quiz.quiz_backend, line.quiz.quiz_vllm_python) == ("vllm", sys.executable)
    assert line.quiz.quiz_vllm_args == ["enforce_eager=true"]
    assert QuizConfig().quiz_backend == "transformers"  # the official code's: the training model samples
    with pytest.raises(UserError, match="quiz_vllm_python '/no/python': no such executable"):
        QuizConfig(quiz_backend="vllm", quiz_vllm_python="/no/python")
    with pytest.raises(UserError, match="quiz_vllm_args is for quiz_backend 'vllm', not 'transformers'"):
        QuizConfig(quiz_vllm_args=["enforce_eager=true"])
    with pytest.raises(UserError, match="quiz_vllm_args: expected KEY=VALUE, got 'enforce_eager'"):
        QuizConfig(quiz_backend="vllm", quiz_vllm_python=sys.executable, quiz_vllm_args=["enforce_eager"])
    with pytest.raises(UserError, match="quiz_backend must be one of transformers, vllm"):
        QuizConfig(quiz_backend="tgi")


def quiz_run_argv(model_dir, tmp_path, *more: str) -> list[str]:
    """A LoRA run of 2 steps on the test dataset, quizzed after step 2 (3 problems), with ``more``."""
    return [sys.executable, "-m", "trainer.train", "--dataset", str(write_dataset(tmp_path / "ds")), "--model",
            str(model_dir), "--method", "ap2o-l2h", "--output-dir", str(tmp_path / "out"), "--max-steps", "2",
            "--quiz-strategy", "steps", "--quiz-steps", "2", "--quiz-backend", "vllm", *SMALL, *more]


def test_a_missing_quiz_python_is_refused_before_training(tmp_path):
    done = subprocess.run(quiz_run_argv(tmp_path / "model", tmp_path, "--quiz-vllm-python", str(tmp_path / "py")),
                          capture_output=True, text=True, timeout=300, check=False, env=ENV, cwd=REPO)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"ap2o-train: error: quiz_vllm_python {str(tmp_path / 'py')!r}: no such executable")


@pytest.mark.slow
def test_a_sampling_process_that_fails_is_one_line_exit_2_and_leaves_no_folder(tiny_model_dir, tmp_path):
    """This environment's Python has no vLLM: the sampling process fails there, for real,
    at the run's first quiz, and ``ap2o-train`` says so in one line naming the process and its last line."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    done = subprocess.run(quiz_run_argv(tiny_model_dir, tmp_path, "--quiz-vllm-python", sys.executable),
                          capture_output=True, text=True, timeout=600, check=False, env={**ENV, "TMPDIR": str(tmp)},
                          cwd=REPO)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ap2o-train: error: quiz_backend 'vllm': sampling with {sys.executable} failed (exit 2): "
                           "ap2o-train quiz (vllm): error: vLLM is not installed"), last
    assert "Traceback" not in done.stderr
    assert not list(tmp.glob("ap2o-quiz-vllm-*"))  # the policy's folder is gone


# --- with vLLM, in its environment --------------------------------------------------------------


@pytest.fixture(scope="module")
def vllm_model(tmp_path_factory) -> pathlib.Path:
    return make_tiny_model(tmp_path_factory.mktemp("vllm-model"), **VLLM_TINY_MODEL)


@needs_vllm
@pytest.mark.slow
def test_a_lora_run_whose_quizzes_vllm_answers(vllm_model, tmp_path):
    """``ap2o-train`` in this environment, its quizzes sampled by ``ap2o-build sample`` in the vLLM one:
    the quiz log, the best adapter and the error curve come out as with transformers."""
    out, before = tmp_path / "out", set(pathlib.Path(tempfile.gettempdir()).glob("ap2o-quiz-vllm-*"))
    argv = quiz_run_argv(vllm_model, tmp_path, "--quiz-vllm-python", VLLM_PYTHON, "--quiz-vllm-args",
                         "enforce_eager=true")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1200, check=False,
                          env={**ENV, "VLLM_CPU_KVCACHE_SPACE": "1"}, cwd=REPO)
    assert done.returncode == 0, done.stderr[-4000:]
    [line] = [x for x in done.stderr.splitlines() if "answers with vLLM" in x]
    assert line.startswith("ap2o-train: quiz at step 2: sampled 3 answers with vLLM in "), line
    assert "engine start" in line
    [quiz] = [json.loads(x) for x in (out / "quiz.jsonl").read_text().splitlines()]
    assert (quiz["step"], quiz["total"]) == (2, 3)
    assert sum(quiz["error_counts"].values()) == quiz["total"] - quiz["passed"]
    assert "ap2o-train: quiz at step 2: pass@1" in done.stderr
    assert (out / "best/adapter_model.safetensors").is_file() and (out / "error_curve.png").is_file()
    assert set(pathlib.Path(tempfile.gettempdir()).glob("ap2o-quiz-vllm-*")) == before  # the policy's folder is gone
