"""The feed: the schedule as TRL's training data, one epoch per iterator, with real DPOTrainer
steps on the tiny model: the Trainer makes the official steps of each epoch (the last one short),
a quiz at an epoch's end reaches the whole next epoch, and a resumed run trains the same pairs."""

from __future__ import annotations

import json

import pytest
from tiny_dataset import dpo_trainer, make

pytest.importorskip("trl")

from trainer.feed import METADATA_COLUMNS, Feed
from trainer.schedule import AP2O_L2H, DPO, Batching


def fresh_keys(method=AP2O_L2H, n=None, **kw):
    sched = make(method, **kw)
    return [sched.pair_key(p) for p in sched.pairs()][:n]


def test_each_iteration_of_the_dataset_is_one_epoch_with_metadata():
    feed = Feed(make(AP2O_L2H, epochs=2))
    rows = list(feed.dataset())  # before training starts, every iteration starts from the run's start
    assert len(rows) == feed.schedule.epoch_length == 5
    feed.rewind()  # as FeedCallback does at train begin
    feed.started = True
    rows = list(feed.dataset()) + list(feed.dataset())
    assert list(feed.dataset()) == []  # the schedule's end
    assert feed.keys == fresh_keys(epochs=2)
    assert {"prompt", "chosen", "rejected", *METADATA_COLUMNS} <= set(rows[0])
    assert [r["ap2o_epoch"] for r in rows] == [0] * 5 + [1] * 5
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


def test_a_checkpoint_saves_its_epochs_start_and_a_resumed_feed_makes_that_epoch_again():
    def epochs(feed, pushes, n):
        """n epochs through ``generate``; pushes: position -> counts, pushed once that many pairs are made."""
        out = []
        for _ in range(n):
            for row in feed.generate():
                if row["ap2o_position"] + 1 in pushes:
                    feed.push_quiz(pushes[row["ap2o_position"] + 1])
                out.append((row["problem_id"], row["ap2o_chosen"], row["ap2o_rejected"], row["ap2o_version"]))
        return out

    pushes = {5: {"WrongResult": 3, "NameError": 1}, 7: {"SyntaxError": 2}}  # an epoch's end, and mid-epoch
    full = Feed(make(AP2O_L2H, epochs=4))
    full.started = True
    everything = epochs(full, pushes, 4)
    # interrupted in epoch 1: 8 pairs made (the whole epoch up to 10 is made only as it is read), 7 trained
    first = Feed(make(AP2O_L2H, epochs=4))
    first.started = True
    epochs(first, pushes, 1)
    for row in first.generate():
        if row["ap2o_position"] + 1 in pushes:
            first.push_quiz(pushes[row["ap2o_position"] + 1])
        if row["ap2o_position"] == 7:
            break
    saved = json.loads(json.dumps(first.state_at(7)))
    assert saved["schedule"]["position"] == 5 and saved["consumed"] == 7  # the epoch's start
    assert saved["pending"] == [[7, {"SyntaxError": 2}]] and len(saved["events"]) == 1
    second = Feed(make(AP2O_L2H, epochs=4))
    second.load_state(saved)
    second.started = True
    assert everything[:5] + epochs(second, {}, 3) == everything
    assert second.efficiency(20)["pairs_consumed"] == 20


def batch_sizes(trainer) -> list[int]:
    """Records the pairs of every micro-batch that reaches ``training_step``."""
    sizes, step = [], trainer.training_step

    def recording(model, inputs, *args, **kwargs):
        sizes.append(inputs["input_ids"].shape[0] // 2)  # DPO stacks the chosen rows, then the rejected ones
        return step(model, inputs, *args, **kwargs)

    trainer.training_step = recording
    return sizes


def test_metadata_never_reaches_the_model(tiny_model_dir, tmp_path):
    feed = Feed(make(DPO))
    trainer = dpo_trainer(tiny_model_dir, tmp_path, feed)
    batch = next(iter(trainer.get_train_dataloader()))
    assert not set(batch) & set(METADATA_COLUMNS)
    assert "input_ids" in batch


def test_training_consumes_the_schedule_in_order_despite_trl_probes(tiny_model_dir, tmp_path):
    feed = Feed(make(AP2O_L2H, epochs=2, batching=Batching(per_device=2)))
    trainer = dpo_trainer(tiny_model_dir, tmp_path, feed, max_steps=6)
    assert feed.position > 0  # DPOTrainer.__init__ probed the dataset
    trainer.train()
    assert feed.schedule.position_after(trainer.state.global_step) == 10 == len(feed.keys)
    assert feed.keys == fresh_keys(epochs=2, batching=Batching(per_device=2))


def test_the_trainer_makes_each_epochs_steps_with_a_short_last_batch(tiny_model_dir, tmp_path):
    """5 kept problems in batches of 2: the official Trainer's 2 + 2 + 1 every epoch, and the
    epoch count it keeps is the official one (3 steps an epoch)."""
    feed = Feed(make(AP2O_L2H, epochs=2, batching=Batching(per_device=2)))
    trainer = dpo_trainer(tiny_model_dir, tmp_path, feed, max_steps=6)
    sizes = batch_sizes(trainer)
    trainer.train()
    assert sizes == [2, 2, 1, 2, 2, 1]
    assert trainer.state.epoch == 2.0


@pytest.mark.parametrize("accumulation", [1, 4])  # 4: as the recipes' single-GPU setting
def test_a_mid_epoch_quiz_update_reaches_the_data_within_one_micro_batch(tiny_model_dir, tmp_path, accumulation):
    from transformers import TrainerCallback

    batching = Batching(per_device=2, accumulation=accumulation)
    feed = Feed(make(AP2O_L2H, epochs=8, batching=batching))
    seen = {}

    class Quiz(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 2:
                seen["consumed"] = feed.schedule.position_after(state.global_step)
                seen["position"] = feed.position
                feed.push_quiz({"WrongResult": 2, "TypeError": 1})

    trainer = dpo_trainer(tiny_model_dir, tmp_path, feed, gradient_accumulation_steps=accumulation, max_steps=4)
    trainer.add_callback(Quiz())
    trainer.train()
    end = feed.schedule.position_after(4)
    assert seen["consumed"] == (4 if accumulation == 1 else 10)  # 4: one step takes the whole 3-batch epoch
    assert seen["position"] - seen["consumed"] <= 2
    # every pair from the push on was drawn with the quiz's counts, every one before without
    assert feed.versions[: seen["position"]] == [0] * seen["position"]
    assert set(feed.versions[seen["position"]: end]) == {1}
    assert feed.schedule.quiz == {"WrongResult": 2, "TypeError": 1}


def test_a_quiz_at_an_epochs_end_reaches_all_of_the_next_epoch_and_none_of_its_own(tiny_model_dir, tmp_path):
    from transformers import TrainerCallback

    feed = Feed(make(AP2O_L2H, epochs=3, batching=Batching(per_device=2)))

    class Quiz(TrainerCallback):  # as QuizCallback with quiz_strategy 'epoch': after each epoch's last step
        def on_step_end(self, args, state, control, **kw):
            if state.global_step % feed.schedule.steps_per_epoch == 0:
                feed.push_quiz({"WrongResult": state.global_step})

    trainer = dpo_trainer(tiny_model_dir, tmp_path, feed, max_steps=9)
    trainer.add_callback(Quiz())
    trainer.train()
    assert [p for p, _ in feed.events] == [5, 10, 15]
    assert feed.versions == [0] * 5 + [1] * 5 + [2] * 5


@pytest.mark.slow
@pytest.mark.parametrize("accumulation", [1, 2])
def test_resume_from_a_checkpoint_trains_on_exactly_the_uninterrupted_pairs(tiny_model_dir, tmp_path, accumulation):
    """Cut after step 2, mid-epoch (3 micro-batches an epoch): the resumed feed makes the epoch
    again from its start and the Trainer skips what it trained, so the steps, their batches and
    their pairs are the uninterrupted run's, quiz updates included."""
    from transformers import TrainerCallback

    class Quiz(TrainerCallback):
        def __init__(self, feed):
            self.feed = feed

        def on_step_end(self, args, state, control, **kw):
            if state.global_step in (1, 2):  # the one at 2 is pushed past checkpoint-2's pairs
                self.feed.push_quiz({"WrongResult": state.global_step, "SyntaxError": 1})

    batching = Batching(per_device=2, accumulation=accumulation)
    steps = 4 if accumulation == 1 else 3  # two epochs: 3 + 3 steps, or 2 + 2 (2 + 1 batches)

    def run(out, feed, **kw):
        t = dpo_trainer(tiny_model_dir, out, feed, gradient_accumulation_steps=accumulation, **kw)
        t.add_callback(Quiz(feed))
        sizes = batch_sizes(t)
        return t, sizes

    full = Feed(make(AP2O_L2H, epochs=2, batching=batching))
    t, full_sizes = run(tmp_path / "full", full, max_steps=steps)
    t.train()

    first = Feed(make(AP2O_L2H, epochs=2, batching=batching))
    t, first_sizes = run(tmp_path / "cut", first, save_strategy="steps", save_steps=2, max_steps=2)
    t.train()
    assert (tmp_path / "cut/checkpoint-2/ap2o_schedule.json").exists()

    resumed = Feed(make(AP2O_L2H, epochs=2, batching=batching))
    t, resumed_sizes = run(tmp_path / "cut", resumed, max_steps=steps)
    t.train(resume_from_checkpoint=str(tmp_path / "cut/checkpoint-2"))
    assert t.state.global_step == steps
    consumed = full.schedule.position_after(steps)
    assert resumed.keys[:consumed] == full.keys[:consumed]
    assert resumed.versions[5:consumed] == full.versions[5:consumed]
    assert first_sizes + resumed_sizes == full_sizes


def test_chat_samples_train_as_conversational_pairs(tiny_model_dir, tmp_path):
    from tiny_dataset import sample_rows

    rows = sample_rows()
    for r in rows:  # as an instruct model answers: the whole function in a fence
        r["prompt_format"], r["completion"] = "chat", "```python\n" + r["completion"] + "```"
    feed = Feed(make(AP2O_L2H, epochs=2, rows=rows, batching=Batching(per_device=2)))
    first = feed.schedule.example(feed.schedule.next_pair())
    feed.schedule.reset()
    assert first["prompt"][0]["role"] == "user" and first["chosen"][0]["role"] == "assistant"
    trainer = dpo_trainer(tiny_model_dir, tmp_path, feed, max_steps=2)
    trainer.train()
    assert trainer.state.global_step == 2
    assert feed.keys[:4] == fresh_keys(epochs=2, rows=rows, batching=Batching(per_device=2), n=4)


def test_a_schedule_shorter_than_trls_start_up_probes_still_trains(tiny_model_dir, tmp_path):
    # one kept problem, one epoch: a single pair, and DPOTrainer.__init__ probes the data three times
    from tiny_dataset import sample_rows

    rows = [r for r in sample_rows() if r["problem_id"] == "concat"]
    feed = Feed(make(DPO, epochs=1, rows=rows))
    assert len(feed.schedule) == 4  # 2 passed x 2 failed
    feed = Feed(make(AP2O_L2H, epochs=1, rows=rows))
    assert len(feed.schedule) == 1
    trainer = dpo_trainer(tiny_model_dir, tmp_path, feed, per_device_train_batch_size=1, max_steps=1)
    trainer.train()
    assert trainer.state.global_step == 1 and feed.keys == fresh_keys(epochs=1, rows=rows)
