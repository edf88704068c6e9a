"""What a chunk's results are stored under: a content key of everything that produced them.

Sampling = the chunk's problem rows (less ``GRADE_ONLY_COLUMNS``) + the ``SampleConfig`` fields that
change answers + a completions file's bytes + a local model folder's files (+ ``identity``: e.g. an
evaluation's adapter); grading = the sampling key + the grader's limits (not its worker count) +
replacement tests + grade-only columns. So a run started again finds its finished chunks, and a
changed setting redoes only the chunks it affects. The hash itself is ``builder.keys.content_key``
(plumbing the generation stage uses too).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

import schemas
from builder.generation.backends.file import resolve_path
from builder.keys import content_key, file_digest

if TYPE_CHECKING:
    from builder.generation.sample import SampleConfig
    from builder.grading.grader import GraderConfig

# settings that never change an answer, so they stay out of the sampling key: the openai backend
# seeds each answer by (seed, problem, k) whatever the concurrency. Batch size and device DO change
# transformers' answers, so they stay in. (Which problems are asked is keyed through the chunk's
# problem rows themselves; SampleConfig no longer holds the problem set, whose three fields were
# left out here before, so the keys stay as they were.)
SAMPLE_FIELDS_NOT_IN_KEY = ("concurrency", "max_retries")
# problem columns that change a verdict but never an answer: a measured reference time (the
# per-problem time limit). They stay out of the sampling key -- a re-measured time must not resample
# hours of model answers -- and go into the grading key; ``grade_chunk`` grades on the task's values.
GRADE_ONLY_COLUMNS = ("reference_cpu_s",)


def folder_fingerprint(path: str | os.PathLike | None) -> str | list[tuple[str, int, int]] | None:
    """What identifies local weights without reading gigabytes: a file's digest, or a folder's
    (name, size, mtime) per file. So a checkpoint retrained into the same folder is not taken for
    the old one. None for what is no local path (a Hub id, a served model name)."""
    if not path:
        return None
    p = pathlib.Path(path)
    if p.is_file():
        return file_digest(p)
    if p.is_dir():
        return sorted((str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns)
                      for f in p.rglob("*") if f.is_file())
    return None


def grading_settings(grader_config: GraderConfig) -> dict[str, Any]:
    """The grader settings a verdict depends on: the sandbox limits, not how many workers run them."""
    return {k: v for k, v in dataclasses.asdict(grader_config).items() if k != "workers"}


def sampling_key(problems: pa.Table, sample_cfg: SampleConfig, identity: Mapping[str, Any] | None = None) -> str:
    """What a chunk's answers depend on: its problem rows and the sampling settings (the
    completions file by content, not by name; local model weights by ``folder_fingerprint``).
    ``identity``: anything else that decides the answers and is no ``SampleConfig`` field (an
    evaluation's adapter)."""
    settings = {k: v for k, v in dataclasses.asdict(sample_cfg).items() if k not in SAMPLE_FIELDS_NOT_IN_KEY}
    if not settings.get("vllm_args"):  # only when given: keys of runs without it stay as they were
        settings.pop("vllm_args", None)
    settings["completions"] = file_digest(resolve_path(sample_cfg.completions) if sample_cfg.completions else None)
    weights = folder_fingerprint(sample_cfg.model) if sample_cfg.backend != "file" else None
    if weights is not None:  # only then: keys of builds from Hub ids and recordings stay as they were
        settings["model_files"] = weights
    rows = problems.drop_columns([c for c in GRADE_ONLY_COLUMNS if c in problems.column_names]).to_pylist()
    parts: list[Any] = ["sample", schemas.SCHEMA_VERSION, rows, settings]
    if identity:
        parts.append(dict(identity))
    return content_key(*parts)


def grading_key(sample_key: str, grader_cfg: GraderConfig, tests: Mapping[str, str] | None = None,
                grade_only: Mapping[str, list] | None = None) -> str:
    """What a chunk's verdicts depend on: its answers (by their sample key), the sandbox limits
    (not how many workers run them), when the answers are graded on other tests than their
    problems' own (EvalPlus's plus tests) those tests, and the chunk's ``GRADE_ONLY_COLUMNS``."""
    parts: list[Any] = ["grade", schemas.SCHEMA_VERSION, sample_key, grading_settings(grader_cfg)]
    if tests is not None:
        parts.append(dict(tests))
    if grade_only:  # only when the problems have such columns: keys of tables without them stay as they were
        parts.append(dict(grade_only))
    return content_key(*parts)


__all__ = ["GRADE_ONLY_COLUMNS", "SAMPLE_FIELDS_NOT_IN_KEY", "folder_fingerprint", "grading_key", "grading_settings",
           "sampling_key"]
