"""From a problem to what a model is asked, and from the model's answer back to a program to run.

Two prompt formats, both from the paper's setting:

- ``completion``: the problem's prompt itself (for HumanEval, the function signature and
  docstring); the model continues it and the program that runs is prompt + continuation. This is
  how the paper's models are examined and the format the embedded default was recorded with.
- ``chat``: one user message, an instruction followed by the prompt in a fenced block; the answer
  is run as is and the grader extracts the code from its fences.

The sampler, the trainer's quiz and ``ap2o-eval`` all go through ``make_request``/``to_program`` so
that an answer is always turned into the same program, whoever sampled it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from builder.errors import UserError
from builder.sampling.base import Request

COMPLETION, CHAT = "completion", "chat"
PROMPT_FORMATS = (COMPLETION, CHAT)

# Stop strings when the prompt ends inside a function body (HumanEval style). They end the answer
# where top-level *driver* code starts: a main guard, a main(), prints or asserts of the model's own
# examples, the self-test harness instruct models like to append ("# Check function ...", then
# "def check_function():" and a call to it), the closing fence an instruct model may add. Such code
# is not part of the answer; run with it, a wrong expectation in the model's own asserts would be
# recorded as the answer's error. Deliberately NOT "\ndef " / "\nclass " (nor a bare "\n#"): a helper
# defined after the function is part of a correct answer, and cutting it would turn that answer
# into a NameError the model never made -- noise in exactly the error notebook we build.
FUNCTION_BODY_STOP = (
    "\nif __name__", "\ndef main(", "\nprint(", "\nassert ", "\n```",
    "\ndef check", "\ndef test", "\n# Check", "\n# check", "\n# Test", "\n# test", "\n# Example", "\n# example",
)
# A prompt that does not end inside a function (a task statement): the model writes a whole
# program, main guard included, so only the end of a fenced block stops it.
PROGRAM_STOP = ("\n```",)

FUNCTION_INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function, including the "
    "imports it needs, in a single ```python code block."
)
STDIO_INSTRUCTION = (
    "Solve the following problem with a Python 3 program that reads from standard input and writes "
    "to standard output. Reply with the complete program in a single ```python code block."
)


def check_format(prompt_format: str) -> str:
    if prompt_format not in PROMPT_FORMATS:
        raise UserError(f"unknown prompt format {prompt_format!r} (choose from: {', '.join(PROMPT_FORMATS)})")
    return prompt_format


def _field(row: Mapping[str, Any], name: str) -> Any:
    try:
        return row[name]
    except KeyError:
        raise UserError(f"problem row {row.get('problem_id', '?')!r}: missing column {name!r}") from None


def _prompt(row: Mapping[str, Any]) -> str:
    prompt = _field(row, "prompt")
    if not isinstance(prompt, str):
        raise UserError(f"problem {row.get('problem_id', '?')!r}: column 'prompt' is {type(prompt).__name__}, expected text")
    return prompt


def _fence(text: str, lang: str = "") -> str:
    """``text`` in a Markdown fence longer than any run of backticks inside it, so that a problem
    statement quoting code cannot close the block early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text.strip(chr(10))}\n{ticks}"


def chat_message(row: Mapping[str, Any]) -> str:
    """The user message of the chat format: instruction, blank line, the prompt fenced."""
    if row.get("kind", "function") == "stdio":
        return f"{STDIO_INSTRUCTION}\n\n{_fence(_prompt(row))}"
    return f"{FUNCTION_INSTRUCTION}\n\n{_fence(_prompt(row), 'python')}"


def make_request(row: Mapping[str, Any], prompt_format: str = COMPLETION) -> Request:
    """The request that asks a model for one answer to the problem ``row`` (a ``schemas.PROBLEMS``
    row as a mapping). Its key is the problem id."""
    key = str(_field(row, "problem_id"))
    if check_format(prompt_format) == COMPLETION:
        return Request(key=key, text=_prompt(row))
    return Request(key=key, messages=({"role": "user", "content": chat_message(row)},))


def to_program(row: Mapping[str, Any], answer: str, prompt_format: str = COMPLETION) -> str:
    """The text that runs for ``answer``: prompt + continuation in completion mode (the model
    wrote only the body), the answer as is in chat mode (the grader extracts the fenced code)."""
    if check_format(prompt_format) == COMPLETION:
        return _prompt(row) + answer
    return answer


def ends_inside_function(prompt: str) -> bool:
    """Whether ``prompt`` stops inside a function whose body the model is to write: its last
    top-level statement is a ``def`` (with at most a docstring), or it ends right after a
    ``def ...:`` line."""
    for candidate in (prompt, prompt.rstrip() + "\n    pass\n"):
        try:
            tree = ast.parse(candidate)
        except SyntaxError:
            continue
        return bool(tree.body) and isinstance(tree.body[-1], (ast.FunctionDef, ast.AsyncFunctionDef))
    return False


def stop_strings(row: Mapping[str, Any], prompt_format: str = COMPLETION) -> tuple[str, ...]:
    """Default stop strings for a problem: in completion mode, where a function body (or a whole
    program) ends; none in chat mode, where the chat template's end-of-turn token ends the answer."""
    if check_format(prompt_format) == CHAT:
        return ()
    return FUNCTION_BODY_STOP if ends_inside_function(_prompt(row)) else PROGRAM_STOP


__all__ = [
    "CHAT", "COMPLETION", "FUNCTION_BODY_STOP", "PROGRAM_STOP", "PROMPT_FORMATS", "chat_message",
    "check_format", "ends_inside_function", "make_request", "stop_strings", "to_program",
]
