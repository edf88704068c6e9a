"""``ap2o-train`` end to end on the tiny model: real TRL steps, real quizzes graded in the sandbox."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from hub_standin import FakeHub
from huggingface_hub import constants as hub_constants
from tiny_dataset import write_dataset

pytest.importorskip("trl")
pytest.importorskip("builder.grading.grader", reason="the quiz grades with builder.grading.grader")

from trainer import train

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
            "--output-dir", str(out), "--num-train-epochs", "8", "--quiz-strategy", "steps", "--quiz-steps", "10",
            "--save-steps", "10", *SMALL]
    assert train.main(argv) == 0

    # 8 epochs of 5 kept problems in batches of 2 + 2 + 1 = 24 steps, quizzed at 10 and 20
    quizzes = read_jsonl(out / "quiz.jsonl")
    assert [q["step"] for q in quizzes] == [10, 20]
    for q in quizzes:
        assert q["total"] == 3 and 0.0 <= q["pass@1"] <= 1.0
        assert sum(q["error_counts"].values()) == q["total"] - q["passed"]
    tags = scalar_tags(out)
    assert {"train/quiz/pass@1", "train/quiz/failed", "train/loss"} <= tags
    assert any(t.startswith("train/quiz/errors/") for t in tags) or all(q["passed"] == 3 for q in quizzes)

    assert (out / "adapter_model.safetensors").exists() and (out / "adapter_config.json").exists()
    run = json.loads((out / "ap2o_train.json").read_text())
    best = json.loads((out / "best/ap2o_train.json").read_text())["best"]
    assert run["kind"] == "run" and run["step"] == 24 and run["best"] == best  # what ap2o-eval evaluates
    assert best["step"] in (10, 20) and best["metric"] == "quiz pass@1"
    assert best["value"] == max(q["pass@1"] for q in quizzes)
    for folder in (out, out / "best", out / "checkpoint-10"):  # what ap2o-eval reads to ask the same way
        info = json.loads((folder / "ap2o_train.json").read_text())
        assert info["prompt_format"] == "completion" and info["method"] == "ap2o-l2h"
    assert (out / "best/adapter_model.safetensors").exists()
    assert (out / "error_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    eff = json.loads((out / "sample_efficiency.json").read_text())
    assert eff["pairs_consumed"] == 40 and eff["pairs_available"] == 43
    assert 0 < eff["distinct_pairs_consumed"] <= 43
    state = json.loads((out / "checkpoint-20/ap2o_schedule.json").read_text())
    # 20 steps: 6 epochs (30 pairs) and 2 steps (4 pairs); the state is the seventh epoch's start, and
    # the quiz at step 20 (pushed in that epoch) is replayed at its position on resume
    assert (state["schedule"]["position"], state["consumed"]) == (30, 34)
    assert (len(state["events"]), len(state["pending"])) == (1, 1)


def samples_only(dataset_dir, tmp_path) -> pathlib.Path:
    """The test dataset without its problems config: the quiz holds training problems out."""
    import shutil

    other = tmp_path / "samples-only"
    shutil.copytree(dataset_dir / "data/samples", other / "data/samples")
    (other / "README.md").write_text("---\nconfigs:\n- config_name: samples\n  data_files:\n  - split: train\n"
                                     "    path: data/samples/train-*.parquet\n---\n")
    return other


@pytest.mark.slow
def test_the_official_sft_run_keeps_the_checkpoint_of_lowest_eval_loss(tiny_model_dir, dataset_dir, tmp_path, capsys):
    out = tmp_path / "sft"
    argv = ["--dataset", str(samples_only(dataset_dir, tmp_path)), "--model", str(tiny_model_dir), "--method", "sft",
            "--output-dir", str(out), "--num-train-epochs", "3", "--save-strategy", "no", "--report-to", "none", *SMALL]
    assert train.main(argv) == 0
    err = capsys.readouterr().err
    assert "held out 1 of 5" in err and "best checkpoint by eval_loss" in err
    assert (out / "adapter_model.safetensors").exists() and not (out / "quiz.jsonl").exists()  # no quiz
    best = json.loads((out / "ap2o_train.json").read_text())["best"]
    # 4 training problems, one passed answer of each per epoch, batches of 2: 2 steps an epoch
    assert best["metric"] == "eval_loss" and best["step"] in (2, 4, 6)
    assert (out / "best/adapter_model.safetensors").exists()
    assert not (out / "sample_efficiency.json").exists()  # no pairs in SFT


@pytest.mark.slow
def test_the_sft_run_can_be_quizzed_like_the_dpo_methods(tiny_model_dir, dataset_dir, tmp_path):
    out = tmp_path / "sft"
    argv = ["--dataset", str(dataset_dir), "--model", str(tiny_model_dir), "--method", "sft", "--no-sft-official",
            "--output-dir", str(out), "--num-train-epochs", "2", "--save-strategy", "no", "--report-to", "none", *SMALL]
    assert train.main(argv) == 0
    assert (out / "adapter_model.safetensors").exists()
    # one passed answer per kept problem per epoch: 5 rows in batches of 2 + 2 + 1; quizzed after each epoch
    assert [q["step"] for q in read_jsonl(out / "quiz.jsonl")] == [3, 6]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert train.main(["--dataset", str(tmp_path / "missing"), "--model", "x", "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "ap2o-train: error:" in err and "missing: dataset not found" in err
    assert train.main(["--method", "ppo", "--dataset", "x", "--model", "x", "--output-dir", str(tmp_path)]) == 2
    assert "unknown method 'ppo'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_misspelt_local_dataset_fails_without_asking_the_hub(tmp_path, monkeypatch, capsys):
    """``out/ap2o-humaneva`` (a typo under a folder that exists) is a missing folder, not a Hub id:
    with the Hub online, a stand-in Hub sees no request at all (it once waited on the network)."""
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeHub() as hub:
        monkeypatch.setattr(hub_constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        assert train.main(["--dataset", "out/ap2o-humaneva", "--model", "x", "--output-dir", "o"]) == 2
    assert hub.requests == []
    assert "out/ap2o-humaneva: dataset not found (no such folder)" in capsys.readouterr().err


def test_help_names_the_recipe_flag(capsys):
    with pytest.raises(SystemExit):
        train.parse(["--help"])
    assert "--config RECIPE.yaml" in capsys.readouterr().out


def test_a_setting_that_would_not_be_honoured_is_refused(dataset_dir, tiny_model_dir, tmp_path, capsys):
    argv = ["--dataset", str(dataset_dir), "--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "o")]
    assert train.main([*argv, "--dataloader-num-workers", "2"]) == 2
    assert "dataloader_num_workers must be 0" in capsys.readouterr().err
    assert train.main([*argv, "--eval-strategy", "steps"]) == 2
    assert "eval_strategy is not used" in capsys.readouterr().err
    assert train.main([*argv, "--num-train-epochs", "2.5"]) == 2
    assert "whole number" in capsys.readouterr().err
    recipe = tmp_path / "old.yaml"
    recipe.write_text("method: ap2o-l2h\nrounds: 4\n")  # the pre-1.0 name of num_train_epochs
    assert train.main(["--config", str(recipe), *argv]) == 2
    assert "rounds" in capsys.readouterr().err


def test_recipes_reproduce_the_official_settings_for_every_method_of_table_2():
    from trainer.schedule import METHODS

    recipes = sorted((pathlib.Path(train.__file__).parent / "recipes").glob("*.yaml"))
    seen = set()
    for recipe in recipes:
        # --use-cpu: this machine has no GPU, and transformers refuses bf16 on CPU unless told
        data, model, sched, quiz, targs = train.parse(["--config", str(recipe), "--output-dir", "/tmp/unused", "--use-cpu"])
        assert model.model_name_or_path == "Qwen/Qwen2.5-Coder-0.5B-Instruct" and not model.use_peft
        assert "mbpp" in data.dataset_name.lower()
        # train.py: lr 5e-7 linear, warm-up ratio 0.1, 16 per device x 2 devices, MAX_LEN 2048, bf16 autocast
        assert targs.learning_rate == 5e-7 and targs.warmup_steps == 0.1 and targs.lr_scheduler_type == "linear"
        assert targs.per_device_train_batch_size == 16 and targs.gradient_accumulation_steps == 1
        # MAX_LEN 2048 for DPO; the official SFT's TRL 0.14 cuts at min(2048, 1024)
        assert targs.max_length == (1024 if sched.method == "sft" else 2048)
        assert targs.bf16 is True and model.dtype in ("auto", "float32")
        # pipe-qwen2.5-coder.sh: --n_epoch 200 (dpo_dyn, sft), 1 (dpo passk, dpo curri)
        assert targs.num_train_epochs == (1 if sched.method in ("dpo", "curri-dpo") else 200)
        assert quiz.quiz_temperature == 0.01 and quiz.quiz_max_new_tokens == 1024
        assert sched.scope == "problem" and (sched.min_passed, sched.min_failed) == (2, 2)  # merge.py L93-100
        assert sched.sft_official and not sched.continuous_slide
        if sched.method != "sft":
            assert targs.beta == 0.1
        seen.add((sched.method, sched.replay))
    assert {m for m, _ in seen} == set(METHODS)
    assert {("ap2o-l2h", False), ("ap2o-h2l", False)} <= seen  # the no-replay ablations


@pytest.mark.slow
def test_two_process_run_under_accelerate(tiny_model_dir, dataset_dir, tmp_path):
    out = tmp_path / "ddp"
    pytest.importorskip("accelerate")
    # --multi_gpu with no visible GPU: torchrun starts 2 CPU processes on the gloo backend
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "trainer.train",
           "--dataset", str(dataset_dir), "--model", str(tiny_model_dir), "--method", "ap2o-h2l",
           "--output-dir", str(out), "--num-train-epochs", "2", "--quiz-strategy", "steps", "--quiz-steps", "2",
           "--quiz-at-start", "--use-cpu", "--report-to", "none",
           "--save-steps", "4", *SMALL[:2], "--per-device-train-batch-size", "1", "--quiz-max-new-tokens", "16",
           "--quiz-workers", "1"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False,
                          cwd=pathlib.Path(train.__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 5 problems on 2 ranks x 1 per step: 3 steps an epoch (the last round padded), 6 in all; the quiz
    # runs once per quiz step, on rank 0 only
    assert "max_steps = 6" in proc.stderr
    assert [q["step"] for q in read_jsonl(out / "quiz.jsonl")] == [0, 2, 4, 6]
    assert json.loads((out / "sample_efficiency.json").read_text())["pairs_consumed"] == 12
    assert (out / "checkpoint-4/ap2o_schedule.json").exists()


@pytest.mark.slow
def test_each_rank_trains_its_own_share_of_the_schedule(tiny_model_dir, tmp_path):
    """TRL reads an IterableDataset without accelerate's dispatching: every rank makes the whole
    stream and accelerate's ``IterableDatasetShard`` keeps its slice of each round. So the ranks
    see disjoint shares of the schedule in its order, every epoch whole rounds: 5 problems on 2
    ranks make 3 steps, the last round completed with the epoch's first problem, freshly drawn."""
    pytest.importorskip("accelerate")
    tests = pathlib.Path(__file__).parent
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(tests / "ddp_share_probe.py"),
           str(tiny_model_dir), str(tmp_path)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False, cwd=tests)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    stream = json.loads((tmp_path / "schedule_head.json").read_text())
    assert len(rank0) == len(rank1) == 6 and len(stream) == 12  # 2 epochs x 3 steps x 1 pair per rank
    # round k is schedule pairs 2k, 2k+1: rank 0 gets the first, rank 1 the second
    assert rank0 == stream[0::2] and rank1 == stream[1::2]
    signature = [pair[0].split('"""')[0] for pair in stream]  # which problem each pair is of
    for epoch in (0, 6):  # the sixth position of an epoch repeats its first problem
        assert signature[epoch + 5] == signature[epoch] and len(set(signature[epoch: epoch + 5])) == 5


@pytest.mark.slow
def test_resume_from_checkpoint_continues_schedule_and_quiz_history(tiny_model_dir, dataset_dir, tmp_path):
    out = tmp_path / "run"
    argv = ["--dataset", str(dataset_dir), "--model", str(tiny_model_dir), "--method", "ap2o-h2l",
            "--output-dir", str(out), "--num-train-epochs", "2", "--quiz-strategy", "steps", "--quiz-steps", "2",
            "--save-steps", "2",
            "--report-to", "none", *SMALL]
    assert train.main(argv) == 0  # 2 epochs of 2 + 2 + 1 pairs: 6 steps, checkpoints at 2, 4 and 6
    uninterrupted = json.loads((out / "checkpoint-4/ap2o_schedule.json").read_text())
    assert [q["step"] for q in read_jsonl(out / "quiz.jsonl")] == [2, 4, 6]

    assert train.main([*argv, "--resume-from-checkpoint", str(out / "checkpoint-2")]) == 0
    resumed = json.loads((out / "checkpoint-4/ap2o_schedule.json").read_text())
    assert resumed == uninterrupted  # epoch start, RNG, quiz updates, pairs consumed
    assert [q["step"] for q in read_jsonl(out / "quiz.jsonl")] == [2, 4, 6]  # quizzes 4 and 6 retaken, not duplicated
    assert json.loads((out / "sample_efficiency.json").read_text())["pairs_consumed"] == 10


def changed_fraction(model, before: dict) -> float:
    changed = total = 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            changed += (p.detach().float() != before[name]).sum().item()
            total += p.numel()
    return changed / total


def one_dpo_step(model, tokenizer, dataset_dir, tmp_path) -> float:
    """Fraction of trainable weights that one AdamW step at lr 5e-7 under bf16 autocast changes."""
    from trl import DPOTrainer

    from trainer.data import load_training_data
    from trainer.feed import Feed
    from trainer.schedule import Batching, Schedule, ScheduleConfig
    from trainer.trl_config import AP2ODPOConfig

    config = ScheduleConfig(method="dpo")
    args = AP2ODPOConfig(output_dir=str(tmp_path), bf16=True, use_cpu=True, max_steps=1, per_device_train_batch_size=2,
                         max_length=128, report_to="none", save_strategy="no", warmup_steps=0)
    sched = Schedule(load_training_data(str(dataset_dir), config, validation_split="none").problems, config, 1,
                     Batching.of(args))
    feed = Feed(sched)
    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    trainer = DPOTrainer(model=model, args=args, train_dataset=feed.dataset(), processing_class=tokenizer)
    feed.attach(trainer)
    trainer.train()
    return changed_fraction(trainer.model, before)


@pytest.mark.slow
def test_full_fine_tuning_keeps_fp32_master_weights_so_tiny_updates_land(tiny_model_dir, dataset_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.config import ModelArguments
    from trainer.trl_config import AP2ODPOConfig

    margs = ModelArguments(model_name_or_path=str(tiny_model_dir), use_peft=False)
    targs = AP2ODPOConfig(output_dir=str(tmp_path), bf16=True, use_cpu=True, report_to="none")
    model, tok = train.load_model(margs, targs)
    assert next(model.parameters()).dtype == torch.float32
    assert one_dpo_step(model, tok, dataset_dir, tmp_path / "fp32") >= 0.99
    # what loading the weights in bf16 did: the same step moves almost none of them
    bf16 = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    assert one_dpo_step(bf16, tok, dataset_dir, tmp_path / "bf16") < 0.5
    with pytest.raises(train.UserError, match="keep float32"):
        train.load_model(ModelArguments(model_name_or_path=str(tiny_model_dir), use_peft=False, dtype="bfloat16"), targs)


def test_lora_adapters_stay_fp32_over_a_bf16_base(tiny_model_dir, tmp_path):
    import torch
    from peft import get_peft_model

    from trainer.config import ModelArguments
    from trainer.trl_config import AP2ODPOConfig

    margs = ModelArguments(model_name_or_path=str(tiny_model_dir))
    model, _ = train.load_model(margs, AP2ODPOConfig(output_dir=str(tmp_path), bf16=True, use_cpu=True, report_to="none"))
    assert next(model.parameters()).dtype == torch.bfloat16  # the frozen base may save memory
    peft = get_peft_model(model, margs.peft_config())  # as DPOTrainer calls it
    assert {p.dtype for p in peft.parameters() if p.requires_grad} == {torch.float32}


@pytest.mark.slow
def test_overwrite_replaces_an_earlier_run_and_a_run_without_a_quiz_says_so_first(tiny_model_dir, dataset_dir,
                                                                                 tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--dataset", str(dataset_dir), "--model", str(tiny_model_dir), "--method", "ap2o-l2h",
            "--output-dir", str(out), "--num-train-epochs", "2", "--quiz-strategy", "steps", "--quiz-steps", "2",
            "--save-steps", "2", "--report-to", "none", *SMALL]
    assert train.main(argv) == 0
    assert (out / "best").is_dir() and (out / "checkpoint-2").is_dir()
    capsys.readouterr()
    assert train.main(argv) == 2  # the same folder again: refused, untouched
    assert "holds an earlier run" in capsys.readouterr().err and (out / "checkpoint-6").is_dir()

    # replaced by a run that ends before its first quiz (step 2): nothing of the first run stays
    assert train.main([*argv, "--max-steps", "1", "--overwrite-output-dir"]) == 0
    err = capsys.readouterr().err
    assert f"--overwrite-output-dir: removing the earlier run in {out}" in err
    assert "note: no quiz falls within the 1 steps (the first would come after step 2): this run keeps no best " \
           "checkpoint" in err
    assert "no best checkpoint (no quiz before the run ended)" in err
    left = {"best", "quiz.jsonl", "error_curve.png", "checkpoint-2", "checkpoint-4", "checkpoint-6"}
    assert left & {p.name for p in out.iterdir()} == set()  # checkpoint-1, this run's last step, is its own
    run = json.loads((out / "ap2o_train.json").read_text())
    assert run["step"] == 1 and run["best"] is None and "status" not in run
    assert "it ended before its first quiz, so this is the result" in (out / "README.md").read_text()


def test_a_plain_preference_dataset_is_told_what_to_do(tiny_model_dir, tmp_path, capsys):
    plain = tmp_path / "pairs"
    plain.mkdir()
    (plain / "train.jsonl").write_text("".join(json.dumps({"prompt": f"p{i}", "chosen": "a", "rejected": "b"}) + "\n"
                                               for i in range(3)))
    out = tmp_path / "o"
    assert train.main(["--dataset", str(plain), "--model", str(tiny_model_dir), "--method", "dpo",
                       "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{plain}: plain preference pairs (prompt, chosen, rejected), no 'samples' config" in err
    assert f"`trl dpo --dataset_name {plain} --model_name_or_path MODEL`" in err and "ap2o-build grade" in err
    assert not out.exists()  # a run that failed while loading leaves nothing behind


def test_the_error_curve_keeps_its_legend_off_the_lines_and_counts_whole_steps():
    from trainer.quiz import error_curve_figure

    records = [{"step": s, "pass@1": p, "error_counts": {"WrongResult": w, "NameError": n}}
               for s, p, w, n in ((3, 0.0, 3, 1), (6, 0.5, 1, 1), (9, 1 / 3, 2, 0))]
    fig = error_curve_figure(records)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert not legend.get_window_extent().overlaps(ax.get_window_extent())  # beside the axes
    assert [t.get_text() for t in legend.get_texts()] == ["WrongResult", "NameError", "pass@1"]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    single = error_curve_figure(records[:1])  # one quiz: still whole steps around it
    single.canvas.draw()
    assert all(float(t).is_integer() for t in single.axes[0].get_xticks())
