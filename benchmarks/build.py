"""Benchmark: a whole ``ap2o-build run`` over >= 16,000 recorded answers, wall time per stage.

Claim (issue 3): grading dominates a build -- everything else (loading problems, timing their
reference solutions, sampling from the file backend, checkpoints, the notebook, pairs, shards, the
card and its plot) takes under 5% of the total. The answers are the embedded recording (``builder/data/...parquet``: real answers of
Qwen2.5-Coder-0.5B-Instruct to HumanEval), each problem's answers repeated until there are at
least ``--answers`` of them, built through the real pipeline (``builder.pipeline.run_build``) with the
embedded default recipe.

Baseline, in the same run: grading the same answers alone with ``builder.grading.grader.grade_table`` (the
floor any pipeline must pay); the ratio build/baseline is the pipeline's whole overhead.

    python benchmarks/build.py [--answers 16000] [--completions FILE] [--no-baseline]
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builder import io
from builder.config import DEFAULT_RECIPE, resolve_config
from builder.generation.backends.file import resolve_path
from builder.grading.grader import grade_table
from builder.pipeline import run_build


def repeat_answers(source: pathlib.Path, target: pathlib.Path, answers: int) -> tuple[int, int]:
    """Write ``source``'s answers repeated per problem until >= ``answers`` in all; return
    (answers per problem, problems)."""
    table = io.read_rows(source, required=["problem_id", "completion"])
    table = table.select(["problem_id", "completion"])
    ids = table.column("problem_id").to_pylist()
    problems = len(set(ids))
    repeats = -(-answers // table.num_rows)
    per_problem: dict[str, list[str]] = {}
    for pid, text in zip(ids, table.column("completion").to_pylist()):
        per_problem.setdefault(pid, []).append(text)
    rows = [{"problem_id": pid, "completion": text, "sample_index": i}
            for pid, texts in per_problem.items() for i, text in enumerate(texts * repeats)]
    pq.write_table(pa.Table.from_pylist(rows), target)
    return max(len(t) for t in per_problem.values()) * repeats, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=16_000, help="at least this many answers")
    parser.add_argument("--completions", help="recorded answers (default: the embedded recording)")
    parser.add_argument("--no-baseline", action="store_true", help="skip grading the answers alone")
    args = parser.parse_args()

    cfg = resolve_config(argparse.Namespace(config=str(DEFAULT_RECIPE)))
    recorded = pathlib.Path(resolve_path(args.completions or cfg.sample.completions))  # the recipe's is pkg://
    if not recorded.exists():
        raise SystemExit(f"{recorded}: no recorded answers (record them with scripts/record_embedded.sh)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        repeated = tmp / "answers.parquet"
        n, problems = repeat_answers(recorded, repeated, args.answers)
        cfg.sample = dataclasses.replace(cfg.sample, completions=str(repeated), n=n)
        cfg.work_dir = str(tmp / "work")
        print(f"building {n * problems:,} answers ({problems} problems x {n}) from {recorded.name} ...", flush=True)
        result = run_build(cfg, tmp / "ds", progress=True)
        answers = result.samples.num_rows

        baseline = None
        if not args.no_baseline:
            sampled = result.samples.select([c for c in result.samples.column_names
                                             if c in ("problem_id", "kind", "prompt", "test", "entry_point",
                                                      "completion", "reference_cpu_s")])  # the same limits
            t = time.perf_counter()
            grade_table(sampled, cfg.grader, progress=True)
            baseline = time.perf_counter() - t

    s = result.seconds
    total = s["total"]
    print()
    print(f"{'stage':12s}{'seconds':>10s}{'share':>9s}")
    for stage in ("problems", "references", "sample", "grade", "notebook", "card"):
        print(f"{stage:12s}{s[stage]:>10.2f}{s[stage] / total:>9.1%}")
    print(f"{'total':12s}{total:>10.2f}{1:>9.0%}")
    other = total - s["grade"]
    print(f"\n{answers:,} answers, {answers / s['grade']:.0f} graded per second")
    print(f"everything but grading: {other:.2f} s = {other / total:.2%} of the build "
          f"(claim: < 5%: {'yes' if other / total < 0.05 else 'NO'})")
    if baseline is not None:
        print(f"baseline, grade_table alone on the same answers: {baseline:.2f} s; "
              f"ratio build/baseline {total / baseline:.3f}x")
    return 0 if other / total < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
