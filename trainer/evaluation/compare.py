"""``ap2o-eval compare``: finished runs side by side (the paper's Table 1 and Figure 2)."""

from __future__ import annotations

import json
import os
import pathlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from builder.errors import UserError
from builder.io import atomic_path
from trainer.evaluation.export import METRICS_FILE
from trainer.evaluation.metrics import show

# matplotlib is imported only to draw the plot.


def load_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = pathlib.Path(run_dir) / METRICS_FILE
    if not path.exists():
        raise UserError(f"{run_dir}: no {METRICS_FILE} (not a finished ap2o-eval run folder)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def compare(run_dirs: Sequence[str], labels: Sequence[str] | None = None,
            output: str | os.PathLike | None = None) -> dict[str, Any]:
    """Side by side: pass@k and failed answers per error type for each run (the paper's Table 1
    and Figure 2). Writes ``compare.md``, ``compare.json`` and ``error_counts.png`` into
    ``output`` when given; returns every number."""
    if not run_dirs:
        raise UserError("compare: name at least one run folder")
    labels = list(labels) if labels else [pathlib.Path(d).name for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise UserError(f"compare: {len(labels)} labels for {len(run_dirs)} runs")
    runs = [load_run(d) for d in run_dirs]
    ks = sorted({key for r in runs for key in r if key.startswith("pass@")}, key=lambda s: int(s[5:]))
    types = _error_type_order(runs)
    result = {
        "labels": labels, "runs": [str(d) for d in run_dirs],
        "pass_at_k": {k: [r.get(k) for r in runs] for k in ks},
        # EvalPlus runs: pass@k on base AND plus tests, n/a for runs without plus tests
        "plus_pass_at_k": {k: [(r.get("plus") or {}).get(k) for r in runs] for k in ks}
        if any(r.get("plus") for r in runs) else {},
        "error_counts": {t: [r["error_counts"].get(t, 0) for r in runs] for t in types},
        "total_errors": [sum(r["error_counts"].values()) for r in runs],
        "metrics": runs,
        "warnings": differences(labels, runs),
    }
    result["markdown"] = format_comparison(result)
    if output is not None:
        out = pathlib.Path(output)
        with atomic_path(out / "compare.md") as tmp:
            tmp.write_text(result["markdown"] + "\n")
        plot_error_counts(result, out / "error_counts.png")
        with atomic_path(out / "compare.json") as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


# what makes two runs' numbers comparable: the same problems, asked the same way, sampled alike
_PROBLEMS = ("benchmark", "split", "problems")
_ASKED = ("prompt_format",)
_SAMPLED = ("n", "temperature", "max_new_tokens")


def differences(labels: Sequence[str], runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One warning per way the runs differ that makes their numbers incomparable: other problems (a
    3-problem run beside a 164-problem one), another prompt format (an instruct model asked in chat
    before training and in completion after), other sampling settings (answers per problem, which
    also scale the error counts; temperature; token budget)."""
    def shown(run: Mapping[str, Any], keys: Sequence[str]) -> str:
        return " ".join(f"{run.get(k)}" + (" problems" if k == "problems" else "") for k in keys)

    out = []
    for what, keys in (("problems", _PROBLEMS), ("prompt format", _ASKED), (("sampling (n, temperature, max new "
                                                                              "tokens)"), _SAMPLED)):
        values = [shown(r, keys) for r in runs]
        if len(set(values)) > 1:
            sides = "; ".join(f"{label}: {v}" for label, v in zip(labels, values))
            out.append(f"the runs differ in {what} ({sides}): their numbers do not compare")
    return out


def _error_type_order(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Types by their count in the first run (the baseline), then the rest by total count."""
    total: Counter[str] = Counter()
    for r in runs:
        total.update(r["error_counts"])
    first = runs[0]["error_counts"]
    return sorted(total, key=lambda t: (-first.get(t, 0), -total[t], t))


def format_comparison(result: Mapping[str, Any]) -> str:
    labels = result["labels"]
    lines = ["| | " + " | ".join(labels) + " |", "| --- |" + " ---: |" * len(labels)]
    for k, values in result["pass_at_k"].items():
        lines.append(f"| {k} | " + " | ".join(show(v) for v in values) + " |")
    for k, values in result.get("plus_pass_at_k", {}).items():
        lines.append(f"| plus {k} | " + " | ".join(show(v) for v in values) + " |")
    for t, values in result["error_counts"].items():
        lines.append(f"| {t} | " + " | ".join(str(v) for v in values) + " |")
    lines.append("| **all errors** | " + " | ".join(str(v) for v in result["total_errors"]) + " |")
    lines += ["", *(f"> warning: {w}" for w in result.get("warnings", []))] if result.get("warnings") else []
    return "\n".join(lines)


def plot_error_counts(result: Mapping[str, Any], target: pathlib.Path) -> pathlib.Path:
    """Grouped bars: failed answers per error type, one bar per run (the paper's Figure 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types, labels = list(result["error_counts"]), result["labels"]
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(types) + 2), 4))
    for i, label in enumerate(labels):
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(types))]
        bars = ax.bar(xs, [result["error_counts"][t][i] for t in types], width, label=label)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(range(len(types)), types, rotation=30, ha="right")
    ax.set_ylabel("failed answers")
    benchmarks = sorted({str(m.get("benchmark")) for m in result["metrics"]})
    ax.set_title(f"Failed answers per error type ({', '.join(benchmarks)})")
    ax.legend()
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return target



__all__ = ["compare", "format_comparison", "load_run", "plot_error_counts"]
