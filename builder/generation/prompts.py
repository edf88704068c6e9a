"""From a problem to what a model is asked, and from the model's answer back to a program to run.

Three prompt formats:

- ``completion``: the problem's prompt itself (for HumanEval, the function signature and
  docstring); the model continues it and the program that runs is prompt + continuation. This is
  how the paper's models are examined and the format the embedded default was recorded with.
- ``chat``: one user message, an instruction followed by the prompt in a fenced block. The code is
  taken out of the reply's fences and, for a function problem, sanitized as EvalPlus does
  (``builder.generation.extract.sanitize``: the entry point and what it needs, without the model's own
  self-test harness); ``sanitize=False`` runs the reply as it came.
- ``official``: the official AP2O code's raw prompt (TsingZ0/AP2O ``utils/define.py``
  ``SYSTEM_PROMPT``, filled by ``infer.py`` with the problem's stripped ``prompt``), which ends in
  an open python fence. No chat template; the continuation, cut at the official stop strings
  (``EOS``, as its ``post_process`` cuts), is the whole program. This is how the paper's exam and
  quiz ask.

The sampler, the trainer's quiz and ``ap2o-eval`` all go through ``make_request``/``to_program`` so
that an answer is always turned into the same program, whoever sampled it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from builder.errors import UserError
from builder.generation.backends.base import Request
from builder.generation.extract import extract_code, used_names
from builder.generation.extract import sanitize as sanitize_code

COMPLETION, CHAT, OFFICIAL = "completion", "chat", "official"
PROMPT_FORMATS = (COMPLETION, CHAT, OFFICIAL)

# TsingZ0/AP2O utils/define.py, verbatim (the space before the blank line included).
OFFICIAL_PROMPT = "Please provide a Python script that solves the following problem. \n\n{}\n\n```python\n"
# TsingZ0/AP2O utils/define.py ``EOS``, verbatim and in its order: the end-of-text tokens of the
# model families it ran (they only matter to an engine that returns special tokens as text) and
# the driver code that ends the script. Unlike FUNCTION_BODY_STOP below it cuts at any comment
# line ("\n#"): the official exam, notebook and training all saw answers cut that way.
OFFICIAL_STOP = (
    "<|endoftext|>", "<|endofmask|>", "<\uff5cend\u2581of\u2581sentence\uff5c>", "<[PAD\u2581TOKEN]>", "</s>",
    "\nif __name__", "\ndef main(", "\nprint(", "\n#", "\n```",
)

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


def official_prompt(row: Mapping[str, Any]) -> str:
    """The official raw prompt for ``row``: ``SYSTEM_PROMPT.format(problem['prompt'].strip())``
    as TsingZ0/AP2O ``infer.py`` builds it (its collator trains on the same text)."""
    return OFFICIAL_PROMPT.format(_prompt(row).strip())


def official_cut(answer: str) -> str:
    """TsingZ0/AP2O ``post_process``: cut at each official stop string in turn, but only where it
    occurs after the first character (``find(eos) > 0``), exactly as the official code does."""
    for eos in OFFICIAL_STOP:
        if answer.find(eos) > 0:
            answer = answer[:answer.find(eos)]
    return answer


def make_request(row: Mapping[str, Any], prompt_format: str = COMPLETION) -> Request:
    """The request that asks a model for one answer to the problem ``row`` (a ``schemas.PROBLEMS``
    row as a mapping). Its key is the problem id. Completion and official requests are raw text
    (``text``: exactly the prompt a trainer must train on); chat requests are ``messages``."""
    key = str(_field(row, "problem_id"))
    fmt = check_format(prompt_format)
    if fmt == COMPLETION:
        return Request(key=key, text=_prompt(row))
    if fmt == OFFICIAL:
        return Request(key=key, text=official_prompt(row))
    return Request(key=key, messages=({"role": "user", "content": chat_message(row)},))


def to_program(row: Mapping[str, Any], answer: str, prompt_format: str = COMPLETION, *, sanitize: bool = True) -> str:
    """The text that runs for ``answer``: prompt + continuation in completion mode (the model
    wrote only the body); in official mode the continuation cut as the official code cuts it (a
    no-op when the backend already stopped there); in chat mode the reply's code, sanitized for a
    function problem (see ``builder.generation.extract.sanitize``; what the problem's test uses is kept too)
    unless ``sanitize`` is false. A chat reply with no code is returned as is, for the grader to
    label ``NoCode``."""
    fmt = check_format(prompt_format)
    if fmt == COMPLETION:
        return _prompt(row) + answer
    if fmt == OFFICIAL:
        return official_cut(answer)
    if not sanitize or row.get("kind", "function") == "stdio" or not row.get("entry_point"):
        return answer
    code = extract_code(answer)
    return answer if code is None else sanitize_code(code, row["entry_point"], also=used_names(row.get("test")))


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
    program) ends; none in chat mode, where the chat template's end-of-turn token ends the answer;
    the official list in official mode (the official code uses it for every problem, so it also
    cuts a stdio script's prints and main guard: use chat or completion for stdio problems)."""
    fmt = check_format(prompt_format)
    if fmt == CHAT:
        return ()
    if fmt == OFFICIAL:
        return OFFICIAL_STOP
    return FUNCTION_BODY_STOP if ends_inside_function(_prompt(row)) else PROGRAM_STOP


__all__ = [
    "CHAT", "COMPLETION", "FUNCTION_BODY_STOP", "OFFICIAL", "OFFICIAL_PROMPT", "OFFICIAL_STOP", "PROGRAM_STOP",
    "PROMPT_FORMATS", "chat_message", "check_format", "ends_inside_function", "make_request", "official_cut",
    "official_prompt", "stop_strings", "to_program",
]
