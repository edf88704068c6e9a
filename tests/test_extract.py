"""Code extraction: what the grader runs out of raw completions, chat answers and prose."""

from __future__ import annotations

import pytest

from builder.generation.extract import extract_code, sanitize, used_names

RAW = 'def add(a, b):\n    """Add."""\n    return a + b\n'


def test_raw_completion_is_run_as_is():
    assert extract_code(RAW) == RAW


def test_raw_completion_with_a_syntax_error_is_still_code():
    broken = "def add(a, b):\n    return (a + b\n"
    assert extract_code(broken) == broken  # the grader must label it SyntaxError, not NoCode


@pytest.mark.parametrize("label", ["python", "py", "Python", "python3", ""])
def test_first_python_or_unlabelled_fence(label):
    text = f"Here you go:\n```{label}\nx = 1\n```\nand a second one:\n```python\ny = 2\n```\n"
    assert extract_code(text) == "x = 1\n"


def test_fences_in_other_languages_are_skipped():
    text = "Run it with:\n```bash\npython main.py\n```\nCode:\n```python\nprint(3)\n```"
    assert extract_code(text) == "print(3)\n"


def test_unterminated_fence_runs_to_the_end():
    text = "Sure!\n```python\ndef f(x):\n    return x * 2"
    assert extract_code(text) == "def f(x):\n    return x * 2"


def test_raw_completion_trailing_into_a_fence_keeps_the_code_before_it():
    text = RAW + "```\n\nThis function adds two numbers.\n```"
    assert extract_code(text) == RAW


def test_tilde_fence_and_longer_backtick_fence():
    assert extract_code("~~~python\nz = 3\n~~~\n") == "z = 3\n"
    assert extract_code("````python\nw = ```\n````\n") == "w = ```\n"


@pytest.mark.parametrize("text", [None, "", "   \n\t", "Sorry", "I cannot solve this problem.",
                                  "```text\njust words\n```", "```python\n```", '"""only a docstring"""'])
def test_nothing_to_run_is_none(text):
    assert extract_code(text) is None


def test_prose_sentence_with_code_words_but_no_code_lines_is_none():
    assert extract_code("The answer uses a for loop and returns the sum.") is None


# --- sanitize: the answer without the model's driver code, as EvalPlus grades it ---------------


HARNESSED = '''import math
from typing import List

SCALE = 2

def helper(xs):
    xs.sort()

def f(xs: List[int]) -> int:
    """Sum, scaled."""
    helper(xs)
    return sum(xs) * SCALE

def check_solution():
    assert f([1, 2]) == 7, "the model's own wrong expectation"

check_solution()
print(f([3]))
if __name__ == "__main__":
    check_solution()
'''


def test_sanitize_drops_the_harness_call_and_prints():
    out = sanitize(HARNESSED, "f")
    assert "check_solution" not in out and "print(" not in out and "__main__" not in out


def test_sanitize_keeps_imports_and_what_the_entry_point_reaches():
    out = sanitize(HARNESSED, "f")
    assert out == ("import math\nfrom typing import List\nSCALE = 2\ndef helper(xs):\n    xs.sort()\n"
                   'def f(xs: List[int]) -> int:\n    """Sum, scaled."""\n    helper(xs)\n'
                   "    return sum(xs) * SCALE\n")


def test_sanitized_program_runs_where_the_harnessed_one_fails():
    scope: dict = {}
    exec(compile(sanitize(HARNESSED, "f"), "<sanitized>", "exec"), scope)  # noqa: S102 -- our own fixture
    assert scope["f"]([2, 1]) == 6
    with pytest.raises(AssertionError, match="own wrong expectation"):
        exec(compile(HARNESSED, "<raw>", "exec"), {})  # noqa: S102


def test_sanitize_keeps_a_helper_without_return():
    # EvalPlus drops functions with no return statement; that would be a NameError the model never made
    assert "def helper(xs):" in sanitize(HARNESSED, "f")


def test_sanitize_follows_global_statements_to_module_state():
    code = "count = 0\nunused = 1\ndef f():\n    global count\n    count += 1\n    return count\nf()\n"
    assert sanitize(code, "f") == "count = 0\ndef f():\n    global count\n    count += 1\n    return count\n"


def test_sanitize_keeps_decorators_and_classes_the_entry_point_uses():
    code = ("import functools\n\nclass Box:\n    v = 1\n\n@functools.lru_cache(None)\ndef f(n):\n"
            "    return Box.v + n\n\nassert f(1) == 3\n")
    assert sanitize(code, "f") == ("import functools\nclass Box:\n    v = 1\n"
                                   "@functools.lru_cache(None)\ndef f(n):\n    return Box.v + n\n")


def test_sanitize_first_definition_wins_as_in_evalplus():
    code = "def f():\n    return 1\n\ndef f():\n    return 2\n"
    assert sanitize(code, "f") == "def f():\n    return 1\n"


def test_sanitize_takes_one_statement_out_of_a_semicolon_line():
    assert sanitize("import os; print(os.sep)\ndef f():\n    return os.sep\n", "f") == (
        "import os\ndef f():\n    return os.sep\n")


@pytest.mark.parametrize("code", [
    "def f(:\n    return 1\nf()\n",                  # does not parse: the grader labels SyntaxError
    "x = 1\nprint(x)\n",                             # no entry point defined: runs as written
    "def g():\n    return 1\nassert g() == 2\n",   # the model named it otherwise
    "", "(" * 500 + ")" * 500, "x = '\\d'\0\n",     # empty, too deeply nested, a null byte
])
def test_sanitize_leaves_what_it_cannot_anchor_as_is(code):
    assert sanitize(code, "f") == code


def test_sanitize_without_entry_point_is_a_no_op():
    assert sanitize(HARNESSED, None) == HARNESSED


def test_sanitize_keeps_non_ascii_text_exact():
    code = "def f():\n    s = 'héllo ✓'  # café\n    return s + 'ü'\n\nprint(f())\n"
    assert sanitize(code, "f") == "def f():\n    s = 'héllo ✓'  # café\n    return s + 'ü'\n"


def test_sanitize_keeps_the_extra_roots_the_tests_use():
    # MBPP 601's test builds Pair objects: the model's class Pair is part of its answer
    code = "class Pair:\n    def __init__(self, a, b):\n        self.a = a\n\ndef f(xs):\n    return len(xs)\n"
    assert "class Pair" not in sanitize(code, "f")
    assert "class Pair" in sanitize(code, "f", also=used_names("assert candidate([Pair(1, 2)]) == 1"))


def test_used_names_of_code_that_does_not_parse_is_empty():
    assert used_names("def (") == set() and used_names(None) == set()
