"""Sanitizing real chat replies: what Qwen2.5-Coder-0.5B-Instruct writes, graded by the real grader
with and without ``builder.generation.extract.sanitize``.

``data/chat_replies_qwen0.5b.jsonl`` holds replies recorded by ``ap2o-build sample --problems
humaneval --backend openai --prompt-format chat --temperature 0 --n 1 --max-new-tokens 512`` from
Qwen2.5-Coder-0.5B-Instruct as a Q4_K_M GGUF (the file the embedded default was recorded with) served by
llama-cpp-python's server on 127.0.0.1; ``completion`` is the reply as the server returned it
(the ``response`` column of the samples), the other columns are the recorded sampling settings.
Which replies it holds is said in ``SELECTION`` below. It is read back through the ``file``
backend, the way a recording enters a build.
"""

from __future__ import annotations

import ast
import json
import pathlib
import re

import pyarrow as pa
import pytest

from builder.generation.backends import SamplingParams, get_backend
from builder.generation.prompts import CHAT
from builder.generation.sample import sample_problems
from builder.grading.grader import GraderConfig, grade_table
from builder.problems.sources import load_problems

FIXTURE = pathlib.Path(__file__).resolve().parent / "data" / "chat_replies_qwen0.5b.jsonl"
# Recorded: HumanEval/0-103 (104 replies; 64 pass, raw and sanitized alike; 5 fail raw on an assert
# of their own harness, 2 on their own example calls). Shipped: HumanEval/0-29, plus each later
# reply whose raw verdict was neither a pass, WrongResult nor Timeout (a Timeout would cost the
# suite its full limit twice): 47 replies.
SELECTION = "HumanEval/0-29 + later non-WrongResult, non-Timeout failures up to HumanEval/103"
HARNESS_FAILURES = 5  # HumanEval/1, 65, 79, 83, 101: a check_solution()/check_function() of its own
HARNESS_NOW_PASSING = 0  # all five answers are wrong on the real tests too: WrongResult
PASSED_BEFORE_AFTER = (23, 23)


def _problems(ids: list[str]) -> pa.Table:
    table = load_problems("humaneval")
    return table.filter(pa.array([pid in set(ids) for pid in table.column("problem_id").to_pylist()]))


@pytest.fixture(scope="module")
def graded():
    """(raw verdicts, sanitized verdicts, sanitized programs), one per recorded reply, fixture order."""
    ids = [json.loads(line)["problem_id"] for line in FIXTURE.read_text().splitlines()]
    problems = _problems(ids)
    tables = {}
    for sanitize in (False, True):
        with get_backend("file", path=str(FIXTURE)) as backend:
            tables[sanitize] = sample_problems(problems, backend, SamplingParams(n=1), CHAT, progress=False,
                                               sanitize=sanitize)
    both = pa.concat_tables([tables[False], tables[True]])
    verdicts = grade_table(both, GraderConfig(timeout_s=10.0), progress=False).to_pylist()
    n = tables[False].num_rows
    assert n == len(ids)
    return verdicts[:n], verdicts[n:]


def _harness_failures(rows: list[dict]) -> list[int]:
    """Replies that failed on an ``assert`` of the model's own code, outside the entry point: its
    self-test harness (a ``check_solution()`` or asserts at module level)."""
    return [i for i, r in enumerate(rows) if r["error_type"] == "AssertionError"]


def test_replies_are_the_recorded_responses(graded):
    raw, _ = graded
    recorded = [json.loads(line)["completion"] for line in FIXTURE.read_text().splitlines()]
    assert [r["response"] for r in raw] == recorded
    assert [r["completion"] for r in raw] == recorded  # --no-sanitize runs the reply as written


def test_some_replies_fail_only_on_their_own_harness(graded):
    raw, _ = graded
    failures = _harness_failures(raw)
    assert len(failures) == HARNESS_FAILURES
    # raised in a test function of the model's own, called at module level, not by the problem's check()
    assert all(re.search(r"in <module>\n    check_\w+\(\)", raw[i]["traceback"]) for i in failures)


def test_sanitize_turns_each_harness_failure_into_what_the_answer_is(graded):
    raw, sanitized = graded
    after = [sanitized[i]["error_type"] or "passed" for i in _harness_failures(raw)]
    assert set(after) <= {"passed", "WrongResult"} and after.count("passed") == HARNESS_NOW_PASSING


def test_sanitize_leaves_no_assertion_error_of_the_models_own(graded):
    _, sanitized = graded
    assert _harness_failures(sanitized) == []


def test_sanitize_never_fails_a_reply_that_passed(graded):
    raw, sanitized = graded
    assert all(s["passed"] for r, s in zip(raw, sanitized) if r["passed"])


def test_sanitized_programs_have_no_module_level_driver_code(graded):
    _, sanitized = graded
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
               ast.AnnAssign)
    for row in sanitized:
        if row["error_category"] != "compile":  # what does not parse runs as written, for its SyntaxError
            assert all(isinstance(node, allowed) for node in ast.parse(row["completion"]).body), row["problem_id"]


def test_pass_count_before_and_after(graded):
    raw, sanitized = graded
    assert (sum(r["passed"] for r in raw), sum(r["passed"] for r in sanitized)) == PASSED_BEFORE_AFTER
