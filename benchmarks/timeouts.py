"""Benchmark: per-problem CPU-time limits against the fixed wall-clock limit, on real answers.

Claim (issue 13, part 4): grading cost is dominated by the answers that never end, and each costs
exactly its limit; a limit from each problem's reference solution (``GraderConfig.time_limit =
"reference"``: ``max(time_limit_floor_s, time_limit_factor x reference_cpu_s)`` CPU seconds)
grades the same answers in much less time, and changes no verdict but Timeouts (none to a pass).

The answers are the embedded recording (``builder/data/...parquet``: 400 real answers of
Qwen2.5-Coder-0.5B-Instruct to 40 HumanEval problems) through the default recipe: problems loaded
and references measured as ``ap2o-build run`` does, answers made by the ``file`` backend. Both
policies grade the same answers, in the same run, with one worker pool each (its start-up is not
timed); ``--rounds 2`` grades them twice more in the other order, against warm-cache effects.

    python benchmarks/timeouts.py [--repeats 1] [--rounds 1] [--workers N] [--problems N]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import statistics
import sys
import time

import pyarrow as pa

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builder.config import DEFAULT_RECIPE, resolve_config
from builder.engine.references import measure_references
from builder.generation.sample import build_backend, sample_problems
from builder.grading.grader import Grader


def answers_of_recording(cfg, repeats: int, limit: int | None = None):
    """(problems with reference_cpu_s, answer rows x repeats, seconds the references took); the
    first ``limit`` recorded problems only, when given."""
    problems, _ = cfg.problems.load_with_report(quiet=True)
    backend = build_backend(cfg.sample)
    try:
        recorded = set(backend.answers)  # the recording covers HumanEval's first 40 problems
        problems = problems.filter(pa.array([pid in recorded for pid in problems.column("problem_id").to_pylist()]))
        if limit is not None:
            problems = problems.slice(0, limit)
        t = time.perf_counter()
        problems = measure_references(problems, cfg.grader)
        measuring = time.perf_counter() - t
        answers = sample_problems(problems, backend, cfg.sample.params(), cfg.sample.prompt_format,
                                  progress=False).to_pylist()
    finally:
        backend.close()
    return problems, answers * repeats, measuring


def grade(rows: list[dict], config) -> tuple[list[dict], float, float]:
    """(verdicts, wall seconds of grading, CPU seconds of the answers' runs). The CPU figure sums
    what the sandbox reports for each run (the answer's process and the judge's share; a run cut
    at its limit counts what it burnt): unlike the wall clock it does not grow when other jobs share
    the machine. It is read by wrapping the pool's ``run`` (verdicts do not carry it)."""
    spent: list[float] = []
    with Grader(config) as grader:
        run = grader._pool.run

        def counted(job: dict) -> dict:
            result = run(job)
            spent.append(float(result.get("cpu_s") or 0.0))
            return result

        grader._pool.run = counted
        t = time.perf_counter()
        verdicts = grader.grade(rows, progress=False)
        wall = time.perf_counter() - t
    return verdicts, wall, sum(spent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="grade each recorded answer this many times")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of (fixed, reference); even rounds reversed")
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers (default: one per core)")
    parser.add_argument("--problems", type=int, default=None, help="the first N recorded problems (default: all 40)")
    parser.add_argument("--floor", type=float, action="append", default=None,
                        help="also grade with this time_limit_floor_s (repeatable; the default floor always runs)")
    args = parser.parse_args()

    cfg = resolve_config(argparse.Namespace(config=str(DEFAULT_RECIPE)))
    base = dataclasses.replace(cfg.grader, workers=args.workers)
    configs = {"fixed": dataclasses.replace(base, time_limit="fixed"),
               "reference": dataclasses.replace(base, time_limit="reference")}
    for floor in args.floor or ():
        configs[f"floor {floor:g}"] = dataclasses.replace(base, time_limit="reference", time_limit_floor_s=floor)
    load_before = os.getloadavg()[0]
    problems, rows, measuring = answers_of_recording(cfg, args.repeats, args.problems)
    refs = [r for r in problems.column("reference_cpu_s").to_pylist() if r is not None]
    print(f"{len(rows):,} answers to {problems.num_rows} problems; references measured in {measuring:.2f} s "
          f"({len(refs)} of {problems.num_rows}; CPU s min {min(refs):.4f}, median {statistics.median(refs):.4f}, "
          f"max {max(refs):.4f})")
    limits = sorted({base.run_limits(r) for r in problems.column("reference_cpu_s").to_pylist()})
    print(f"fixed: {base.timeout_s:g} s of wall clock per answer; reference: (wall backstop s, CPU limit s) "
          f"{', '.join(f'({w:g}, {c:.3g})' for w, c in limits)}")

    seconds: dict[str, list[float]] = {policy: [] for policy in configs}
    cpu: dict[str, list[float]] = {policy: [] for policy in configs}
    verdicts: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        for policy in (list(configs) if r % 2 == 0 else list(configs)[::-1]):
            v, s, c = grade(rows, configs[policy])
            seconds[policy].append(s)
            cpu[policy].append(c)
            verdicts.setdefault(policy, v)
            print(f"round {r + 1}, {policy:9s}: {s:7.2f} s, {c:7.2f} CPU s", flush=True)
    load_after = os.getloadavg()[0]

    bad = []
    for policy in list(configs)[1:]:
        before, after = verdicts["fixed"], verdicts[policy]
        changed = [(i, a, b) for i, (a, b) in enumerate(zip(before, after))
                   if (a.error_type, a.passed) != (b.error_type, b.passed)]
        wrong = [i for i, a, b in changed if b.passed or "Timeout" not in (a.error_type, b.error_type)]
        bad += wrong
        print(f"\nverdicts that changed, fixed -> {policy}: {len(changed)} of {len(rows):,}")
        for i, a, b in changed:
            row = rows[i]
            print(f"  {row['problem_id']:15s} sample {row.get('sample_index')}: {a.error_type or 'passed'} "
                  f"({a.runtime_s:.2f} s) -> {b.error_type or 'passed'} ({b.runtime_s:.2f} s)"
                  f"{'   <-- NOT ONLY A TIMEOUT' if i in wrong else ''}")
    print()
    for policy, v in verdicts.items():
        cut = [x.runtime_s for x in v if x.error_type == "Timeout"]
        if cut:
            print(f"{policy:9s}: {len(cut)} Timeouts, wall s each: mean {statistics.mean(cut):.2f}, "
                  f"max {max(cut):.2f}; they hold {sum(cut) / max(sum(x.runtime_s or 0 for x in v), 1e-9):.0%} of "
                  "the answers' summed run time")

    fixed_s, fixed_cpu = statistics.median(seconds["fixed"]), statistics.median(cpu["fixed"])
    print(f"\ngrading time (median of {args.rounds}): fixed {fixed_s:.2f} s, {fixed_cpu:.2f} CPU s; measuring the "
          f"references once {measuring:.2f} s")
    for policy in list(configs)[1:]:
        ref_s, ref_cpu = statistics.median(seconds[policy]), statistics.median(cpu[policy])
        print(f"  {policy:10s} {ref_s:.2f} s: ratio fixed/{policy} {fixed_s / ref_s:.2f}x "
              f"({fixed_s / (ref_s + measuring):.2f}x with the measuring); {ref_cpu:.2f} CPU s: ratio "
              f"{fixed_cpu / ref_cpu:.2f}x")
    print(f"load average: {load_before:.2f} before, {load_after:.2f} after (2 cores shared with other jobs make "
          "the wall-clock figures noisy; the CPU-time limits are not)")
    print(f"claim: only Timeouts change, none to a pass: {'yes' if not bad else 'NO'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
