"""The error notebook (paper, step 2): failed answers counted per error type.

``count_errors`` counts failed answers per error type -- globally over each split and per problem
-- in the long ``schemas.NOTEBOOK`` form (one row per (scope, problem, error type) with count,
frequency and rank; the trainer's L2H/H2L ordering reads the counts), and in a wide per-problem table
with one count column per error type (``notebook_by_problem``: what a person scans, and what a
spreadsheet or ``df.plot`` wants). The wide table is its own config because its columns depend on
the data (the error-type set is open), while ``notebook`` keeps the fixed schema every consumer can
rely on.

Counting runs on a Polars lazy query that selects only the four columns it needs, so a notebook over
millions of answers reads a few tens of MB, never the completions and traces. ``annotate`` turns
graded answers (``schemas.ANSWERS``, or a ``samples`` config of either version) into the
``samples`` config's rows -- TRL's prompt/completion/label, through ``builder.dataset.pairs.sample_texts``
-- and fills each answer's ``error_frequency_problem``/``error_frequency_global`` from the
notebook. Counts are *before* de-duplication: the notebook describes what the model did;
de-duplication is the pairs filter's business (``builder.dataset.pairs``).

Writing the dataset's configs from these pieces (and the ``notebook`` stage) is
``builder.dataset.assemble``'s job: this module counts, that one assembles.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from builder.dataset.conversational import to_text
from builder.dataset.pairs import sample_texts
from builder.errors import UserError
from builder.grading import taxonomy

DEFAULT_SPLIT = "train"  # samples with no split (e.g. an imported file) count as one training split
GLOBAL, PROBLEM = "global", "problem"
_NEEDED = ("problem_id", "error_type")  # and label (version 1 and the grader's rows: passed)
_VERDICTS = ("label", "passed")
_FREQUENCIES = ("error_frequency_problem", "error_frequency_global")
_WIDE_FIXED = ("problem_id", "answers", "passed", "failed", "pass_rate")

Source = pa.Table | pl.DataFrame | pl.LazyFrame | Sequence[str | os.PathLike]


def _lazy(source: Source) -> pl.LazyFrame:
    """The samples as a lazy frame of only the columns the notebook reads."""
    if isinstance(source, pa.Table):
        present = [c for c in ("split", *_NEEDED, *_VERDICTS) if c in source.column_names]
        lf = pl.from_arrow(source.select(present)).lazy()
    elif isinstance(source, pl.DataFrame):
        lf = source.lazy()
    elif isinstance(source, pl.LazyFrame):
        lf = source
    else:
        lf = pl.scan_parquet([str(p) for p in source])
    names = lf.collect_schema().names()
    verdicts = [c for c in _VERDICTS if c in names]
    missing = [c for c in _NEEDED if c not in names] + ([] if verdicts else ["label"])
    if missing:
        raise UserError(f"samples: missing column {missing[0]!r} (have: {', '.join(names)})")
    split = pl.col("split").cast(pl.String) if "split" in names else pl.lit(None, pl.String)
    return lf.select(
        split.fill_null(DEFAULT_SPLIT).alias("split"),
        pl.col("problem_id").cast(pl.String),
        pl.coalesce([pl.col(c).cast(pl.Boolean) for c in verdicts]).alias("passed"),
        pl.col("error_type").cast(pl.String),
    )


@dataclass(frozen=True)
class ErrorNotebook:
    """The notebook of every split. ``counts`` is the long form with a ``split`` column;
    ``by_problem`` the wide per-problem table; ``error_types`` its count columns, most frequent
    (over all splits) first, the same for every split so that each config has one schema."""

    counts: pl.DataFrame
    by_problem: pl.DataFrame
    error_types: tuple[str, ...]

    def splits(self) -> list[str]:
        order = {"train": 0, "validation": 1, "test": 2}
        return sorted(self.by_problem["split"].unique().to_list(), key=lambda s: (order.get(s, 3), s))

    def table(self, split: str) -> pa.Table:
        """The ``notebook`` config of one split (``schemas.NOTEBOOK``)."""
        df = self.counts.filter(pl.col("split") == split).drop("split")
        return schemas.conform(df.to_arrow(), schemas.NOTEBOOK, keep_extra=False)

    def wide_table(self, split: str) -> pa.Table:
        """The ``notebook_by_problem`` config of one split."""
        return self.by_problem.filter(pl.col("split") == split).drop("split").to_arrow().cast(self.wide_schema())

    def wide_schema(self) -> pa.Schema:
        fields = [pa.field("problem_id", pa.string(), nullable=False),
                  pa.field("answers", pa.int64()), pa.field("passed", pa.int64()), pa.field("failed", pa.int64()),
                  pa.field("pass_rate", pa.float64())]
        fields += [pa.field(t, pa.int64(), metadata={"help": f"failed answers of type {t}"}) for t in self.error_types]
        return pa.schema(fields, metadata={"ap2o.schema": "notebook_by_problem",
                                           "ap2o.schema_version": schemas.SCHEMA_VERSION})

    def frequencies(self, scope: str) -> pl.DataFrame:
        keys = ["split", "error_type"] if scope == GLOBAL else ["split", "problem_id", "error_type"]
        return self.counts.filter(pl.col("scope") == scope).select(
            *keys, pl.col("frequency").alias(f"error_frequency_{scope}"))


def _ranked(df: pl.DataFrame, group: list[str]) -> pl.DataFrame:
    """Frequency within the group and an ordinal rank (1 = most frequent; ties by name, so the
    rank is total and reproducible; the trainer orders by the counts, which keep the official
    sample order on ties)."""
    return (df.sort([*group, "count", "error_type"], descending=[False] * len(group) + [True, False])
            .with_columns(frequency=pl.col("count") / pl.col("count").sum().over(group),
                          rank=(pl.int_range(pl.len()).over(group) + 1).cast(pl.Int32)))


def count_errors(source: Source) -> ErrorNotebook:
    """Count the error notebook of graded samples (a table, a frame, or Parquet paths)."""
    lf = _lazy(source).with_row_index("_row")
    answers_q = lf.group_by("split", "problem_id").agg(
        answers=pl.len().cast(pl.Int64), passed=pl.col("passed").sum().cast(pl.Int64),
        _first=pl.col("_row").min(), _unlabeled=pl.col("passed").is_null().sum())
    failures_q = lf.filter(~pl.col("passed")).group_by("split", "problem_id", "error_type").agg(
        count=pl.len().cast(pl.Int64))
    answers, failures = pl.collect_all([answers_q, failures_q])
    unlabeled = answers.filter(pl.col("_unlabeled") > 0)
    if unlabeled.height:
        raise UserError(f"samples: {unlabeled['_unlabeled'].sum()} answers have no label "
                        f"(first in problem {unlabeled['problem_id'][0]!r})")
    answers = answers.drop("_unlabeled")
    untyped = failures.filter(pl.col("error_type").is_null())
    if untyped.height:
        raise UserError(f"samples: {untyped['count'].sum()} failed answers have no error_type "
                        f"(first in problem {untyped['problem_id'][0]!r}); grade them with `ap2o-build grade`")

    order = answers.select("split", "problem_id", "_first")
    per_problem = _ranked(failures, ["split", "problem_id"]).join(order, on=["split", "problem_id"]) \
        .sort("split", "_first", "rank").drop("_first").with_columns(scope=pl.lit(PROBLEM))
    global_ = _ranked(failures.group_by("split", "error_type").agg(pl.col("count").sum()), ["split"]) \
        .with_columns(scope=pl.lit(GLOBAL), problem_id=pl.lit(None, pl.String))
    categories = {t: taxonomy.category_of(t) for t in failures["error_type"].unique().to_list()}
    columns = ["split", "scope", "problem_id", "error_type", "count", "frequency", "rank"]
    counts = pl.concat([global_.select(columns), per_problem.select(columns)]).with_columns(
        error_category=pl.col("error_type").replace_strict(categories, default=None, return_dtype=pl.String))

    totals = failures.group_by("error_type").agg(pl.col("count").sum()).sort(["count", "error_type"], descending=[True, False])
    error_types = tuple(totals["error_type"].to_list())
    clash = set(error_types) & set(_WIDE_FIXED)
    if clash:
        raise UserError(f"samples: error type {min(clash)!r} collides with a notebook column name")
    wide = answers.sort("split", "_first").drop("_first").with_columns(
        failed=pl.col("answers") - pl.col("passed"), pass_rate=pl.col("passed") / pl.col("answers"))
    if error_types:
        pivot = failures.pivot(on="error_type", index=["split", "problem_id"], values="count")
        wide = wide.join(pivot, on=["split", "problem_id"], how="left", maintain_order="left")
    wide = wide.select("split", *_WIDE_FIXED, *[pl.col(t).fill_null(0).cast(pl.Int64) for t in error_types])
    return ErrorNotebook(counts=counts, by_problem=wide, error_types=error_types)


def annotate(samples: pa.Table, notebook: ErrorNotebook) -> pa.Table:
    """The ``samples`` config's rows (``schemas.SAMPLES``) of graded answers in either layout:
    ``prompt``/``completion``/``label``/``program``/``response`` from ``builder.dataset.pairs.sample_texts``
    (the computation the ``pairs`` config uses), ``error_frequency_problem``/``error_frequency_global``
    filled from the notebook (null for passed answers), every other column untouched. The text
    columns come out as text; a chat-format dataset's messages (schema version 3) are read as text
    (``builder.dataset.conversational``), and ``assemble`` writes them back as messages."""
    samples = to_text(samples)
    keys = _lazy(samples).collect().with_columns(
        error_type=pl.when(pl.col("passed")).then(None).otherwise(pl.col("error_type")))
    for scope in (PROBLEM, GLOBAL):
        freq = notebook.frequencies(scope)
        keys = keys.join(freq, on=[c for c in freq.columns if not c.startswith("error_frequency")],
                         how="left", maintain_order="left")
    texts = sample_texts(samples)
    table = _text_free(samples)
    for name in _TEXTS:
        table = _put(table, name, texts[name].to_arrow())
    for name in _FREQUENCIES:
        table = table.append_column(name, keys[name].to_arrow().cast(pa.float64()))
    return schemas.conform(table, schemas.SAMPLES)


# the columns annotate computes: the text columns of schemas.SAMPLES, and `passed` (label holds it)
_TEXTS = ("prompt", "completion", "label", "program", "response")


def _text_free(table: pa.Table) -> pa.Table:
    """``table`` without what ``annotate`` recomputes (and the problem's reference time, which the
    answers carry to the grader only), but with ``prompt``/``completion`` kept in place (required
    columns: ``conform`` of this table gives the samples config's schema)."""
    return table.drop_columns([c for c in (*_FREQUENCIES, "label", "program", "response", "passed",
                                           "reference_cpu_s")  # the problems config holds it
                               if c in table.column_names])


def _put(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


def samples_schema(source: pa.Table | Sequence[str | os.PathLike]) -> pa.Schema:
    """SAMPLES plus the user's extra columns (``grade`` keeps them), as ``annotate`` lays them out (text)."""
    if isinstance(source, pa.Table):
        head = source.slice(0, 0)
    else:
        head = pq.ParquetFile(source[0]).schema_arrow.empty_table()
    return schemas.conform(_text_free(to_text(head)), schemas.SAMPLES).schema


__all__ = ["DEFAULT_SPLIT", "ErrorNotebook", "annotate", "count_errors", "samples_schema"]
