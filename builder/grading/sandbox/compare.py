"""Is a stdio answer's output the expected one? Our rule, and how it sits beside the anchors'.

Our rule (docs/grade.md, "Comparing stdio output"): trailing whitespace on lines and trailing
blank lines never matter; when the texts still differ, both are split into lines and each line
into whitespace-separated tokens, and a token matches when

* it is the expected token, character for character; or
* the expected token is **written as a float** (a decimal point or an exponent: ``0.5``,
  ``1e-9``, ``3.``) and the answer's token is a number of any spelling within a relative
  tolerance of 1e-5 (absolute 1e-8) of it, both finite.

So an integer token matches only the same integer, written the same way: ``1000001`` is not
``1000000`` (a relative difference of 1e-6), ``999999934`` is not ``999999937`` (an answer mod
10^9+7 off by 3), and neither are ``007``, ``+5``, ``1e6`` or ``100000.0`` for ``7``, ``5``,
``1000000`` and ``100000``. The tolerance exists for problems that print real numbers, and the
expected output says which tokens those are.

The anchors' graders are more lenient, which is why ours is its own function:

* APPS / TACO (``testing_util.py``): after exact and stripped comparisons, every token of the
  output that parses as a float is compared with ``np.allclose`` (rtol 1e-5, atol 1e-8) --
  integers included, so ``1000001`` passes for ``1000000`` -- and a last fallback compares the
  lines as *sets* of tokens, order ignored.
* LiveCodeBench (``lcb_runner/evaluation/testing_util.py``): lines stripped, then equal lines,
  else every token parsed as ``Decimal`` and compared exactly (no tolerance): ``1e6``,
  ``1000000.0`` and ``+1000000`` all equal ``1000000`` there, while ``0.333333`` does not equal
  ``0.3333333``.
"""

from __future__ import annotations

import math
import re

REL_TOL = 1e-5
ABS_TOL = 1e-8
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def written_as_float(token: str) -> bool:
    """A number with a decimal point or an exponent: the only tokens a tolerance applies to."""
    return _NUMBER.fullmatch(token) is not None and _INTEGER.fullmatch(token) is None


def token_matches(actual: str, expected: str) -> bool:
    if actual == expected:
        return True
    if not written_as_float(expected) or _NUMBER.fullmatch(actual) is None:
        return False
    x, y = float(actual), float(expected)
    if not (math.isfinite(x) and math.isfinite(y)):
        return False  # past float range both are inf: "1e999" would equal every huge expected number
    return math.isclose(x, y, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def outputs_match(actual: str, expected: str) -> bool:
    got, want = _lines(actual), _lines(expected)
    if got == want:
        return True
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        gt, wt = g.split(), w.split()
        if len(gt) != len(wt) or not all(token_matches(x, y) for x, y in zip(gt, wt)):
            return False
    return True
