"""One config layer: a setting stated once is the same setting wherever a command exposes it.

``ap2o-train`` parses flat dataclasses (TRL's ``TrlParser``), so its quiz and schedule configs
borrow the builder's fields (``builder.flags.prefixed``/``borrowed``) instead of retyping them."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

pytest.importorskip("trl")

from builder.dataset.pairs import PairsConfig  # noqa: E402
from builder.errors import UserError  # noqa: E402
from builder.flags import plain  # noqa: E402 - after the importorskip, as above
from builder.grading.grader import GraderConfig  # noqa: E402
from trainer.config import QUIZ_GRADER, QuizConfig  # noqa: E402
from trainer.schedule import ScheduleConfig  # noqa: E402


def _fields(cls):
    return {f.name: f for f in dataclasses.fields(cls)}


def test_the_quiz_has_every_grader_setting_with_the_graders_default_and_help():
    quiz = _fields(QuizConfig)
    for f in dataclasses.fields(GraderConfig):
        mine = quiz[QUIZ_GRADER + f.name]
        assert mine.default == f.default
        assert mine.metadata["help"].endswith(plain(f.metadata["help"]))  # --help shows it without RST backticks


def test_the_quiz_grader_config_carries_what_the_flags_set():
    got = QuizConfig(quiz_timeout_s=5.0, quiz_isolation="rlimits", quiz_workers=1).grader_config()
    assert (got.timeout_s, got.isolation, got.workers) == (5.0, "rlimits", 1)
    assert got.memory_mb == GraderConfig().memory_mb


def test_a_bad_quiz_limit_fails_when_parsed_and_names_the_quiz_flag():
    with pytest.raises(UserError, match=r"^quiz_timeout_s must be"):
        QuizConfig(quiz_timeout_s=-1)


def test_the_schedule_keeps_problems_by_the_pairs_configs_filter():
    from trainer.schedule import FILTER_FIELDS

    for name in FILTER_FIELDS:
        mine, theirs = _fields(ScheduleConfig)[name], _fields(PairsConfig)[name]
        assert (mine.default, mine.metadata["help"]) == (theirs.default, theirs.metadata["help"])
    assert set(FILTER_FIELDS) == set(_fields(PairsConfig)) - {"max_pairs_per_problem", "seed"}
    assert ScheduleConfig(min_failed=3, dedup_per_problem=True).pairs_config() == PairsConfig(
        min_passed=2, min_failed=3, dedup_per_problem=True)


def test_ap2o_train_offers_a_closed_grader_setting_with_its_choices():
    out = subprocess.run([sys.executable, "-m", "trainer.train", "--help-all"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--quiz-isolation {auto,bwrap,rlimits}" in " ".join(out.stdout.split())
