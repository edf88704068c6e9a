"""Benchmark: the error notebook over 1,000,000 graded answers -- peak memory and time.

Claim (issue 3): counting the notebook (global and per-problem counts, frequencies, ranks, the
wide per-problem table) and writing the ``samples`` config with each answer's frequencies over a
million rows stays under 1.5 GB of peak RSS. It does because the counting query selects only four
columns lazily and the samples are annotated and written one batch at a time
(``builder.dataset.assemble.write_configs`` from Parquet files).

Baseline, in the same run: the obvious eager version -- read the whole Parquet into memory, count
with Polars on the full frame, annotate the full table, write it. Each runs in a fresh child process
so that its peak RSS (``ru_maxrss``) is its own.

    python benchmarks/notebook.py [--rows 1000000] [--problems 10000]

The synthetic rows look like real ones where it matters for memory: ~400-character prompts and
programs, ~300-character tracebacks on failures, ~30% pass rate, 14 error types with a skewed
distribution, 100 answers per problem.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import schemas
from builder.grading import taxonomy

ERROR_TYPES = ["WrongResult", "NameError", "SyntaxError", "TypeError", "IndexError", "AttributeError", "ValueError",
               "Timeout", "KeyError", "ZeroDivisionError", "IndentationError", "RecursionError", "EarlyExit", "NoCode"]
LIMIT_MB = 1536


def synthesize(path: pathlib.Path, rows: int, problems: int, seed: int = 0) -> None:
    """Write ``rows`` graded samples to ``path`` in 100k-row batches (never all in memory)."""
    rng = np.random.default_rng(seed)
    pool = pa.array([f"def solution_{i}(x):\n" + "    y = x + 1  # some code\n" * 14 for i in range(997)])
    prompts = pa.array([f'def task_{i}(x):\n    """' + "Describe the task. " * 20 + '"""\n' for i in range(problems)])
    traces = pa.array([f'Traceback (most recent call last):\n  File "<answer>", line {i}, in task\n' + "    x\n" * 40
                       for i in range(101)])
    weights = np.array([0.9 ** i for i in range(len(ERROR_TYPES))])
    weights /= weights.sum()
    batch = 100_000
    writer = pq.ParquetWriter(path, schemas.ANSWERS, compression="zstd")
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        idx = np.arange(start, start + n)
        problem = idx // max(rows // problems, 1) % problems
        passed = rng.random(n) < 0.3
        etype = rng.choice(len(ERROR_TYPES), size=n, p=weights)
        error_type = pa.array([None if p else ERROR_TYPES[e] for p, e in zip(passed, etype)], pa.string())
        cols = {
            "problem_id": pa.array([f"synthetic/{p}" for p in problem]),
            "source": pa.array(["synthetic"] * n),
            "split": pa.array(["train"] * n),
            "kind": pa.array(["function"] * n),
            "prompt": prompts.take(pa.array(problem)),
            "completion": pool.take(pa.array(rng.integers(0, len(pool), n))),
            "sample_index": pa.array(idx % 100, pa.int32()),
            "passed": pa.array(passed),
            "status": pa.array([taxonomy.status_of(t) for t in error_type.to_pylist()]),
            "error_type": error_type,
            "error_category": pa.array([taxonomy.category_of(t) for t in error_type.to_pylist()]),
            "traceback": pa.array([None if p else traces[int(i) % 101].as_py() for p, i in zip(passed, idx)], pa.string()),
            "runtime_s": pa.array(rng.random(n) * 0.1),
        }
        writer.write_table(schemas.conform(pa.table(cols), schemas.ANSWERS))
    writer.close()


OURS = """
import json, resource, sys, time
t = time.perf_counter()
from builder.dataset.assemble import write_configs
rows = write_configs([sys.argv[1]], sys.argv[2], progress=False, configs=("samples", "notebook", "notebook_by_problem"))
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": rows}))
"""

EAGER = """
import json, resource, sys, time
t = time.perf_counter()
import pyarrow.parquet as pq
from builder.dataset import shards
from builder.dataset.notebook import annotate, count_errors
table = pq.read_table(sys.argv[1])                      # everything, every column, in memory
notebook = count_errors(table)
annotated = annotate(table, notebook)
shards.write_split(sys.argv[2], "samples", "train", annotated, annotated.schema)
for config, make in (("notebook", notebook.table), ("notebook_by_problem", notebook.wide_table)):
    t2 = make("train"); shards.write_split(sys.argv[2], config, "train", t2, t2.schema)
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(code: str, samples: pathlib.Path, out: pathlib.Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, str(samples), str(out)], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--problems", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        samples = tmp / "samples.parquet"
        t = time.perf_counter()
        synthesize(samples, args.rows, args.problems)
        print(f"synthesized {args.rows:,} graded samples ({samples.stat().st_size / 2**20:.0f} MB zstd Parquet) "
              f"in {time.perf_counter() - t:.1f} s")
        ours = measure(OURS, samples, tmp / "ours")
        eager = measure(EAGER, samples, tmp / "eager")
    print()
    print(f"{'notebook over ' + format(args.rows, ',') + ' rows':34s}{'time (s)':>10s}{'peak RSS (MB)':>15s}")
    print(f"{'ap2o (lazy counts, batched write)':34s}{ours['seconds']:>10.1f}{ours['peak_mb']:>15.0f}")
    print(f"{'baseline (eager, whole table)':34s}{eager['seconds']:>10.1f}{eager['peak_mb']:>15.0f}")
    print(f"ratio baseline/ours: time {eager['seconds'] / ours['seconds']:.2f}x, "
          f"memory {eager['peak_mb'] / ours['peak_mb']:.2f}x")
    ok = ours["peak_mb"] <= LIMIT_MB
    print(f"claim: peak RSS <= {LIMIT_MB} MB: {'yes' if ok else 'NO'} ({ours['peak_mb']:.0f} MB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
