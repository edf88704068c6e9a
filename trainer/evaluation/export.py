"""A run folder's files: ``metrics.json``, ``samples.parquet`` (+ ``samples_plus.parquet``) and
``evalplus_samples.jsonl``, the last in EvalPlus's own sample format so its official evaluator can
re-score the same answers."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from builder import extract_code
from builder.io import atomic_path, write_parquet

METRICS_FILE = "metrics.json"
SAMPLES_FILE = "samples.parquet"
PLUS_SAMPLES_FILE = "samples_plus.parquet"
EVALPLUS_FILE = "evalplus_samples.jsonl"
# EvalPlus spells its task ids "HumanEval/0" and "Mbpp/2"; ours are "<source>/<id>".
EVALPLUS_PREFIX = {"humaneval": "HumanEval", "mbpp": "Mbpp"}


def write_run(out: pathlib.Path, samples: pa.Table, metrics: Mapping[str, Any],
              plus_samples: pa.Table | None = None) -> None:
    """The run folder's files, each written atomically (metrics last: its presence means the run
    is complete)."""
    write_parquet(samples, out / SAMPLES_FILE)
    if plus_samples is not None:
        write_parquet(plus_samples, out / PLUS_SAMPLES_FILE)
    with atomic_path(out / EVALPLUS_FILE) as tmp, open(tmp, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in evalplus_rows(samples))
    with atomic_path(out / METRICS_FILE) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")


def evalplus_rows(samples: pa.Table) -> Iterable[dict[str, str]]:
    """EvalPlus's sample format: ``task_id`` in its spelling and ``solution``, the self-contained
    program (chat replies reduced to their code, as EvalPlus's sanitizer would)."""
    cols = samples.select(["problem_id", "source", "completion", "prompt_format"]).to_pylist()
    for row in cols:
        solution = row["completion"]
        if row["prompt_format"] == "chat":
            solution = extract_code(solution) or solution
        yield {"task_id": evalplus_task_id(row["problem_id"], row["source"]), "solution": solution}


def evalplus_task_id(problem_id: str, source: str | None) -> str:
    prefix = EVALPLUS_PREFIX.get((source or "").lower())
    if prefix and "/" in problem_id:
        return f"{prefix}/{problem_id.split('/', 1)[1]}"
    return problem_id



__all__ = ["EVALPLUS_FILE", "METRICS_FILE", "PLUS_SAMPLES_FILE", "SAMPLES_FILE", "evalplus_rows", "evalplus_task_id",
           "write_run"]
