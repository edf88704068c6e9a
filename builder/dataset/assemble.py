"""Assemble a dataset folder from graded samples: every config but the card, and the ``notebook`` stage.

``write_configs`` writes ``samples`` (annotated), ``notebook``, ``notebook_by_problem``, ``pairs``
and ``problems`` into a dataset folder; the ``notebook`` stage (``ap2o-build notebook``) is that,
from files. The counting itself (``count_errors``, ``annotate``) is ``builder.dataset.notebook``'s:
this module decides what goes where, split by split, in bounded memory when the samples are
files; that one decides what the numbers are.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator, Sequence

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import schemas
from builder import io
from builder.dataset import shards
from builder.dataset.conversational import is_chat, to_messages
from builder.dataset.notebook import DEFAULT_SPLIT, ErrorNotebook, annotate, count_errors, samples_schema
from builder.dataset.pairs import PairsConfig, make_pairs
from builder.errors import UserError
from builder.flags import add_dataclass_arguments, add_quiet, dataclass_from_args
from builder.generation.prompts import COMPLETION
from builder.progress import bar

CONFIGS = ("pairs", "samples", "notebook", "notebook_by_problem", "problems")


def _split_batches(paths: Sequence[pathlib.Path], split: str, notebook: ErrorNotebook,
                   schema: pa.Schema, chat: bool) -> Iterator[pa.RecordBatch]:
    """One split's samples from Parquet files, annotated batch by batch (bounded memory), in the
    layout of ``schema`` (conversational when ``chat``)."""
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=32 * 1024):
            table = pa.Table.from_batches([batch])
            if "split" in table.column_names:
                mask = pl.from_arrow(table.select(["split"]))["split"].fill_null(DEFAULT_SPLIT) == split
                table = table.filter(mask.to_arrow())
            elif split != DEFAULT_SPLIT:
                continue
            if table.num_rows:
                yield from _published(annotate(table, notebook), "samples", chat).select(schema.names).cast(
                    schema).to_batches()


def _published(table: pa.Table, config: str, chat: bool) -> pa.Table:
    """A config's rows as written: TRL's conversational form in a chat-format dataset."""
    return to_messages(table, config) if chat else table


def _formats(source: pa.Table | Sequence[pathlib.Path]) -> set[str | None]:
    """The prompt formats the answers were asked in (one column read; none recorded: completion)."""
    tables = [source] if isinstance(source, pa.Table) else [
        pq.read_table(p, columns=["prompt_format"]) for p in source
        if "prompt_format" in pq.ParquetFile(p).schema_arrow.names]
    return {f for t in tables if "prompt_format" in t.column_names
            for f in pc.unique(t.column("prompt_format")).to_pylist()} or {None}


def problems_from_samples(samples: pa.Table) -> pa.Table:
    """The ``problems`` rows when no problem table is given: each problem's columns from its
    first answer (samples carry every problem column but the reference solution). A built
    dataset's samples (version 2) hold what the model was asked as ``prompt``, which is the
    problem's statement only in completion format."""
    if "program" in samples.column_names:
        df = pl.from_arrow(samples.select([c for c in ("program", "prompt_format") if c in samples.column_names]))
        asked = df.filter(pl.col("program").is_not_null() & (
            pl.col("prompt_format").fill_null(COMPLETION) != COMPLETION) if "prompt_format" in df.columns else pl.lit(False))
        if asked.height:
            raise UserError(f"samples: answers asked in {asked['prompt_format'][0]!r} format carry the prompt they "
                            "were asked, not the problem's statement; pass the problems (--problems)")
    names = [f.name for f in schemas.PROBLEMS if f.name in samples.column_names]
    keys = ["split", "problem_id"] if "split" in names else ["problem_id"]
    df = pl.from_arrow(samples.select(names)).unique(subset=keys, keep="first", maintain_order=True)
    return schemas.conform(df.to_arrow(), schemas.PROBLEMS, keep_extra=False)


def write_configs(
    source: pa.Table | Sequence[str | os.PathLike],
    folder: str | os.PathLike,
    *,
    problems: pa.Table | None = None,
    pairs: PairsConfig | None = None,
    progress: bool = True,
    configs: Sequence[str] = CONFIGS,
) -> dict[str, dict[str, int]]:
    """Write the configs (every one but the card, by default) into ``folder``; return the rows
    written per config and split.

    ``source`` is the graded samples: a table, or Parquet files read a batch at a time (the path
    for millions of answers: counting and annotating hold only the four counted columns and one
    batch; ``pairs`` reads the text columns of one split)."""
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise UserError(f"notebook: unknown config {unknown[0]!r} (known: {', '.join(CONFIGS)})")

    if not isinstance(source, pa.Table):
        source = [pathlib.Path(p) for p in source]
        if not source:
            raise UserError("notebook: no samples given")
    notebook = count_errors(source)
    split_names = notebook.splits()
    if not split_names:
        raise UserError("notebook: the samples have no rows")
    rows: dict[str, dict[str, int]] = {c: {} for c in configs}
    chat = is_chat(_formats(source))  # one layout for the whole dataset: datasets has one feature set per config
    sample_schema = samples_schema(source)
    if chat:
        sample_schema = schemas.conversational(sample_schema)
    pairs_schema = schemas.conversational(schemas.PAIRS) if chat else schemas.PAIRS
    steps = bar(total=len(split_names) * len(configs), desc="notebook", unit="table", disable=not progress)
    for split in split_names:
        annotated = None
        if "samples" in configs:
            if isinstance(source, pa.Table):
                annotated = annotate(_split_of(source, split), notebook)
                shards.write_split(folder, "samples", split,
                                   _published(annotated, "samples", chat).select(sample_schema.names), sample_schema)
            else:
                shards.write_split(folder, "samples", split,
                                   _split_batches(source, split, notebook, sample_schema, chat), sample_schema)
            rows["samples"][split] = int(notebook.by_problem.filter(pl.col("split") == split)["answers"].sum())
            steps.update()
        for config, make in (("notebook", notebook.table), ("notebook_by_problem", notebook.wide_table)):
            if config in configs:
                table = make(split)
                shards.write_split(folder, config, split, table, table.schema)
                rows[config][split] = table.num_rows
                steps.update()
        if "pairs" in configs:
            if annotated is None:  # files: only the columns pairs need, one split at a time
                annotated = annotate(_pair_columns(source, split), notebook)
            table = _published(make_pairs(annotated, pairs), "pairs", chat)
            shards.write_split(folder, "pairs", split, table, pairs_schema)
            rows["pairs"][split] = table.num_rows
            steps.update()
    if "problems" in configs:
        problem_table = problems if problems is not None else problems_from_samples(
            source if isinstance(source, pa.Table) else _read_columns(source, [f.name for f in schemas.PROBLEMS]))
        problem_table = schemas.conform(problem_table, schemas.PROBLEMS, keep_extra=False)
        for split, part in _by_split(problem_table).items():
            shards.write_split(folder, "problems", split, part, schemas.PROBLEMS)
            rows["problems"][split] = part.num_rows
        steps.update(len(split_names))
    steps.close()
    return rows


def _split_of(table: pa.Table, split: str) -> pa.Table:
    if "split" not in table.column_names:
        return table if split == DEFAULT_SPLIT else table.slice(0, 0)
    mask = pl.from_arrow(table.select(["split"]))["split"].fill_null(DEFAULT_SPLIT) == split
    return table.filter(mask.to_arrow())


def _by_split(table: pa.Table) -> dict[str, pa.Table]:
    splits = pl.from_arrow(table.select(["split"]))["split"].fill_null(DEFAULT_SPLIT).unique(maintain_order=True)
    return {s: _split_of(table, s) for s in splits.to_list()}


def _read_columns(paths: Sequence[pathlib.Path], columns: list[str]) -> pa.Table:
    present = [c for c in columns if c in pq.ParquetFile(paths[0]).schema_arrow.names]
    return pa.concat_tables([pq.read_table(p, columns=present) for p in paths])


def _pair_columns(paths: Sequence[pathlib.Path], split: str) -> pa.Table:
    columns = ["split", "problem_id", "kind", "prompt", "completion", "response", "program", "label", "passed",
               "status", "error_type", "error_category", "prompt_format", "sample_index"]
    return _split_of(_read_columns(paths, columns), split)


# --- the `notebook` stage ------------------------------------------------------------------------

def _sample_files(inputs: Sequence[str]) -> list[pathlib.Path]:
    files: list[pathlib.Path] = []
    for name in inputs:
        path = pathlib.Path(name)
        if path.is_dir():
            root = path / shards.DATA_DIR / "samples" if (path / shards.DATA_DIR / "samples").is_dir() else path
            found = sorted(root.rglob("*.parquet"))
            if not found:
                raise UserError(f"{path}: no Parquet files of samples in it")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or directory")
    return files


def load_samples(inputs: Sequence[str]) -> pa.Table | list[pathlib.Path]:
    """Graded samples from files: Parquet stays on disk (read lazily), JSONL is read whole."""
    files = _sample_files(inputs)
    if all(f.suffix in (".parquet", ".pq") for f in files):
        for f in files:
            try:
                names = pq.ParquetFile(f).schema_arrow.names
            except (pa.ArrowInvalid, OSError) as e:
                raise UserError(f"{f}: not a readable Parquet file ({e})") from None
            missing = [repr(c) for c in schemas.required_columns(schemas.SAMPLES) if c not in names]
            missing += [] if {"label", "passed"} & set(names) else ["'passed' (or 'label')"]
            if missing:
                raise UserError(f"{f}: missing column {missing[0]} (is it graded? run `ap2o-build grade`)")
        return files
    tables = [io.read_rows(f, required=schemas.required_columns(schemas.SAMPLES)) for f in files]
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
        # the grader's rows (and version 1) are ANSWERS: their `passed` is required there
        return schemas.conform(table, schemas.SAMPLES if "label" in table.column_names else schemas.ANSWERS)
    except schemas.SchemaError as e:
        raise UserError(str(e)) from None


def configure(parser) -> None:
    parser.add_argument("samples", nargs="+", help="graded samples (Parquet/JSONL from `ap2o-build grade`, or a dataset folder)")
    parser.add_argument("--output", "-o", required=True, help="dataset folder to write (created atomically)")
    parser.add_argument("--problems", help="problems file (Parquet/JSONL, schemas.PROBLEMS); default: taken from the samples")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    add_quiet(parser)
    add_dataclass_arguments(parser, PairsConfig)


def main(args) -> int:
    output = pathlib.Path(args.output)
    if output.exists() and not args.overwrite:
        raise UserError(f"{output}: already exists (pass --overwrite to replace it)")
    io.check_writable(output, "--output", kind="folder")
    pairs = dataclass_from_args(PairsConfig, args)
    source = load_samples(args.samples)
    problems = None
    if args.problems:
        try:
            problems = schemas.conform(io.read_rows(args.problems), schemas.PROBLEMS, keep_extra=False)
        except schemas.SchemaError as e:
            raise UserError(f"{args.problems}: {e}") from None
    with io.atomic_path(output) as tmp:
        rows = write_configs(source, tmp, problems=problems, pairs=pairs, progress=not args.quiet)
    for config, per_split in rows.items():
        print(f"{config:20s} " + "  ".join(f"{s}: {n:,}" for s, n in per_split.items()))
    print(f"wrote {output} (add the card with `ap2o-build card {output}`)")
    return 0


__all__ = ["CONFIGS", "load_samples", "problems_from_samples", "write_configs"]
