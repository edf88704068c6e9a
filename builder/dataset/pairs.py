"""Preference pairs from graded samples: the ``pairs`` config, TRL-ready as is.

A pair is ``(prompt, chosen, rejected)`` for one problem: ``chosen`` an answer that passed its
tests, ``rejected`` one that failed, with the failure's error type and its notebook frequency so a
trainer can order or weight pairs by error type (AP2O) without reading the ``samples`` config.

The filter and the de-duplication are the official code's (TsingZ0/AP2O ``merge.py``), which the
trainer's schedules read through this module too (``kept_answers``): answers are ordered as
``merge.py`` L85-89 sorts them -- by problem, passed answers first (shortest first), then failed
answers by their error type's frequency within the problem, rarest first, sample order kept on
ties -- and an answer whose exact text came earlier in that order is dropped, over the whole table
(L90), so the passed copy of a text wins. Then a problem is kept only with at least ``min_passed``
passed and ``min_failed`` failed distinct answers: ``merge.py``'s two masks (L93-96: >= 1 passed
and >= 2 failed; L97-100: >= 2 passed and >= 1 failed) keep >= 2 of each (the paper's text only
asks for two failed answers). De-duplicating first matters: counted before, a problem whose "two"
failures are the same text would be kept. Every passed x failed pair is emitted (the DPO
baseline's static set) unless ``max_pairs_per_problem`` caps it; the cap draws a uniform subset
with a generator seeded by the config seed *and the problem id*, so one problem's draw does not
move when another changes.

Text columns are plain strings here: ``prompt`` is exactly what the model was asked (the
problem prompt in completion format, the official raw prompt in official format, the user message
in chat format) and ``chosen``/``rejected`` exactly what it answered -- the ``samples`` config's
``prompt`` and ``completion`` of those answers, computed by one function (``_texts``): the
continuation, without the prompt; in official format the continuation cut at the official stop
strings, which is the program (the official code trains on that text); in chat format the reply as
it came, not the sanitized code that was graded. Samples of either layout are read: version 2
(``schemas.SAMPLES``: ``completion`` the answer, ``label``) and version 1 or the grader's rows
(``schemas.ANSWERS``: ``completion`` the program, ``passed``). A chat-format dataset publishes
these texts as TRL's message lists (schema version 3): ``builder.dataset.assemble`` turns them into
messages when it writes a config, ``builder.dataset.conversational.to_text`` back when a reader
computes with them.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

import schemas
from builder.errors import UserError
from builder.generation.prompts import CHAT, COMPLETION, PROMPT_FORMATS, make_request
from builder.grading import taxonomy


@dataclass(frozen=True)
class PairsConfig:
    """How samples become preference pairs."""

    min_passed: int = field(default=2, metadata={"help": "keep a problem only with at least this many distinct passed answers (official merge.py "
                                                         "L93-100: its two masks keep >= 2 passed and >= 2 failed)"})
    min_failed: int = field(default=2, metadata={"help": "keep a problem only with at least this many distinct failed answers (official and paper: 2)"})
    dedup: bool = field(default=True, metadata={"help": "drop an answer whose exact text came earlier in the whole table, in the order "
                                                "merge.py L85-90 sorts it (problem, passed before failed, ...): the passed copy wins"})
    dedup_per_problem: bool = field(default=False, metadata={"help": "compare answers only within their problem (not official: "
                                                             "merge.py L90 drops a text seen in any earlier problem)"})
    dedup_ignore_trailing_whitespace: bool = field(default=False, metadata={"help": "also treat answers that differ only in trailing "
                                                                            "whitespace as one (not official: merge.py L90 compares exact text)"})
    max_pairs_per_problem: int | None = field(default=None, metadata={"help": "cap on pairs per problem, a seeded uniform draw; None: every passed x failed pair"})
    seed: int = field(default=0, metadata={"help": "seed of the per-problem draw under max_pairs_per_problem",
                                           "flag": "pairs_seed"})  # --seed is the sampling seed on `run`

    def __post_init__(self):
        if self.min_passed < 1 or self.min_failed < 1:
            raise UserError("pairs: min_passed and min_failed must be at least 1 (a pair needs one of each)")
        if self.max_pairs_per_problem is not None and self.max_pairs_per_problem < 1:
            raise UserError(f"pairs: max_pairs_per_problem must be positive or None, got {self.max_pairs_per_problem}")

    def to_dict(self) -> dict:
        return asdict(self)


_NEEDED = ("problem_id", "prompt", "completion", "error_type")
_OPTIONAL = {
    "kind": pl.String, "prompt_format": pl.String, "error_category": pl.String,
    "sample_index": pl.Int32, "error_frequency_global": pl.Float64, "response": pl.String,
    "program": pl.String, "label": pl.Boolean, "passed": pl.Boolean,
}


def _frame(samples: pa.Table | pl.DataFrame) -> pl.DataFrame:
    names = samples.column_names if isinstance(samples, pa.Table) else samples.columns
    missing = [c for c in _NEEDED if c not in names]
    if not {"label", "passed"} & set(names):
        missing.append("label")
    if missing:
        raise UserError(f"pairs: samples lack column {missing[0]!r} (have: {', '.join(names)})")
    keep = [c for c in (*_NEEDED, *_OPTIONAL) if c in names]
    df = pl.from_arrow(samples.select(keep)) if isinstance(samples, pa.Table) else samples.select(keep)
    return df.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in _OPTIONAL.items() if c not in keep])


def _prompts(df: pl.DataFrame) -> pl.DataFrame:
    """What each (problem, prompt format) was asked, computed once per problem, not per answer:
    a version-2 row says it (``prompt``); for an older row, ``builder.generation.prompts`` -- the one place
    that knows the formats -- makes it from the problem's statement."""
    rows = []
    keys = ("problem_id", "_format", "prompt", "_v2")
    for r in df.select(*keys, "kind").unique(subset=list(keys), maintain_order=True).iter_rows(named=True):
        if r["_v2"]:
            text = r["prompt"]
            messages = [{"role": "user", "content": text}] if r["_format"] == CHAT else None
        else:
            request = make_request({"problem_id": r["problem_id"], "prompt": r["prompt"], "kind": r["kind"] or "function"},
                                   r["_format"])
            messages = [dict(m) for m in request.messages] if request.messages else None
            text = request.text if request.text is not None else request.messages[-1]["content"]
        rows.append({**{k: r[k] for k in keys}, "_prompt_text": text, "_prompt_messages": messages})
    return pl.DataFrame(rows, schema={
        "problem_id": pl.String, "_format": pl.String, "prompt": pl.String, "_v2": pl.Boolean,
        "_prompt_text": pl.String, "_prompt_messages": pl.List(pl.Struct({"role": pl.String, "content": pl.String})),
    })


def _texts(samples: pa.Table | pl.DataFrame) -> pl.DataFrame:
    """Every row of ``samples`` (either layout), in order, with what the model was asked
    (``_prompt_text``/``_prompt_messages``), what it answered (``_answer``), the program that ran
    (``_program``), its raw reply where that differs from the answer (``_response``) and whether
    it passed (``_passed``). The one computation of the answer text: the ``samples`` config's
    ``completion`` and the ``pairs`` config's ``chosen``/``rejected`` both come from here.

    A version-2 row (``program`` set) carries these as they are. An older row -- version 1, or
    an answer as the grader returns it (``schemas.ANSWERS``) -- holds the program in
    ``completion``: in completion format the answer is the continuation after the prompt the
    program starts with; in chat format the reply as it came (``response``), not the sanitized
    code that ran (rows without a response ran the reply itself); in official format the
    continuation cut at the official stop strings, which is the program."""
    df = _frame(samples).with_row_index("_row").with_columns(
        _format=pl.col("prompt_format").fill_null(COMPLETION), _v2=pl.col("program").is_not_null(),
        _passed=pl.coalesce("label", "passed"))
    unknown = df.filter(~pl.col("_format").is_in(list(PROMPT_FORMATS)))
    if unknown.height:
        raise UserError(f"pairs: unknown prompt_format {unknown['_format'][0]!r} (row {unknown['_row'][0]})")
    unlabeled = df.filter(pl.col("_passed").is_null())
    if unlabeled.height:
        raise UserError(f"pairs: answer without label (problem {unlabeled['problem_id'][0]!r}, row {unlabeled['_row'][0]})")
    bad = df.filter(~pl.col("_passed") & pl.col("error_type").is_null())
    if bad.height:
        raise UserError(f"pairs: failed answer without error_type (problem {bad['problem_id'][0]!r}, row {bad['_row'][0]})")
    old = ~pl.col("_v2")
    is_continuation = old & (pl.col("_format") == COMPLETION) & pl.col("completion").str.starts_with(pl.col("prompt"))
    is_reply = old & (pl.col("_format") == CHAT) & pl.col("response").is_not_null()
    df = df.with_columns(
        _answer=pl.when(is_continuation).then(pl.col("completion").str.slice(pl.col("prompt").str.len_chars()))
        .when(is_reply).then(pl.col("response"))
        .otherwise(pl.col("completion")),
        _program=pl.coalesce("program", "completion"))
    df = df.with_columns(_response=pl.when(pl.col("response") != pl.col("_answer")).then(pl.col("response")))
    return df.join(_prompts(df), on=["problem_id", "_format", "prompt", "_v2"], how="left", maintain_order="left")


def _answers(samples: pa.Table | pl.DataFrame, config: PairsConfig) -> pl.DataFrame:
    """One row per distinct answer, in sample order: the answer text as the model wrote it, and its prompt."""
    df = _texts(samples)
    return _dedup(df, config) if config.dedup else df


def _dedup(df: pl.DataFrame, config: PairsConfig) -> pl.DataFrame:
    """``merge.py``'s de-duplication: sort as L85-89 do (problem, then ``error_frequency``: 0 for a
    passed answer, else its type's share of the problem's answers (L41, L57-61), then
    ``answer_length``: a passed answer's length, the same large value for every failed one
    (L78-83)), ties in sample order; then keep the first of each exact text over the whole
    table (L90). The frequencies count every answer, duplicates included, as L41 does."""
    key = pl.col("_answer").str.strip_chars_end() if config.dedup_ignore_trailing_whitespace else pl.col("_answer")
    ids = df["problem_id"]
    numeric = ids.len() > 0 and bool(ids.str.contains(r"^[0-9]+$").all())  # merge.py sorts an integer task_id as a number
    subset = ["_format", "_key", *(["problem_id"] if config.dedup_per_problem else [])]
    return (df.with_columns(
                _key=key,
                _task=pl.col("problem_id").cast(pl.Int64) if numeric else pl.col("problem_id"),
                _frequency=pl.when(pl.col("_passed")).then(0).otherwise(pl.len().over("problem_id", "error_type")),
                _length=pl.when(pl.col("_passed")).then(pl.col("_answer").str.len_chars()).otherwise(None))
            .sort("_task", "_frequency", "_length", "_row", nulls_last=True)
            .unique(subset=subset, keep="first", maintain_order=True)
            .sort("_row")
            .drop("_key", "_task", "_frequency", "_length"))


def sample_texts(samples: pa.Table | pl.DataFrame) -> pl.DataFrame:
    """The text columns of the ``samples`` config (``schemas.SAMPLES``), row for row, from samples
    in either layout: ``prompt``, ``completion`` (the answer alone), ``label``, ``program`` and
    ``response`` (only where it differs from ``completion``)."""
    return _texts(samples).select(
        prompt=pl.col("_prompt_text"), completion=pl.col("_answer"), label=pl.col("_passed"),
        program=pl.col("_program"), response=pl.col("_response"))


def _kept(df: pl.DataFrame, config: PairsConfig) -> pl.DataFrame:
    """The rows of problems with enough distinct passed and failed answers (``merge.py`` L93-100)."""
    counts = df.group_by("problem_id").agg(
        _n_passed=pl.col("_passed").sum(), _n_failed=(~pl.col("_passed")).sum())
    kept = counts.filter((pl.col("_n_passed") >= config.min_passed) & (pl.col("_n_failed") >= config.min_failed))
    return df.join(kept.select("problem_id"), on="problem_id", how="semi")


def kept_answers(samples: pa.Table | pl.DataFrame, config: PairsConfig | None = None) -> pl.DataFrame:
    """The distinct answers of the problems the filter keeps, in sample order: the one
    de-duplicate-and-filter step behind both the ``pairs`` config and the trainer's schedules, so
    that a trainer reading ``samples`` sees exactly the answers the published pairs are made of.

    Columns: ``problem_id``, ``prompt_format``, ``prompt`` (what the model was asked, as text),
    ``prompt_messages`` (the conversational form, chat only), ``answer`` (what the model wrote,
    without the prompt a completion-format program starts with), ``passed``, ``error_type``,
    ``sample_index`` and ``row`` (the answer's row in ``samples``: its sample order)."""
    df = _kept(_answers(samples, config or PairsConfig()), config or PairsConfig())
    return df.select(
        "problem_id", prompt_format=pl.col("_format"), prompt=pl.col("_prompt_text"),
        prompt_messages=pl.when(pl.col("_format") == CHAT).then(pl.col("_prompt_messages")),
        answer=pl.col("_answer"), passed=pl.col("_passed"), error_type=pl.col("error_type"),
        sample_index=pl.col("sample_index"), row=pl.col("_row"))


def make_pairs(samples: pa.Table | pl.DataFrame, config: PairsConfig | None = None) -> pa.Table:
    """The ``pairs`` rows (``schemas.PAIRS``, text layout) of one split's graded samples.

    Rows come grouped by problem in the order the problems first appear in ``samples``, then by
    the chosen and the rejected answer's position: the same samples always give the same table."""
    config = config or PairsConfig()
    df = _answers(samples, config)
    first = df.group_by("problem_id").agg(_first=pl.col("_row").min())
    df = _kept(df, config)

    chosen = df.filter(pl.col("_passed")).select(
        "problem_id", "_format",
        prompt=pl.col("_prompt_text"), chosen=pl.col("_answer"), _chosen_row=pl.col("_row"),
        chosen_sample_index=pl.col("sample_index"))
    rejected = df.filter(~pl.col("_passed")).select(
        "problem_id", "_format",
        rejected=pl.col("_answer"), _rejected_row=pl.col("_row"),
        rejected_error_type=pl.col("error_type"), rejected_error_category=pl.col("error_category"),
        rejected_error_frequency=pl.col("error_frequency_global"),
        rejected_sample_index=pl.col("sample_index"))
    pairs = (chosen.join(rejected, on=["problem_id", "_format"], how="inner")
             .join(first, on="problem_id", how="left")
             .sort("_first", "_chosen_row", "_rejected_row"))
    if config.max_pairs_per_problem is not None:
        pairs = pairs.filter(pl.Series(_cap_mask(pairs["problem_id"], config.max_pairs_per_problem, config.seed)))

    categories = {t: taxonomy.category_of(t) for t in pairs["rejected_error_type"].unique().to_list()}
    pairs = pairs.with_columns(rejected_error_category=pl.coalesce(
        "rejected_error_category",
        pl.col("rejected_error_type").replace_strict(categories, default=None, return_dtype=pl.String)))

    table = pairs.select([f.name for f in schemas.PAIRS]).to_arrow()
    return schemas.conform(table, schemas.PAIRS, keep_extra=False)


def _cap_mask(problem_ids: pl.Series, cap: int, seed: int) -> np.ndarray:
    """Keep ``cap`` uniformly drawn rows of each problem's (contiguous) block of pairs. Each
    problem draws from its own generator seeded by (seed, crc32(problem_id)): stable across runs,
    platforms and the presence of other problems."""
    runs = problem_ids.rle().struct.unnest()  # contiguous blocks: (len, value)
    mask = np.zeros(problem_ids.len(), dtype=bool)
    start = 0
    for size, problem_id in runs.iter_rows():
        if size <= cap:
            mask[start:start + size] = True
        else:
            rng = np.random.default_rng([seed, zlib.crc32(problem_id.encode())])
            mask[start + rng.choice(size, size=cap, replace=False)] = True
        start += size
    return mask


def pair_stats(samples: pa.Table | pl.DataFrame, config: PairsConfig | None = None) -> dict[str, int]:
    """How many problems the filter keeps and drops (for the card and the run summary)."""
    config = config or PairsConfig()
    frame = _frame(samples)
    df = _answers(samples, config)
    kept = _kept(df, config)["problem_id"].n_unique()
    problems = frame["problem_id"].n_unique()  # a problem whose answers were all seen earlier counts too
    return {"problems": problems, "kept": kept, "dropped": problems - kept,
            "distinct_answers": df.height, "duplicates": frame.height - df.height}


__all__ = ["PairsConfig", "kept_answers", "make_pairs", "pair_stats", "sample_texts"]
