"""``ap2o-build grade``: grade answers against their problems' tests in the sandbox.

    ap2o-build grade --input ROWS --output OUT.parquet [--timeout S] [--memory-mb M] [--workers N] [...]
    ap2o-build grade --demo [--limit N] [--output OUT.parquet]

``ROWS`` is JSONL or Parquet with ``problem_id``, ``prompt``, ``completion`` and, per problem kind,
``test`` + ``entry_point`` (function problems) or ``inputs`` + ``outputs`` (stdio problems). The
output keeps every input column and adds the verdict columns, in ``schemas.ANSWERS`` (what
``ap2o-build notebook`` reads to write the published ``samples`` config). At the
end a table counts the answers per error type. ``--demo`` grades the bundled example set
(HumanEval's canonical solutions and broken variants of them) instead of ``--input``.

The subcommand was called ``execute`` before; ``ap2o-build execute`` still works (``builder.cli.ALIASES``).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections import Counter

import pyarrow as pa

from builder.errors import UserError
from builder.flags import add_dataclass_arguments, add_quiet, dataclass_from_args, named_by_flag
from builder.grading import taxonomy
from builder.grading.grader import COMMAND_LINE, GraderConfig, grade_table, infer_kind
from builder.grading.sandbox.pool import SandboxError
from builder.io import check_writable, read_rows, write_parquet
from builder.problems.examples import demo_rows

ALWAYS_REQUIRED = ("problem_id", "prompt", "completion")
BY_KIND = {"function": ("test", "entry_point"), "stdio": ("inputs", "outputs")}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", metavar="ROWS", help="JSONL or Parquet file of answers to grade")
    parser.add_argument("--output", "-o", metavar="OUT.parquet", help="where to write the graded rows (Parquet)")
    parser.add_argument("--demo", action="store_true",
                        help="grade the bundled example set (HumanEval canonical solutions and broken variants)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="with --demo: only the first N HumanEval problems")
    add_quiet(parser)
    add_dataclass_arguments(parser, GraderConfig, **COMMAND_LINE)


def main(args: argparse.Namespace) -> int:
    # everything that can be checked up front is, before a single answer runs
    try:
        config = dataclass_from_args(GraderConfig, args)
    except UserError as e:  # name the flag the user typed, not the config field behind it
        raise named_by_flag(e, GraderConfig, COMMAND_LINE["rename"]) from None
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1, got {args.limit}")
    if not args.demo and (not args.input or not args.output):
        raise UserError("--input and --output are required (or --demo)")
    if args.output:
        check_writable(args.output, "--output")
    if args.demo:
        table, source = pa.Table.from_pylist(demo_rows(args.limit)), "the bundled HumanEval example set"
    else:
        table, source = read_answers(args.input), args.input
    print(f"grading {table.num_rows} answers from {source}", file=sys.stderr)

    started = time.perf_counter()
    try:
        graded = grade_table(table, config, progress=not args.quiet)
    except SandboxError as e:  # e.g. --isolation bwrap where bubblewrap cannot run
        raise UserError(str(e)) from None
    elapsed = time.perf_counter() - started
    if args.output:
        write_parquet(graded, args.output)
    print(summary(graded, elapsed))
    if args.output:
        print(f"wrote {graded.num_rows} rows to {args.output}")
    return 0


def read_answers(path: str) -> pa.Table:
    """The rows to grade, with every column a row's problem kind needs; ``UserError`` naming the
    file, the line (JSONL) or row (Parquet) and the column otherwise."""
    table = read_rows(path, required=ALWAYS_REQUIRED)
    if table.num_rows == 0:
        raise UserError(f"{path}: no rows to grade")
    where = _row_locations(pathlib.Path(path), table.num_rows)
    for i, row in enumerate(table.to_pylist()):
        kind = infer_kind(row)
        if kind not in BY_KIND:
            raise UserError(f"{where(i)}: column 'kind' is {kind!r}, expected 'function' or 'stdio'")
        for col in ALWAYS_REQUIRED + BY_KIND[kind]:
            value = row.get(col)
            if value is None:
                raise UserError(f"{where(i)}: missing column {col!r} (a {kind} problem needs "
                                f"{', '.join(ALWAYS_REQUIRED + BY_KIND[kind])})")
        if kind == "stdio":
            if not isinstance(row["inputs"], list) or not isinstance(row["outputs"], list):
                raise UserError(f"{where(i)}: columns 'inputs' and 'outputs' must be lists of strings")
            if not row["inputs"] or len(row["inputs"]) != len(row["outputs"]):
                raise UserError(f"{where(i)}: column 'outputs' must have one entry per 'inputs' entry "
                                f"(got {len(row['inputs'])} inputs, {len(row['outputs'])} outputs)")
        for col in ("completion", "test", "entry_point", "prompt"):
            if row.get(col) is not None and not isinstance(row[col], str):
                raise UserError(f"{where(i)}: column {col!r} must be a string, got {type(row[col]).__name__}")
    return table


def _row_locations(path: pathlib.Path, n: int):
    """row index -> "file:line" for JSONL (blank lines are skipped by the reader), "file row i" otherwise."""
    if path.suffix in (".parquet", ".pq"):
        return lambda i: f"{path} row {i}"
    lines = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if raw.strip():
                lines.append(lineno)
    return lambda i: f"{path}:{lines[i]}" if i < len(lines) else f"{path} row {i}"


def summary(graded: pa.Table, elapsed: float) -> str:
    """The per-error-type table printed at the end."""
    types = graded.column("error_type").to_pylist()
    n = len(types)
    counts = Counter("(passed)" if t is None else t for t in types)
    rows = sorted(counts.items(), key=lambda kv: (kv[0] != "(passed)", -kv[1], kv[0]))
    width = max([len("error_type")] + [len(k) for k in counts])
    lines = [(f"graded {n} answers in {elapsed:.1f} s ({n / elapsed if elapsed else 0:.1f} answers/s); "
              f"pass rate {counts.get('(passed)', 0) / n if n else 0:.1%}"), "",
             f"| {'error_type':<{width}} | {'category':<12} | {'count':>6} | {'share':>6} |",
             f"|{'-' * (width + 2)}|{'-' * 14}|{'-' * 8}|{'-' * 8}|"]
    for name, count in rows:
        category = "" if name == "(passed)" else (taxonomy.category_of(name) or "")
        lines.append(f"| {name:<{width}} | {category:<12} | {count:>6} | {count / n:>6.1%} |")
    return "\n".join(lines)
