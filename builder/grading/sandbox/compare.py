"""Is a stdio answer's output the expected one? Compared the way the anchors' graders do.

APPS/TACO compare line by line after stripping, then fall back to token-wise float comparison
with a small tolerance; LiveCodeBench also ignores trailing whitespace and compares numbers as
numbers. We do the same: trailing whitespace on lines and trailing blank lines never matter;
when the texts differ, lines are split into tokens and numeric tokens compare with a relative
tolerance of 1e-5 (absolute 1e-8), others exactly.
"""

from __future__ import annotations

import math
import re

REL_TOL = 1e-5
ABS_TOL = 1e-8
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _token_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    if _NUMBER.fullmatch(a) and _NUMBER.fullmatch(b):
        x, y = float(a), float(b)
        if not (math.isfinite(x) and math.isfinite(y)):
            return False  # past float range both are inf: "1e999" would equal every huge expected number
        return math.isclose(x, y, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return False


def outputs_match(actual: str, expected: str) -> bool:
    got, want = _lines(actual), _lines(expected)
    if got == want:
        return True
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        gt, wt = g.split(), w.split()
        if len(gt) != len(wt) or not all(_token_equal(x, y) for x, y in zip(gt, wt)):
            return False
    return True
