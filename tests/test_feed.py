"""The feed: the schedule as TRL's training data, with real DPOTrainer steps on the tiny model."""

from __future__ import annotations

import json

import pytest
from test_schedule import make

pytest.importorskip("trl")

from trainer.feed import METADATA_COLUMNS, Feed, FeedCallback, examples_per_step
from trainer.schedule import AP2O_L2H, DPO


def fresh_keys(method=AP2O_L2H, n=None, **kw):
    sched = make(method, **kw)
    return [sched.pair_key(p) for p in sched.pairs()][:n]


def test_dataset_yields_the_schedule_with_metadata():
    feed = Feed(make(AP2O_L2H, epochs=2))
    rows = list(feed.dataset())
    assert len(rows) == len(feed.schedule)
    assert feed.keys == fresh_keys(epochs=2)
    assert {"prompt", "chosen", "rejected", *METADATA_COLUMNS} <= set(rows[0])
    assert [r["ap2o_epoch"] for r in rows] == sorted(r["ap2o_epoch"] for r in rows)
    assert all(r["ap2o_version"] == 0 for r in rows)


def test_rewind_undoes_probes_and_a_second_iteration_continues():
    feed = Feed(make(AP2O_L2H))
    ds = feed.dataset()
    for _ in range(3):  # what DPOTrainer.__init__ does
        next(iter(ds))
    assert feed.position > 0
    feed.rewind()
    assert feed.position == 0
    assert [(r["ap2o_chosen"], r["ap2o_rejected"]) for r in ds.take(4)] == [k[1:] for k in fresh_keys(n=4)]


def test_feed_state_resumes_exactly_with_quiz_updates_made_in_the_look_ahead():
    def run(feed, pushes, n):
        out = []
        for row in feed.generate():
            if row["ap2o_position"] + 1 in pushes:
                feed.push_quiz(pushes[row["ap2o_position"] + 1])
            out.append((row["problem_id"], row["ap2o_chosen"], row["ap2o_rejected"]))
            if len(out) == n:
                break
        return out

    pushes = {4: {"WrongResult": 3, "NameError": 1}, 9: {"SyntaxError": 2}}
    full = run(Feed(make(AP2O_L2H, epochs=4)), pushes, 18)
    # interrupted: 11 pairs generated (look-ahead), only 7 consumed when the checkpoint is written
    first = Feed(make(AP2O_L2H, epochs=4))
    run(first, pushes, 11)
    saved = json.loads(json.dumps(first.state_at(7)))
    assert saved["pending"] == [[9, {"SyntaxError": 2}]]
    second = Feed(make(AP2O_L2H, epochs=4))
    second.load_state(saved)
    rest = run(second, {}, 11)
    assert full[:7] + rest == full
    assert second.efficiency(18)["pairs_consumed"] == 18


def dpo_trainer(tiny_model_dir, out, feed, **kw):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    from trainer.config import AP2ODPOConfig, ModelArguments

    args = AP2ODPOConfig(output_dir=str(out), max_length=128, report_to="none", logging_steps=1, learning_rate=1e-3,
                         seed=0, **{"per_device_train_batch_size": 2, "max_steps": 4, "save_strategy": "no", **kw})
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = DPOTrainer(model=model, args=args, train_dataset=feed.dataset(), processing_class=tok,
                         peft_config=ModelArguments(model=str(tiny_model_dir)).peft_config())
    trainer.add_callback(FeedCallback(feed))
    return trainer


def test_metadata_never_reaches_the_model(tiny_model_dir, tmp_path):
    feed = Feed(make(DPO))
    trainer = dpo_trainer(tiny_model_dir, tmp_path, feed)
    batch = next(iter(trainer.get_train_dataloader()))
    assert not set(batch) & set(METADATA_COLUMNS)
    assert "input_ids" in batch


def test_training_consumes_the_schedule_in_order_despite_trl_probes(tiny_model_dir, tmp_path):
    feed = Feed(make(AP2O_L2H, epochs=2))
    trainer = dpo_trainer(tiny_model_dir, tmp_path, feed)
    assert feed.position > 0  # DPOTrainer.__init__ probed the dataset
    trainer.train()
    consumed = trainer.state.global_step * examples_per_step(trainer.args)
    assert consumed == 8
    assert feed.keys[:consumed] == fresh_keys(epochs=2, n=consumed)


@pytest.mark.parametrize("accumulation", [1, 4])  # 4: as the recipes' single-GPU setting
def test_a_quiz_update_reaches_the_data_within_one_micro_batch(tiny_model_dir, tmp_path, accumulation):
    from transformers import TrainerCallback

    feed = Feed(make(AP2O_L2H, epochs=8))
    seen = {}

    class Quiz(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 2:
                seen["consumed"] = state.global_step * examples_per_step(args)
                seen["position"] = feed.position
                feed.push_quiz({"WrongResult": 2, "TypeError": 1})

    trainer = dpo_trainer(tiny_model_dir, tmp_path, feed, gradient_accumulation_steps=accumulation, max_steps=4)
    trainer.add_callback(Quiz())
    trainer.train()
    micro_batch = trainer.args.per_device_train_batch_size
    end = 4 * examples_per_step(trainer.args)
    assert seen["consumed"] == 2 * micro_batch * accumulation
    assert seen["position"] - seen["consumed"] <= micro_batch
    # every pair from the push on was drawn with the quiz's counts, every one before without
    assert feed.versions[: seen["position"]] == [0] * seen["position"]
    assert set(feed.versions[seen["position"]: end]) == {1}
    assert feed.schedule.quiz == {"WrongResult": 2, "TypeError": 1}


@pytest.mark.slow
def test_resume_from_a_checkpoint_trains_on_exactly_the_uninterrupted_pairs(tiny_model_dir, tmp_path):
    from transformers import TrainerCallback

    class Quiz(TrainerCallback):
        def __init__(self, feed):
            self.feed = feed

        def on_step_end(self, args, state, control, **kw):
            if state.global_step in (1, 2):  # the one at 2 lands in the look-ahead past checkpoint-2
                self.feed.push_quiz({"WrongResult": state.global_step, "SyntaxError": 1})

    full = Feed(make(AP2O_L2H, epochs=2))
    t = dpo_trainer(tiny_model_dir, tmp_path / "full", full)
    t.add_callback(Quiz(full))
    t.train()

    first = Feed(make(AP2O_L2H, epochs=2))
    t = dpo_trainer(tiny_model_dir, tmp_path / "cut", first, save_strategy="steps", save_steps=2, max_steps=2)
    t.add_callback(Quiz(first))
    t.train()
    assert (tmp_path / "cut/checkpoint-2/ap2o_schedule.json").exists()

    resumed = Feed(make(AP2O_L2H, epochs=2))
    t = dpo_trainer(tiny_model_dir, tmp_path / "cut", resumed)
    t.add_callback(Quiz(resumed))
    t.train(resume_from_checkpoint=str(tmp_path / "cut/checkpoint-2"))
    assert t.state.global_step == 4
    assert resumed.keys[:8] == full.keys[:8]
    assert resumed.versions[4:8] == full.versions[4:8]


def test_snapshots_are_bounded_and_a_checkpoint_too_far_back_is_refused():
    feed = Feed(make(AP2O_L2H, epochs=4), keep=3)
    rows = list(zip(range(10), feed.generate()))
    assert len(rows) == 10 and len(feed._snaps) == 3
    assert feed.state_at(8)["schedule"]["position"] == 8
    with pytest.raises(RuntimeError, match="reads further ahead"):
        feed.state_at(2)


def test_chat_samples_train_as_conversational_pairs(tiny_model_dir, tmp_path):
    from test_schedule import sample_rows

    rows = sample_rows()
    for r in rows:  # as an instruct model answers: the whole function in a fence
        r["prompt_format"], r["completion"] = "chat", "```python\n" + r["completion"] + "```"
    feed = Feed(make(AP2O_L2H, epochs=2, rows=rows))
    first = feed.schedule.example(feed.schedule.next_pair())
    feed.schedule.reset()
    assert first["prompt"][0]["role"] == "user" and first["chosen"][0]["role"] == "assistant"
    trainer = dpo_trainer(tiny_model_dir, tmp_path, feed, max_steps=2)
    trainer.train()
    assert trainer.state.global_step == 2 and feed.keys[:4] == fresh_keys(epochs=2, n=4)


def test_a_schedule_shorter_than_trls_start_up_probes_still_trains(tiny_model_dir, tmp_path):
    # one kept problem, one epoch: a single pair, and DPOTrainer.__init__ probes the data three times
    from test_schedule import sample_rows

    rows = [r for r in sample_rows() if r["problem_id"] == "concat"]
    feed = Feed(make(DPO, epochs=1, rows=rows))
    assert len(feed.schedule) == 4  # 2 passed x 2 failed
    feed = Feed(make(AP2O_L2H, epochs=1, rows=rows))
    assert len(feed.schedule) == 1
    trainer = dpo_trainer(tiny_model_dir, tmp_path, feed, per_device_train_batch_size=1, max_steps=1)
    trainer.train()
    assert trainer.state.global_step == 1 and feed.keys == fresh_keys(epochs=1, rows=rows)
