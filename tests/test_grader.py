"""The grader's verdicts: one test per error type of the taxonomy, stdio problems, the table API.

Every test runs real answers in real sandbox workers (bubblewrap when this machine has it).
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from sandboxed import grade_one

import schemas
from builder.grading import taxonomy
from builder.grading.grader import Grader, GraderConfig, grade_table

TEST = '''
def check(candidate):
    assert candidate(1, 2) == 3
    assert candidate(
        10,
        -4,
    ) == 6
'''

RIGHT = "def add(a, b):\n    return a + b\n"


GRADER_SETTINGS = {"timeout_s": 1.0}  # conftest's `grader`: the Timeout tests wait this long


def grade_io(grader, completion, inputs, outputs):
    return grader.grade([{"completion": completion, "inputs": inputs, "outputs": outputs, "prompt": ""}])[0]


# One answer per error type; the key is the type the grader must report.
EXCEPTION_CASES = {
    "SyntaxError": "def add(a, b)\n    return a + b\n",
    "IndentationError": "def add(a, b):\nreturn a + b\n",
    "NameError": "def add(a, b):\n    return a + c\n",
    "TypeError": "def add(a, b):\n    return a + str(b)\n",
    "ValueError": "def add(a, b):\n    return int('x') + a\n",
    "IndexError": "def add(a, b):\n    return [a][b]\n",
    "KeyError": "def add(a, b):\n    return {}[a]\n",
    "AttributeError": "def add(a, b):\n    return a.total + b\n",
    "ZeroDivisionError": "def add(a, b):\n    return a / 0\n",
    "RecursionError": "def add(a, b):\n    return add(a, b)\n",
    "MemoryError": "def add(a, b):\n    block = bytearray(8 * 1024 ** 3)\n    return a + b\n",
    "ModuleNotFoundError": "import numpyy\ndef add(a, b):\n    return a + b\n",
    "AssertionError": "def add(a, b):\n    assert a > 100, 'a too small'\n    return a + b\n",
}


def test_every_named_exception_type_has_a_case():
    assert set(EXCEPTION_CASES) == set(taxonomy.KNOWN_EXCEPTION_TYPES)


@pytest.mark.parametrize("error_type", sorted(EXCEPTION_CASES))
def test_exception_of_the_answer_is_its_error_type(grader, error_type):
    v = grade_one(grader, EXCEPTION_CASES[error_type], TEST, "add")
    assert (v.passed, v.error_type) == (False, error_type)
    assert v.status == taxonomy.STATUS_FAILED
    assert v.error_category == taxonomy.category_of(error_type)
    assert v.error_line is not None and v.error_line >= 1


def test_passing_answer(grader):
    v = grade_one(grader, RIGHT, TEST, "add")
    assert v.passed is True and v.status == "passed"
    assert v.error_type is None and v.error_category is None and v.traceback is None
    assert v.runtime_s > 0
    assert tuple(v.to_row()) == tuple(schemas.VERDICT.names)


@pytest.mark.parametrize("base, expected", [("Exception", "Exception"), ("ValueError", "ValueError"),
                                             ("KeyError", "KeyError"), ("ArithmeticError", "ArithmeticError")])
def test_exception_class_of_the_answer_is_labelled_by_its_nearest_builtin_ancestor(grader, base, expected):
    v = grade_one(grader, f"class BadInput({base}):\n    pass\ndef add(a, b):\n    raise BadInput('no')\n",
                  TEST, "add")
    assert (v.error_type, v.error_class) == (expected, "BadInput")


def test_answer_class_deriving_from_a_builtin_subclass_gets_the_builtin(grader):
    code = "class A(LookupError):\n    pass\nclass B(A, IndexError):\n    pass\ndef add(a, b):\n    raise B('x')\n"
    v = grade_one(grader, code, TEST, "add")
    assert (v.error_type, v.error_class) == ("IndexError", "B")  # the first built-in of the MRO


def test_library_exception_class_is_labelled_by_its_builtin_ancestor(grader):
    v = grade_one(grader, "import json\ndef add(a, b):\n    return json.loads('{')\n", TEST, "add")
    assert (v.error_type, v.error_class) == ("ValueError", "JSONDecodeError")


def test_builtin_exception_keeps_its_own_name_as_class(grader):
    v = grade_one(grader, EXCEPTION_CASES["ZeroDivisionError"], TEST, "add")
    assert v.error_class == "ZeroDivisionError"


@pytest.mark.parametrize("name", ["SyntaxError", "IndentationError", "MemoryError", "Timeout", "WrongResult"])
def test_category_comes_from_the_real_class_not_the_name(grader, name):
    v = grade_one(grader, f"class {name}(Exception):\n    pass\ndef add(a, b):\n    raise {name}('x')\n",
                  TEST, "add")
    assert (v.error_type, v.error_class, v.error_category) == ("Exception", name, taxonomy.RUNTIME)


def test_syntax_error_raised_at_runtime_is_still_compile_by_its_class(grader):
    v = grade_one(grader, "def add(a, b):\n    return eval('(')\n", TEST, "add")
    assert (v.error_type, v.error_category) == ("SyntaxError", taxonomy.COMPILE)


def test_huge_exception_class_name_is_truncated(grader):
    code = "E = type('E' * 3_000_000, (ValueError,), {})\ndef add(a, b):\n    raise E('m' * 3_000_000)\n"
    v = grade_one(grader, code, TEST, "add")
    assert v.error_type == "ValueError"
    assert len(v.error_class) <= taxonomy.MAX_CLASS_NAME and v.error_class.startswith("EEE")
    assert len(v.error_message) <= taxonomy.MAX_MESSAGE


def test_empty_exception_class_name_still_has_a_type(grader):
    v = grade_one(grader, "E = type('', (KeyError,), {})\ndef add(a, b):\n    raise E('x')\n", TEST, "add")
    assert (v.error_type, v.error_class) == ("KeyError", "")


def test_wrong_result_names_the_failing_assertion_of_the_test(grader):
    v = grade_one(grader, "def add(a, b):\n    return a + b if a < 5 else 0\n", TEST, "add")
    assert v.error_type == taxonomy.WRONG_RESULT and v.error_category == taxonomy.WRONG
    # the whole (multi-line) assert statement, not just the line the traceback points at
    assert v.failed_test == "assert candidate(\n        10,\n        -4,\n    ) == 6"
    assert v.error_line is None  # nothing in the answer failed


def test_assert_inside_the_answer_is_assertion_error_not_wrong_result(grader):
    v = grade_one(grader, EXCEPTION_CASES["AssertionError"], TEST, "add")
    assert v.error_type == "AssertionError" and v.failed_test is None
    assert v.error_message == "a too small" and v.error_line == 2


def test_traceback_keeps_only_the_answer_and_test_frames(grader):
    v = grade_one(grader, "def helper(x):\n    return x + missing\n\ndef add(a, b):\n    return helper(a)\n",
                  TEST, "add")
    tb = v.traceback
    assert v.error_type == "NameError" and v.error_line == 2
    files = [line.split('"')[1] for line in tb.splitlines() if line.startswith("  File ")]
    assert files == ["<test>", "<answer>", "<answer>"]
    assert "return x + missing" in tb and tb.endswith("NameError: name 'missing' is not defined")
    assert "ap2o" not in tb and "worker" not in tb and "threading" not in tb


def test_syntax_error_points_at_the_answer_line(grader):
    v = grade_one(grader, "x = 1\ndef add(a, b):\n    return (a + b\n", TEST, "add")
    assert v.error_type == "SyntaxError" and v.error_category == taxonomy.COMPILE
    assert v.error_line == 3 and "return (a + b" in v.traceback


def test_timeout(grader):
    v = grade_one(grader, "def add(a, b):\n    while True:\n        pass\n", TEST, "add")
    assert (v.error_type, v.status, v.error_category) == (taxonomy.TIMEOUT, "timeout", taxonomy.TIME)
    # never cut short; how much longer than the limit it took depends on the machine's load, which
    # the limit does not count (the time the loop waited for a CPU): benchmarks/grader.py measures it
    assert v.runtime_s >= 1.0 and v.error_message == "no result within 1 s"


def test_early_exit_is_never_a_pass(grader):
    for code in ("import sys\nsys.exit(0)\n" + RIGHT, RIGHT + "import os\nos._exit(0)\n", RIGHT + "exit()\n",
                 "def add(a, b):\n    raise SystemExit(0)\n"):
        v = grade_one(grader, code, TEST, "add")
        assert (v.passed, v.error_type, v.status) == (False, taxonomy.EARLY_EXIT, "exited"), code


def test_signal_death_is_a_crash(grader):
    v = grade_one(grader, "import os, signal\ndef add(a, b):\n    os.kill(os.getpid(), signal.SIGSEGV)\n",
                  TEST, "add")
    assert (v.error_type, v.status, v.error_category) == (taxonomy.CRASH, "crashed", taxonomy.RESOURCE)
    assert "SIGSEGV" in v.error_message


def test_no_code(grader):
    for text in ("", "I don't know how to do this."):
        v = grade_one(grader, text, TEST, "add")
        assert (v.error_type, v.status, v.error_category) == (taxonomy.NO_CODE, "no_code", taxonomy.NOCODE)


def test_markdown_answer_is_extracted_before_running(grader):
    v = grade_one(grader, "Here is my solution:\n```python\n" + RIGHT + "```\nIt adds.", TEST, "add")
    assert v.passed


def test_name_is_not_main_for_function_problems(grader):
    code = RIGHT + "if __name__ == '__main__':\n    raise SystemExit(1)\n"
    assert grade_one(grader, code, TEST, "add").passed
    v = grade_one(grader, "def add(a, b):\n    return __name__\n",
                  "def check(c):\n    assert c(1, 2) != '__main__'\n", "add")
    assert v.passed


def test_prints_are_not_part_of_the_verdict_and_only_a_tail_is_kept(grader):
    v = grade_one(grader, "def add(a, b):\n    print('x' * 100000)\n    print('PASSED')\n    return 0\n",
                  TEST, "add")
    assert v.error_type == taxonomy.WRONG_RESULT
    assert v.stdout.endswith("PASSED\n") and len(v.stdout) <= 4096


POLY_PROMPT = ("import math\n\ndef poly(xs, x):\n    return sum(c * math.pow(x, i) for i, c in enumerate(xs))\n\n"
               "def root(xs):\n    \"\"\"A zero of poly.\"\"\"\n")
POLY_TEST = "def check(candidate):\n    assert abs(poly([-1, 1], candidate([-1, 1]))) < 1e-9\n"


def test_test_sees_helpers_of_the_prompt(grader):
    # HumanEval/32-style: the test calls a function the prompt defines
    row = {"completion": POLY_PROMPT + "    return 1.0\n", "test": POLY_TEST, "entry_point": "root",
           "prompt": POLY_PROMPT}
    assert grader.grade([row])[0].passed


def test_a_helper_the_prompt_only_declares_is_the_answers(grader):
    prompt = "def double(x):\n    \"\"\"Twice x.\"\"\"\n\ndef add(a, b):\n    \"\"\"Sum.\"\"\"\n"
    code = "def double(x):\n    return 2 * x\ndef add(a, b):\n    return a + b\n"
    test = "def check(candidate):\n    assert candidate(1, 2) == 3 and double(2) == 4\n"
    assert grader.grade([{"completion": code, "test": test, "entry_point": "add", "prompt": prompt}])[0].passed


def test_test_calls_the_answers_own_class_when_the_problem_has_none(grader):
    # MBPP/601-style: the test builds objects of a class only the answer defines
    code = ("class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
            "def longest(pairs):\n    return sum(p.b - p.a for p in pairs)\n")
    test = "def check(candidate):\n    assert candidate([Pair(1, 3), Pair(5, 6)]) == 3\n"
    assert grade_one(grader, code, test, entry_point="longest").passed


def test_test_without_check_runs_its_top_level_asserts(grader):
    test = "assert add(2, 2) == 4\nassert add(0, 0) == 0\n"
    assert grade_one(grader, RIGHT, test, "add").passed
    assert grade_one(grader, "def add(a, b):\n    return 4\n", test, "add").error_type == taxonomy.WRONG_RESULT


def test_missing_entry_point_is_a_name_error(grader):
    v = grade_one(grader, "def plus(a, b):\n    return a + b\n", TEST, "add")
    assert v.error_type == "NameError" and "add" in v.error_message


def test_rows_come_back_in_order_across_workers(grader):
    rows = [{"completion": f"def add(a, b):\n    return a + b + {i % 2}\n", "test": TEST, "entry_point": "add"}
            for i in range(12)]
    assert [v.passed for v in grader.grade(rows)] == [i % 2 == 0 for i in range(12)]


# --- stdio problems ------------------------------------------------------------------------------

SUM = "a, b = map(int, input().split())\nprint(a + b)\n"


def test_stdio_pass_tolerates_trailing_whitespace(grader):
    v = grade_io(grader, SUM, ["1 2\n", "3 4\n"], ["3   \n\n", "7"])
    assert v.passed and "7" in v.stdout


def test_stdio_numbers_compare_with_a_tolerance(grader):
    code = "print(1 / 3)\n"
    assert grade_io(grader, code, [""], ["0.333333"]).passed
    assert grade_io(grader, code, [""], ["0.34"]).error_type == taxonomy.WRONG_RESULT
    assert grade_io(grader, "print('abc')\n", [""], ["abd"]).error_type == taxonomy.WRONG_RESULT


def test_stdio_wrong_output_names_the_case(grader):
    v = grade_io(grader, "a, b = map(int, input().split())\nprint(a * b)\n", ["1 1\n", "2 5\n"], ["1", "7"])
    assert v.error_type == taxonomy.WRONG_RESULT
    assert v.failed_test.startswith("case 1: input '2 5\\n' expected '7' got '10")


def test_stdio_runtime_error_has_its_type_and_line(grader):
    v = grade_io(grader, "x = input()\ny = int(x)\n", ["abc\n"], ["0"])
    assert v.error_type == "ValueError" and v.error_line == 2


def test_stdio_exit_zero_after_printing_is_a_normal_end(grader):
    assert grade_io(grader, "print(5)\nexit()\n", [""], ["5"]).passed
    assert grade_io(grader, "import sys\nprint(5)\nsys.exit(0)\n", [""], ["5"]).passed
    v = grade_io(grader, "import sys\nprint(5)\nsys.exit(3)\n", [""], ["5"])
    assert v.error_type == taxonomy.EARLY_EXIT


def test_stdio_name_is_main(grader):
    code = "def main():\n    print(int(input()) * 2)\nif __name__ == '__main__':\n    main()\n"
    assert grade_io(grader, code, ["21\n"], ["42"]).passed


def test_stdio_output_limit(grader):
    v = grade_io(grader, "while True:\n    print('y' * 1000)\n", [""], ["y"])
    assert (v.error_type, v.error_category) == (taxonomy.OUTPUT_LIMIT, taxonomy.RESOURCE)


def test_stdio_timeout(grader):
    v = grade_io(grader, "import time\ntime.sleep(30)\n", [""], [""])
    assert v.error_type == taxonomy.TIMEOUT


# --- the table API ---------------------------------------------------------------------------------

def test_grade_table_keeps_input_columns_and_conforms_to_answers():
    fn = {"test": TEST, "entry_point": "add", "inputs": None, "outputs": None}
    io = {"test": None, "entry_point": None, "inputs": ["1 1"], "outputs": ["2"]}
    table = pa.Table.from_pylist([
        {"problem_id": "p1", "prompt": "", "completion": RIGHT, **fn, "mine": 1},
        {"problem_id": "p2", "prompt": "", "completion": SUM, **io, "mine": 2},
        {"problem_id": "p1", "prompt": "", "completion": "", **fn, "mine": 3},
    ])
    out = grade_table(table, GraderConfig(timeout_s=1.0, workers=1), progress=False)
    schemas.validate(out, schemas.ANSWERS)
    assert out.schema.metadata == schemas.ANSWERS.metadata
    assert out.column("kind").to_pylist() == ["function", "stdio", "function"]
    assert out.column("passed").to_pylist() == [True, True, False]
    assert out.column("error_type").to_pylist() == [None, None, taxonomy.NO_CODE]
    assert out.column("mine").to_pylist() == [1, 2, 3]  # the user's column survives, after ours
    assert out.column_names[-1] == "mine"


def test_bundled_examples_get_their_expected_labels():
    from builder.problems.examples import EXPECTED, demo_rows

    rows = demo_rows(limit=3, infinite_loops=1)
    with Grader(GraderConfig(timeout_s=1.0, workers=2)) as g:
        verdicts = g.grade(rows)
    assert [v.error_type for v in verdicts] == [EXPECTED[r["variant"]] for r in rows]


def test_numpy_results_compare_as_numpy_values(grader):
    pytest.importorskip("numpy")
    code = "import numpy as np\ndef add(a, b):\n    return np.int64(a) + np.int64(b)\n"
    assert grade_one(grader, code, TEST, "add").passed
    code = "import numpy as np\ndef add(a, b):\n    return np.array([a + b])[0]\n"
    assert grade_one(grader, code, TEST, "add").passed


SURROGATES = ("class Bad(ValueError):\n    pass\n"
              "def add(a, b):\n    import sys\n    sys.stdout.buffer.write(b'\\xff\\xfe out')\n"
              "    raise Bad('lone \\ud800 surrogate')\n")


def test_lone_surrogates_in_an_answers_text_reach_arrow_escaped():
    table = pa.Table.from_pylist([{"problem_id": "p", "prompt": "", "completion": SURROGATES, "test": TEST,
                                   "entry_point": "add"}])
    out = grade_table(table, GraderConfig(timeout_s=2.0, workers=1), progress=False)
    row = out.to_pylist()[0]
    assert (row["error_type"], row["error_class"]) == ("ValueError", "Bad")
    assert row["error_message"] == "lone \\ud800 surrogate"


def test_every_text_field_of_a_verdict_is_made_safe():
    from builder.grading.grader import make_verdict, verdict_table

    raw = {k: "x\ud800" for k in ("error_class", "error_message", "traceback", "failed_test", "stdout")}
    v = make_verdict({**raw, "error_type": "ValueError", "runtime_s": 0.1})
    verdict_table([v])  # raised UnicodeEncodeError before
    assert all(getattr(v, k) == "x\\ud800" for k in raw)


# --- the verdict is a typed, frozen record (issue 12) ------------------------------------------------

def test_a_verdicts_fields_are_the_verdict_schemas_columns_in_order():
    import dataclasses

    from builder.grading.grader import Verdict

    assert [f.name for f in dataclasses.fields(Verdict)] == schemas.VERDICT.names


def test_a_verdict_cannot_be_edited(grader):
    import dataclasses

    v = grade_one(grader, RIGHT, TEST, "add")
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.passed = False


def test_a_verdict_has_no_room_for_a_field_the_schema_lacks(grader):
    v = grade_one(grader, RIGHT, TEST, "add")
    with pytest.raises(AttributeError):  # slots: a misspelt field is an error, never a silent None
        _ = v.error_typ


def test_a_verdict_table_reads_back_as_the_verdicts_rows(grader):
    from builder.grading.grader import verdict_table

    wrong = "def add(a, b):\n    return a - b\n"
    verdicts = grader.grade([{"completion": c, "test": TEST, "entry_point": "add", "prompt": ""} for c in (RIGHT, wrong)])
    table = verdict_table(verdicts)
    assert table.schema == schemas.VERDICT
    assert table.to_pylist() == [v.to_row() for v in verdicts]
