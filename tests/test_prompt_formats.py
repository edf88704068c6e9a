"""The official and the chat format end to end: recorded answers through the ``sample`` step, the
real grader, the notebook and the ``pairs`` config -- what is run, what is kept, what is trained."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

import schemas
from builder.dataset.notebook import annotate, count_errors
from builder.dataset.pairs import PairsConfig, make_pairs
from builder.generation.backends import SamplingParams, get_backend
from builder.generation.prompts import CHAT, OFFICIAL, official_prompt
from builder.generation.sample import SAMPLED, sample_problems
from builder.grading.grader import GraderConfig, grade_table

PROBLEM = {"problem_id": "p/1", "source": "toy", "split": "train", "kind": "function",
           "prompt": 'def inc(x):\r\n    """Write a function to add one."""\n',
           "test": "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(-1) == 0\n",
           "entry_point": "inc"}


def _problems() -> pa.Table:
    return schemas.conform(pa.Table.from_pylist([PROBLEM]), schemas.PROBLEMS, keep_extra=False)


def _sample(tmp_path, answers: list[str], fmt: str, **kw) -> pa.Table:
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps({"problem_id": "p/1", "completion": a}) + "\n" for a in answers))
    with get_backend("file", path=str(path)) as backend:
        return sample_problems(_problems(), backend, SamplingParams(n=len(answers)), fmt, progress=False, **kw)


def _graded(table: pa.Table) -> pa.Table:
    graded = grade_table(table, GraderConfig(timeout_s=10.0, workers=2), progress=False)
    return annotate(graded, count_errors(graded))


# Official continuations: the model writes the whole function after the open fence, then drives it.
OFFICIAL_ANSWERS = [
    "def inc(x):\n    return x + 1\n\nprint(inc(1))\n```",
    "def inc(x):\n    return x + 2\n# Test\nassert inc(1) == 3\n",
    "def inc(x):\n    return y + 1\n```\nThis adds one.",
]


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    return _graded(_sample(tmp_path_factory.mktemp("official"), OFFICIAL_ANSWERS, OFFICIAL))


def test_official_program_is_the_cut_continuation(official):
    assert official.column("completion").to_pylist() == [
        "def inc(x):\n    return x + 1\n", "def inc(x):\n    return x + 2", "def inc(x):\n    return y + 1"]
    assert official.column("response").to_pylist() == OFFICIAL_ANSWERS


def test_official_answers_are_graded_as_the_official_exam_cuts_them(official):
    assert official.column("error_type").to_pylist() == [None, "WrongResult", "NameError"]


def test_official_pairs_train_the_official_prompt_on_the_program(official):
    rows = make_pairs(official, PairsConfig(min_passed=1)).to_pylist()  # one passed answer here
    assert len(rows) == 2
    assert {r["prompt"] for r in rows} == {official_prompt(PROBLEM)}
    assert rows[0]["prompt"].startswith("Please provide a Python script") and rows[0]["prompt"].endswith("```python\n")
    assert [r["chosen"] for r in rows] == ["def inc(x):\n    return x + 1\n"] * 2
    assert [r["rejected"] for r in rows] == ["def inc(x):\n    return x + 2", "def inc(x):\n    return y + 1"]
    assert all(isinstance(r["prompt"], str) for r in rows)  # raw text: never TRL's conversational form


# Chat replies with the self-test harness an instruct model appends; its expectation is wrong.
HARNESS = "\n\ndef check_solution():\n    assert inc(1) == 3, 'own test'\n\ncheck_solution()\n"
CHAT_REPLIES = [
    "Sure:\n```python\ndef inc(x):\n    return x + 1" + HARNESS + "```\nIt adds one.",
    "```python\ndef inc(x):\n    return x * 2" + HARNESS + "```",
    "```python\ndef inc(x):\n    return x + 1\n```",
]


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    return _graded(_sample(tmp_path_factory.mktemp("chat"), CHAT_REPLIES, CHAT))


def test_chat_program_is_sanitized_and_the_reply_kept(chat):
    assert chat.column("completion").to_pylist() == CHAT_REPLIES  # what the model answered
    assert chat.column("response").to_pylist() == [None] * 3  # the reply as it came is the completion
    assert all("check_solution" not in c and "```" not in c for c in chat.column("program").to_pylist())


def test_chat_verdicts_are_the_answers_not_the_harness(chat):
    assert chat.column("error_type").to_pylist() == [None, "WrongResult", None]


def test_chat_pairs_train_on_the_reply_as_the_model_wrote_it(chat):
    rows = make_pairs(chat, PairsConfig(min_failed=1)).to_pylist()
    assert [r["chosen"] for r in rows] == [CHAT_REPLIES[0], CHAT_REPLIES[2]]
    assert all(r["rejected"] == CHAT_REPLIES[1] for r in rows)
    from builder.dataset.conversational import to_messages

    published = to_messages(make_pairs(chat, PairsConfig(min_failed=1)), "pairs").to_pylist()
    assert published[0]["chosen"] == [{"role": "assistant", "content": CHAT_REPLIES[0]}]


def test_no_sanitize_runs_the_reply_and_its_harness(tmp_path):
    graded = _graded(_sample(tmp_path, CHAT_REPLIES[:2], CHAT, sanitize=False))
    assert graded.column("program").to_pylist() == CHAT_REPLIES[:2]
    assert graded.column("error_type").to_pylist() == ["AssertionError", "AssertionError"]


def test_sampled_rows_have_the_samples_columns(tmp_path):
    table = _sample(tmp_path, CHAT_REPLIES[:1], CHAT)
    assert table.schema.names == SAMPLED.names and "response" in SAMPLED.names


def test_sample_cli_turns_sanitize_off(tmp_path):
    import argparse

    from builder.generation.sample import config_from_args, configure

    parser = argparse.ArgumentParser()
    configure(parser)
    assert config_from_args(parser.parse_args(["--output", "x.parquet"])).sanitize is True
    assert config_from_args(parser.parse_args(["--no-sanitize", "--output", "x.parquet"])).sanitize is False
