"""``ap2o-train`` end to end on the tiny model: real TRL steps, real quizzes graded in the sandbox."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from test_schedule import write_dataset

pytest.importorskip("trl")
pytest.importorskip("builder.grader", reason="the quiz grades with builder.grader")

from trainer import cli

SMALL = ["--max-length", "128", "--per-device-train-batch-size", "2", "--learning-rate", "1e-3",
         "--quiz-max-new-tokens", "16", "--logging-steps", "5", "--quiz-workers", "1"]


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("ds"))


def read_jsonl(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def scalar_tags(out: pathlib.Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in out.glob("runs/*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


@pytest.mark.slow
def test_dpo_lora_run_with_two_quizzes(tiny_model_dir, dataset_dir, tmp_path):
    out = tmp_path / "out"
    argv = ["--dataset", str(dataset_dir), "--model", str(tiny_model_dir), "--method", "ap2o-l2h",
            "--output-dir", str(out), "--rounds", "8", "--quiz-every", "10", "--no-quiz-at-start",
            "--save-steps", "10", *SMALL]
    assert cli.main(argv) == 0

    # 8 rounds x 5 kept problems / batch 2 = 20 steps, quizzed at 10 and 20
    quizzes = read_jsonl(out / "quiz.jsonl")
    assert [q["step"] for q in quizzes] == [10, 20]
    for q in quizzes:
        assert q["total"] == 3 and 0.0 <= q["pass@1"] <= 1.0
        assert sum(q["error_counts"].values()) == q["total"] - q["passed"]
    tags = scalar_tags(out)
    assert {"train/quiz/pass@1", "train/quiz/failed", "train/loss"} <= tags
    assert any(t.startswith("train/quiz/errors/") for t in tags) or all(q["passed"] == 3 for q in quizzes)

    assert (out / "adapter_model.safetensors").exists() and (out / "adapter_config.json").exists()
    assert json.loads((out / "best/quiz.json").read_text())["step"] in (10, 20)
    assert (out / "best/adapter_model.safetensors").exists()
    assert (out / "error_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    eff = json.loads((out / "sample_efficiency.json").read_text())
    assert eff["pairs_consumed"] == 40 and eff["pairs_available"] == 36
    assert 0 < eff["distinct_pairs_consumed"] <= 36
    state = json.loads((out / "checkpoint-20/ap2o_schedule.json").read_text())
    assert state["schedule"]["position"] == 40 and len(state["events"]) == 2


@pytest.mark.slow
def test_sft_run_trains_on_passed_answers(tiny_model_dir, dataset_dir, tmp_path):
    out = tmp_path / "sft"
    argv = ["--dataset", str(dataset_dir), "--model", str(tiny_model_dir), "--method", "sft",
            "--output-dir", str(out), "--max-steps", "4", "--quiz-every", "4", "--no-quiz-at-start",
            "--save-strategy", "no", "--report-to", "none", *SMALL]
    assert cli.main(argv) == 0
    assert (out / "adapter_model.safetensors").exists()
    assert [q["step"] for q in read_jsonl(out / "quiz.jsonl")] == [4]
    assert not (out / "sample_efficiency.json").exists()  # no pairs in SFT


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert cli.main(["--dataset", str(tmp_path / "missing"), "--model", "x", "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "ap2o-train: error:" in err and "missing" in err
    assert cli.main(["--method", "ppo", "--dataset", "x", "--model", "x", "--output-dir", str(tmp_path)]) == 2
    assert "unknown method 'ppo'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_recipes_parse_for_every_method_of_table_2():
    from trainer.schedule import METHODS

    recipes = sorted((pathlib.Path(cli.__file__).parent / "recipes").glob("*.yaml"))
    seen = set()
    for recipe in recipes:
        data, model, sched, _quiz, targs = cli.parse(["--config", str(recipe), "--output-dir", "/tmp/unused"])
        assert model.model == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
        assert "mbpp" in data.dataset.lower()
        if sched.method != "sft":
            assert targs.beta == 0.1 and targs.learning_rate == 5e-7 and targs.warmup_steps == 0.1
        seen.add(sched.method)
    assert seen == set(METHODS)


@pytest.mark.slow
def test_two_process_run_under_accelerate(tiny_model_dir, dataset_dir, tmp_path):
    out = tmp_path / "ddp"
    pytest.importorskip("accelerate")
    # --multi_gpu with no visible GPU: torchrun starts 2 CPU processes on the gloo backend
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "trainer.cli",
           "--dataset", str(dataset_dir), "--model", str(tiny_model_dir), "--method", "ap2o-h2l",
           "--output-dir", str(out), "--rounds", "2", "--quiz-every", "2", "--use-cpu", "--report-to", "none",
           "--save-steps", "4", *SMALL[:2], "--per-device-train-batch-size", "1", "--quiz-max-new-tokens", "16",
           "--quiz-workers", "1"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False,
                          cwd=pathlib.Path(cli.__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 10 pairs, 2 ranks x 1 per step: 5 steps; the quiz runs once per quiz step, on rank 0 only
    assert "max_steps = 5" in proc.stderr
    assert [q["step"] for q in read_jsonl(out / "quiz.jsonl")] == [0, 2, 4]
    assert json.loads((out / "sample_efficiency.json").read_text())["pairs_consumed"] == 10
    assert (out / "checkpoint-4/ap2o_schedule.json").exists()


@pytest.mark.slow
def test_resume_from_checkpoint_continues_schedule_and_quiz_history(tiny_model_dir, dataset_dir, tmp_path):
    out = tmp_path / "run"
    argv = ["--dataset", str(dataset_dir), "--model", str(tiny_model_dir), "--method", "ap2o-h2l",
            "--output-dir", str(out), "--rounds", "2", "--quiz-every", "2", "--no-quiz-at-start", "--save-steps", "2",
            "--report-to", "none", *SMALL]
    assert cli.main(argv) == 0  # 10 pairs, 5 steps, checkpoints at 2 and 4
    uninterrupted = json.loads((out / "checkpoint-4/ap2o_schedule.json").read_text())
    assert [q["step"] for q in read_jsonl(out / "quiz.jsonl")] == [2, 4]

    assert cli.main([*argv, "--resume-from-checkpoint", str(out / "checkpoint-2")]) == 0
    resumed = json.loads((out / "checkpoint-4/ap2o_schedule.json").read_text())
    assert resumed == uninterrupted  # round, cursor, RNG, replay pool, quiz updates, pairs consumed
    assert [q["step"] for q in read_jsonl(out / "quiz.jsonl")] == [2, 4]  # quiz 4 retaken, not duplicated
    assert json.loads((out / "sample_efficiency.json").read_text())["pairs_consumed"] == 10
