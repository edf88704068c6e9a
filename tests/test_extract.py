"""Code extraction: what the grader runs out of raw completions, chat answers and prose."""

from __future__ import annotations

import pytest

from builder.extract import extract_code

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
