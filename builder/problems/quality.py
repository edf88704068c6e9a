"""Which problems cannot tell a right answer from a wrong one, and why.

Problems whose tests cannot fail an answer poison preference data (every answer "passes", or none
can), so ``quality_report`` flags them -- one flag name per way a problem can fail to separate
right from wrong -- and ``builder.problems.sources.load_problems`` drops them unless asked to keep
them, printing how many and why. The checks are syntactic: no test is ever run here.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from builder.problems.columns import check_function, split_key

# Quality flags, one name per way a problem can fail to separate right from wrong answers.
UNTESTED = "untested"                  # the test never calls the entry point / has no cases
BAD_ENTRY_POINT = "bad_entry_point"    # missing or not a Python identifier
TEST_SYNTAX_ERROR = "test_syntax_error"
MISMATCHED_CASES = "mismatched_cases"  # stdio: number of inputs != number of outputs
FLAG_HELP = {
    UNTESTED: "tests never call the entry point (check(candidate) ignores candidate) or no test cases",
    BAD_ENTRY_POINT: "entry_point missing or not a Python identifier",
    TEST_SYNTAX_ERROR: "test code does not parse",
    MISMATCHED_CASES: "stdio inputs and outputs differ in number",
}


@dataclass
class QualityReport:
    """Which problems cannot grade answers, and why. ``flags`` maps problem id -> flag names
    (a problem may carry several); ``flagged_ids`` is every id with at least one flag."""

    total: int
    per_split: dict[str, int]
    flags: dict[str, list[str]]
    split_of: dict[str, str]

    @property
    def flagged_ids(self) -> set[str]:
        return set(self.flags)

    def counts(self) -> dict[str, int]:
        """Problems per flag (a problem with two flags counts under both)."""
        c: Counter[str] = Counter(f for fs in self.flags.values() for f in fs)
        return {f: c[f] for f in FLAG_HELP if c[f]}

    def counts_by_split(self) -> dict[str, dict[str, int]]:
        """flag -> split -> problems."""
        out: dict[str, dict[str, int]] = {}
        for pid, fs in self.flags.items():
            for f in fs:
                per = out.setdefault(f, {})
                per[self.split_of[pid]] = per.get(self.split_of[pid], 0) + 1
        return out

    def summary(self, label: str, *, kept: int | None = None, dropped: bool = True) -> str:
        """One line for humans: problems read per split, how many flagged and why."""
        splits = ", ".join(f"{s} {n}" for s, n in self.per_split.items())
        line = f"problems: {label}: {self.total} read ({splits})"
        if self.flags:
            by_split = self.counts_by_split()
            reasons = "; ".join(
                f"{n} {f} ({', '.join(f'{s} {k}' for s, k in by_split[f].items())})"
                for f, n in self.counts().items())
            action = "dropped" if dropped else "kept (drop_untested off)"
            line += f"; {len(self.flags)} flagged and {action}: {reasons}"
        if kept is not None:
            line += f"; {kept} used"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "per_split": self.per_split, "counts": self.counts(),
                "counts_by_split": self.counts_by_split(), "flags": self.flags}


def quality_report(table: pa.Table) -> QualityReport:
    """Flag problems whose tests cannot separate right answers from wrong ones.

    The main case is MBPP's: ``check(candidate)`` asserts on some other function by name and never
    touches ``candidate``, so every answer that defines that other name "passes" and every other
    answer fails with a ``NameError`` that is the test's fault, not the answer's. The check is
    syntactic (is ``check``'s parameter used anywhere in its body?), which is exact for this
    pattern and never runs the test."""
    flags: dict[str, list[str]] = {}
    split_of: dict[str, str] = {}
    per_split: Counter[str] = Counter()
    for row in table.select(["problem_id", "split", "kind", "test", "entry_point", "inputs", "outputs"]).to_pylist():
        pid, split = row["problem_id"], row["split"] or "train"
        split_of[pid] = split
        per_split[split] += 1
        found = _function_flags(row) if row["kind"] == "function" else _stdio_flags(row)
        if found:
            flags[pid] = found
    return QualityReport(total=table.num_rows, per_split=_ordered(per_split), flags=flags, split_of=split_of)


def _function_flags(row: Mapping[str, Any]) -> list[str]:
    found = []
    entry = row["entry_point"]
    if not entry or not entry.isidentifier():
        found.append(BAD_ENTRY_POINT)
    try:
        tree = ast.parse(row["test"] or "")
    except SyntaxError:
        return found + [TEST_SYNTAX_ERROR]
    check = check_function(tree)
    if check is None or not any(isinstance(node, ast.Name) and node.id == check.args.args[0].arg
                                for stmt in check.body for node in ast.walk(stmt)):
        found.append(UNTESTED)
    return found


def _stdio_flags(row: Mapping[str, Any]) -> list[str]:
    inputs, outputs = row["inputs"] or [], row["outputs"] or []
    if not inputs or not outputs:
        return [UNTESTED]
    if len(inputs) != len(outputs):
        return [MISMATCHED_CASES]
    return []


def _ordered(counts: Mapping[str, int]) -> dict[str, int]:
    return {s: counts[s] for s in sorted(counts, key=split_key)}
