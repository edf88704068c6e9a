"""The numbers of an evaluation: pass@k with the unbiased estimator, failed answers per error type.

The paper judges training by two things (docs/method.md, step 7): pass@k with the unbiased estimator of
Chen et al. (k = 1, 5, 10 at temperature 0.6) and how many answers fail with each error type
before and after training (its Figure 2). Everything here is a pure function of a graded
``schemas.ANSWERS`` table, so the quiz, ``ap2o-eval`` and a notebook count alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from builder import CATEGORIES, category_of

DEFAULT_KS = (1, 5, 10)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator of Chen et al. (2021): ``1 - C(n-c, k) / C(n, k)``, the chance that
    at least one of ``k`` answers drawn without replacement from ``n`` (``c`` of them correct)
    passes. Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``, which never forms the huge
    binomials (n = 100, k = 50 overflows a float ratio of them)."""
    if not (0 <= c <= n) or k < 1 or k > n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    if k == 1:  # the pass rate, exactly (the product below telescopes to it with rounding error)
        return c / n
    prob_all_fail = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_fail *= 1.0 - k / i
    return 1.0 - prob_all_fail


def per_problem_counts(samples: pa.Table) -> dict[str, tuple[int, int]]:
    """problem id -> (answers, passed answers), in first-seen order."""
    counts: dict[str, list[int]] = {}
    for pid, passed in zip(samples.column("problem_id").to_pylist(), samples.column("passed").to_pylist()):
        entry = counts.setdefault(pid, [0, 0])
        entry[0] += 1
        entry[1] += bool(passed)
    return {pid: (n, c) for pid, (n, c) in counts.items()}


def pass_at_ks(samples: pa.Table, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float | None]:
    """``{"pass@k": mean over problems}`` for each k. A k larger than some problem's number of
    answers has no unbiased estimate; it is reported as None rather than a biased number."""
    counts = list(per_problem_counts(samples).values())
    out: dict[str, float | None] = {}
    for k in ks:
        if not counts or any(n < k for n, _ in counts):
            out[f"pass@{k}"] = None
        else:
            out[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
    return out


def _failed_types(samples: pa.Table) -> list[str]:
    return [t for t, passed in zip(samples.column("error_type").to_pylist(),
                                   samples.column("passed").to_pylist()) if not passed and t]


def error_counts(samples: pa.Table) -> dict[str, int]:
    """Failed answers per error type (``builder.grading.taxonomy`` names), most frequent first."""
    counts = Counter(_failed_types(samples))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def error_category_counts(samples: pa.Table) -> dict[str, int]:
    """Failed answers per category (compile, runtime, wrong_result, ...), in taxonomy order."""
    counts = Counter(category_of(t) for t in _failed_types(samples))
    return {c: counts[c] for c in CATEGORIES if counts[c]}


def metrics_of(samples: pa.Table, ks: Iterable[int] = DEFAULT_KS) -> dict[str, Any]:
    """Every number of one evaluation: pass@k, pass rate, error counts per type and category."""
    counts = per_problem_counts(samples)
    passed = sum(c for _, c in counts.values())
    return {
        **pass_at_ks(samples, ks),
        "problems": len(counts),
        "samples": samples.num_rows,
        "passed": passed,
        "pass_rate": passed / samples.num_rows if samples.num_rows else None,
        "error_counts": error_counts(samples),
        "error_category_counts": error_category_counts(samples),
    }


def answers_per_problem(samples: pa.Table, requested: int) -> dict[str, Any]:
    """What was really sampled: ``n`` is the answers per problem (None when problems differ, then
    ``n_range`` gives the least and most), ``n_requested`` what --n asked for. A backend may
    return fewer (a completions file with 4 answers, --n 9): the record says 4, not 9."""
    counts = [n for n, _ in per_problem_counts(samples).values()] or [0]
    low, high = min(counts), max(counts)
    record: dict[str, Any] = {"n": low if low == high else None, "n_requested": requested}
    if low != high:
        record["n_range"] = [low, high]
    return record


def n_text(record: Mapping[str, Any]) -> str:
    """Answers per problem as a table shows them: ``10``, or ``4-9`` when problems got different counts."""
    if record.get("n") is not None:
        return str(record["n"])
    low, high = record.get("n_range", [None, None])
    return f"{low}-{high}"


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """The run's numbers as a Markdown table: pass@k, then failed answers per error type."""
    lines = ["| metric | value |", "| --- | --- |"]
    plus = metrics.get("plus")
    for key in (k for k in metrics if k.startswith("pass@")):
        lines.append(f"| {key} | {show(metrics[key])} |")
    for key in (k for k in (plus or {}) if k.startswith("pass@")):
        lines.append(f"| plus {key} | {show(plus[key])} |")
    lines.append(f"| problems x answers | {metrics['problems']} x {n_text(metrics)} = {metrics['samples']} |")
    lines.append(f"| passed answers | {metrics['passed']} ({show(metrics['pass_rate'])}) |")
    for error_type, count in metrics["error_counts"].items():
        lines.append(f"| {error_type} | {count} |")
    for error_type, count in (plus or {}).get("error_counts", {}).items():
        lines.append(f"| plus {error_type} | {count} |")
    return "\n".join(lines)


def show(value: Any) -> str:
    """A number as the tables show it: four decimals, ``n/a`` for a pass@k with no unbiased estimate."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


__all__ = ["DEFAULT_KS", "answers_per_problem", "error_category_counts", "error_counts", "format_metrics",
           "metrics_of", "n_text", "pass_at_k", "pass_at_ks", "per_problem_counts", "show"]
