"""Grading one answer in the tests: ``grade_one(grader, code, test, entry_point)``, with conftest's
module-scoped ``grader`` (a started ``Grader`` with the module's ``GRADER_SETTINGS``)."""

from __future__ import annotations

import textwrap

from builder.grading.grader import Verdict


def grade_one(grader, code: str, test: str, entry_point: str = "f", **row) -> Verdict:
    """The verdict on one function answer: ``code`` and ``test`` dedented (so they can be written
    indented in a test), the row's other columns (``prompt``...) as given."""
    row = {"completion": textwrap.dedent(code), "test": textwrap.dedent(test), "entry_point": entry_point,
           "prompt": "", **row}
    return grader.grade([row])[0]
