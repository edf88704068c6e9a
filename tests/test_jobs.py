"""The sandbox job shape has one home (``builder.grading.sandbox.jobs``, issue 12): jobs built
there run in a real worker pool, and the grader builds its jobs through it."""

from __future__ import annotations

import pytest

from builder.grading.grader import GraderConfig, make_job
from builder.grading.sandbox import jobs
from builder.grading.sandbox.pool import WorkerPool

ADD = "def add(a, b):\n    return a + b\n"
CHECK = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
ECHO_SUM = "a, b = map(int, input().split())\nprint(a + b)\n"


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(1, GraderConfig(timeout_s=5.0).sandbox_settings())
    yield p
    p.close()


def test_a_function_job_runs_in_the_pool(pool):
    assert pool.run(jobs.function_job(ADD, CHECK, "add"))["error_type"] is None


def test_a_function_jobs_test_can_fail_it(pool):
    wrong = jobs.function_job("def add(a, b):\n    return a - b\n", CHECK, "add")
    assert pool.run(wrong)["error_type"] == "WrongResult"


def test_a_function_jobs_prelude_is_defined_for_the_test(pool):
    job = jobs.function_job(ADD, "def check(candidate):\n    assert candidate(1, 1) == TWO\n", "add",
                            prelude="TWO = 2\n")
    assert pool.run(job)["error_type"] is None


def test_a_stdio_job_runs_every_case(pool):
    job = jobs.stdio_job(ECHO_SUM, ["1 2\n", "3 4\n"], ["3", "8"])
    verdict = pool.run(job)
    assert (verdict["error_type"], verdict["error_message"]) == ("WrongResult", "case 1: wrong output")


def test_a_stdio_case_carries_no_expected_output():
    case = jobs.stdio_case(jobs.stdio_job(ECHO_SUM, ["1 2\n"], ["3"], timeout=2.0), "1 2\n")
    assert case == {"kind": "stdio", "code": ECHO_SUM, "stdin": "1 2\n", "timeout": 2.0, "cpu_limit": None}


def test_the_grader_builds_its_function_jobs_here():
    row = {"completion": ADD, "test": CHECK, "entry_point": "add", "prompt": ""}
    assert make_job(row, 0, GraderConfig(timeout_s=3.0)) == jobs.function_job(ADD, CHECK, "add", prelude=None, timeout=3.0)


def test_the_grader_builds_its_stdio_jobs_here():
    row = {"completion": ECHO_SUM, "inputs": ["1 2\n"], "outputs": ["3"]}
    assert make_job(row, 0, GraderConfig(timeout_s=3.0)) == jobs.stdio_job(ECHO_SUM, ["1 2\n"], ["3"], timeout=3.0)
