"""The trainer's callbacks are module-level classes, like TRL's (issue 12): importable and
subclassable. Each is subclassed here and run in one real DPOTrainer run on the tiny model; the
subclass's own hook runs, and the base class's work (quiz log, efficiency file, run info in every
checkpoint) still happens through ``super()``."""

from __future__ import annotations

import json

import pytest
from tiny_dataset import dpo_trainer, make

pytest.importorskip("trl")

from trainer.callbacks import RunInfoCallback
from trainer.feed import EFFICIENCY_FILE, Feed, FeedCallback
from trainer.quiz import QUIZ_LOG, QuizCallback
from trainer.runinfo import RUN_INFO
from trainer.schedule import AP2O_L2H, Batching


class RecordingQuiz(QuizCallback):
    """Keeps the step of every quiz it reports."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.reported: list[int] = []

    def report(self, result, model, args):
        self.reported.append(result.step)
        super().report(result, model, args)


class RecordingFeed(FeedCallback):
    """Remembers the step training ended at."""

    ended_at: int | None = None

    def on_train_end(self, args, state, control, **kw):
        super().on_train_end(args, state, control, **kw)
        self.ended_at = state.global_step


class TaggedRunInfo(RunInfoCallback):
    """Adds a field of its own to the run info of every checkpoint."""

    def on_save(self, args, state, control, **kw):
        self.info["tag"] = f"saved at {state.global_step}"
        super().on_save(args, state, control, **kw)


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    from builder.problems.sources import load_problems
    from trainer.config import QuizConfig

    out = tmp_path_factory.mktemp("callbacks")
    feed = Feed(make(AP2O_L2H, epochs=2, batching=Batching(per_device=2)))
    trainer = dpo_trainer(tiny_model_dir, out, feed, save_strategy="steps", save_steps=2)
    trainer.pop_callback(FeedCallback)  # dpo_trainer adds the plain one; the subclass takes its place
    feed_cb = RecordingFeed(feed)
    trainer.add_callback(feed_cb)
    trainer.add_callback(TaggedRunInfo({"method": AP2O_L2H}))
    quiz = QuizConfig(quiz_strategy="steps", quiz_steps=2, quiz_max_new_tokens=8, quiz_workers=1,
                      quiz_prompt_format="completion", keep_best=False)
    problems = load_problems("humaneval", limit=2, quiet=True).to_pylist()
    quiz_cb = RecordingQuiz(problems, quiz, due=quiz.due(feed.schedule.steps_per_epoch), feed=feed).attach(trainer)
    trainer.train()
    return {"out": out, "quiz": quiz_cb, "feed": feed_cb}


def test_a_quiz_callback_subclass_sees_every_quiz(run):
    assert run["quiz"].reported == [2, 4]


def test_a_quiz_callback_subclass_still_logs_through_the_base_class(run):
    lines = (run["out"] / QUIZ_LOG).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4]


def test_a_feed_callback_subclass_runs_its_own_hook(run):
    assert run["feed"].ended_at == 4


def test_a_feed_callback_subclass_still_writes_the_sample_efficiency(run):
    # 4 steps of 2 + 2 + 1, 2 + ... pairs: the 5 of the first epoch and 2 of the second
    assert json.loads((run["out"] / EFFICIENCY_FILE).read_text())["pairs_consumed"] == 7


def test_a_run_info_callback_subclass_writes_its_field_into_every_checkpoint(run):
    info = [json.loads((run["out"] / f"checkpoint-{s}" / RUN_INFO).read_text()) for s in (2, 4)]
    assert [(i["tag"], i["step"]) for i in info] == [("saved at 2", 2), ("saved at 4", 4)]
