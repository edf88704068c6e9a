"""The Arrow schemas that the builder writes and the trainer reads: one place for every column.

Both halves of ap2o-coder meet at a dataset on the Hub, so the columns of each config are defined
here once and imported everywhere else. Each schema carries its name and version in the schema
metadata (``ap2o.schema``, ``ap2o.schema_version``) so a reader can tell which layout a Parquet
file was written with. Bump ``SCHEMA_VERSION`` on any incompatible change (a renamed, retyped or
removed column); adding a nullable column is compatible.

``ANSWERS`` is not a config: it is the layout the builder's stages and the grader pass each other
(``completion`` the program to run), from which the ``samples`` config is assembled.

``validate`` checks a table against a schema and names the offending column; ``conform`` casts a
table to a schema, adding the nullable columns it lacks and keeping any extra columns at the end
(``ap2o-build grade`` keeps every input column).

A chat-format dataset is conversational for TRL: its text columns (``CONVERSATIONAL``: ``pairs``'
``prompt``/``chosen``/``rejected``, ``samples``' ``prompt``/``completion``) hold message lists
(``MESSAGES``) instead of strings, so ``DPOTrainer``, ``KTOTrainer`` and ``SFTTrainer`` apply the chat
template to them as loaded. ``conversational(schema)`` is that layout of a config's schema;
``validate`` and ``conform`` accept either layout.

Versions: 1 -- ``samples``' ``completion`` was the program and ``passed`` the label; 2 -- ``samples``
in TRL's prompt/completion/label convention, text columns always strings, chat pairs with extra
``prompt_messages``/``chosen_messages``/``rejected_messages`` columns; 3 -- chat-format datasets hold
the messages in the text columns themselves, and the ``*_messages`` columns are gone.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

SCHEMA_VERSION = "3"

PROBLEM_KINDS = ("function", "stdio")

# TRL's conversational form: a list of {role, content} messages
MESSAGES = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))
# config -> its text columns that hold MESSAGES in a chat-format dataset, with each one's role
CONVERSATIONAL = {"pairs": {"prompt": "user", "chosen": "assistant", "rejected": "assistant"},
                  "samples": {"prompt": "user", "completion": "assistant"}}

# --- problems: one row per coding problem -------------------------------------------------------
_PROBLEM_FIELDS = [
    pa.field("problem_id", pa.string(), nullable=False, metadata={"help": "the problem's id in its source (e.g. HumanEval/0)"}),
    pa.field("source", pa.string(), metadata={"help": "benchmark or dataset the problem came from"}),
    pa.field("split", pa.string(), metadata={"help": "the source's split the problem belongs to"}),
    pa.field("kind", pa.string(), nullable=False, metadata={"help": "'function' or 'stdio'"}),
    pa.field("prompt", pa.string(), nullable=False, metadata={
        "help": "the problem as the source states it (function problems: signature + docstring)"}),
    pa.field("test", pa.string(), metadata={"help": "function problems: code defining check(candidate)"}),
    pa.field("entry_point", pa.string(), metadata={"help": "function problems: name passed to check()"}),
    pa.field("inputs", pa.list_(pa.string()), metadata={"help": "stdio problems: stdin of each case"}),
    pa.field("outputs", pa.list_(pa.string()), metadata={"help": "stdio problems: expected stdout"}),
]
# The per-problem time limit's measure: answers carry it into the grader (ANSWERS), the published
# samples config does not (it belongs to the problem, and the problems config holds it).
_REFERENCE_TIME = pa.field("reference_cpu_s", pa.float64(), metadata={
    "help": "CPU seconds the reference solution's test run takes in the sandbox (answer and judge processes, "
            "median of several runs; builder.engine.references); null when the problem has no reference "
            "solution or it does not pass its own tests. The grader's time_limit 'reference' policy limits "
            "each answer to max(time_limit_floor_s, time_limit_factor x this) CPU seconds"})
# what only the problems config holds: the reference solution and its measured time
_REFERENCE_FIELDS = [
    pa.field("canonical_solution", pa.string(), metadata={"help": "the source's reference solution, when it has one"}),
    _REFERENCE_TIME,
]

# --- the grader's verdict, one per answer (also the tail of a samples row) -----------------------
VERDICT_FIELDS = [
    pa.field("passed", pa.bool_(), nullable=False, metadata={"help": "the answer passed every test"}),
    pa.field("status", pa.string(), nullable=False,
             metadata={"help": "how the run ended: passed, failed, timeout, crashed, exited, no_code"}),
    pa.field("error_type", pa.string(), metadata={
        "help": "null when passed; a built-in exception name (a class of the answer's: its nearest built-in "
                "ancestor) or a synthetic type; see builder.grading.taxonomy"}),
    pa.field("error_class", pa.string(), metadata={
        "help": "the raw class name of the exception that ended the answer (e.g. ParseError for error_type "
                "ValueError); null for synthetic types and passes"}),
    pa.field("error_category", pa.string(), metadata={
        "help": "group of error_type: compile, runtime, wrong_result, timeout, resource, exit, no_code"}),
    pa.field("error_message", pa.string(), metadata={"help": "the exception's message (or the failed check's)"}),
    pa.field("traceback", pa.string(), metadata={"help": "the answer's and the test's frames only"}),
    pa.field("error_line", pa.int32(), metadata={"help": "1-based line in the answer's code"}),
    pa.field("failed_test", pa.string(), metadata={"help": "source of the test assertion that failed"}),
    pa.field("runtime_s", pa.float64(), metadata={"help": "wall seconds the answer ran (measured: varies between runs)"}),
    pa.field("stdout", pa.string(), metadata={"help": "what the answer printed, capped; never part of the verdict"}),
]

# --- how an answer was sampled (null for answers imported without that record) -------------------
GENERATION_FIELDS = [
    pa.field("sample_index", pa.int32(), metadata={"help": "index of the answer among its problem's samples"}),
    pa.field("model", pa.string(), metadata={"help": "the model that wrote the answer"}),
    pa.field("model_revision", pa.string(), metadata={"help": "its revision (commit, file digest), when recorded"}),
    pa.field("backend", pa.string(), metadata={"help": "vllm, transformers, openai or file"}),
    pa.field("prompt_format", pa.string(), metadata={"help": "completion, chat or official (builder.generation.prompts)"}),
    pa.field("temperature", pa.float64(), metadata={"help": "sampling temperature"}),
    pa.field("top_p", pa.float64(), metadata={"help": "nucleus sampling mass"}),
    pa.field("max_new_tokens", pa.int32(), metadata={"help": "token budget of the answer"}),
    pa.field("seed", pa.int64(), metadata={"help": "sampling seed"}),
]

# --- answers: what the builder's stages pass each other (not a published config) ------------------
# ``ap2o-build sample`` writes these without the verdict, ``grade``/``run``/``ap2o-eval`` add it.
# ``completion`` here is the program the grader runs (``builder.grading.grader`` reads that column); the
# dataset's ``samples`` config splits it into what the model answered and what ran.
_ANSWER_FIELDS = (
    _PROBLEM_FIELDS  # the problem, without its reference solution
    + [_REFERENCE_TIME]  # the grader's per-problem limit is computed from it
    + [pa.field("completion", pa.string(), nullable=False,
                metadata={"help": "the text that is run, as a whole program"}),
       pa.field("response", pa.string(), metadata={
           "help": "the model's reply as the backend returned it (stop strings applied), before "
                   "builder.generation.prompts.to_program made it the program in completion (chat: code "
                   "extracted and sanitized); null for answers imported without it"})]
    + GENERATION_FIELDS
    + VERDICT_FIELDS
)
_FREQUENCY_FIELDS = [
    pa.field("error_frequency_problem", pa.float64(),
             metadata={"help": "share of this problem's failed answers with this error type"}),
    pa.field("error_frequency_global", pa.float64(),
             metadata={"help": "share of the split's failed answers with this error type"}),
]

# --- samples: one row per sampled answer, in TRL's prompt/completion/label convention --------------
# Since version 2 (version 1: ``completion`` was the program -- prompt + continuation in completion
# format -- ``passed`` the verdict, ``prompt`` the problem's statement; ``builder.dataset.pairs`` reads
# every version; since 3, chat-format prompt/completion are ``MESSAGES``, see ``conversational``).
# A built dataset fills ``label`` and ``program`` in every row; they are nullable because a reader
# takes a row without ``program`` as version 1 (the grader's own rows are ``ANSWERS``, not these).
_SAMPLE_FIELDS = (
    _PROBLEM_FIELDS[:4]  # problem_id, source, split, kind
    + [pa.field("prompt", pa.string(), nullable=False, metadata={
           "help": "what the model was asked: the problem's prompt (completion format), the official raw prompt "
                   "(official), the user message as [{role: user, content}] (chat); the pairs config's prompt"}),
       pa.field("completion", pa.string(), nullable=False, metadata={
           "help": "what the model answered, alone (never starting with the prompt): the continuation "
                   "(completion), the continuation cut at the official stop strings (official), the reply as "
                   "[{role: assistant, content}] (chat); what the pairs config holds as chosen/rejected"}),
       pa.field("label", pa.bool_(), metadata={"help": "the answer passed every test (TRL's KTO label)"}),
       pa.field("program", pa.string(), metadata={
           "help": "the program that ran: prompt + completion (completion format), the reply's code, "
                   "sanitized (chat), the completion (official)"}),
       pa.field("response", pa.string(), metadata={
           "help": "the model's reply as the backend returned it, only where it differs from completion "
                   "(official format, when the official stop strings cut it); null where completion is the "
                   "reply as it came"})]
    + [f for f in _PROBLEM_FIELDS[5:]]  # test, entry_point, inputs, outputs: to run program again
    + GENERATION_FIELDS
    + [f for f in VERDICT_FIELDS if f.name != "passed"]  # label holds it
    + _FREQUENCY_FIELDS
)

# --- pairs: TRL-ready preference pairs -------------------------------------------------------------
_PAIR_FIELDS = [
    pa.field("problem_id", pa.string(), nullable=False, metadata={"help": "the problem both answers answer"}),
    pa.field("prompt", pa.string(), nullable=False, metadata={
        "help": "what the model was asked (chat: [{role: user, content}])"}),
    pa.field("chosen", pa.string(), nullable=False, metadata={
        "help": "an answer that passed, without the prompt (chat: [{role: assistant, content}])"}),
    pa.field("rejected", pa.string(), nullable=False, metadata={
        "help": "an answer that failed, without the prompt (chat: [{role: assistant, content}])"}),
    pa.field("rejected_error_type", pa.string(), nullable=False, metadata={"help": "the rejected answer's error_type"}),
    pa.field("rejected_error_category", pa.string(), metadata={"help": "the rejected answer's error_category"}),
    pa.field("rejected_error_frequency", pa.float64(), metadata={
        "help": "share of the split's failed answers with the rejected answer's error type (the notebook's)"}),
    pa.field("chosen_sample_index", pa.int32(), metadata={"help": "sample_index of the chosen answer in samples"}),
    pa.field("rejected_sample_index", pa.int32(), metadata={"help": "sample_index of the rejected answer in samples"}),
]

# --- notebook: the error notebook in long form -----------------------------------------------------
_NOTEBOOK_FIELDS = [
    pa.field("scope", pa.string(), nullable=False, metadata={"help": "'global' or 'problem'"}),
    pa.field("problem_id", pa.string(), metadata={"help": "null for scope 'global'"}),
    pa.field("error_type", pa.string(), nullable=False, metadata={"help": "the error type counted"}),
    pa.field("error_category", pa.string(), metadata={"help": "its group (compile, runtime, ...)"}),
    pa.field("count", pa.int64(), nullable=False, metadata={"help": "failed answers with this error type in scope"}),
    pa.field("frequency", pa.float64(), nullable=False, metadata={"help": "count / failed answers in scope"}),
    pa.field("rank", pa.int32(), metadata={"help": "1 = most frequent in scope"}),
]


def _schema(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={"ap2o.schema": name, "ap2o.schema_version": SCHEMA_VERSION})


PROBLEMS = _schema("problems", _PROBLEM_FIELDS + _REFERENCE_FIELDS)
SAMPLES = _schema("samples", _SAMPLE_FIELDS)
ANSWERS = _schema("answers", _ANSWER_FIELDS + _FREQUENCY_FIELDS)
PAIRS = _schema("pairs", _PAIR_FIELDS)
NOTEBOOK = _schema("notebook", _NOTEBOOK_FIELDS)
VERDICT = _schema("verdict", VERDICT_FIELDS)

SCHEMAS = {"problems": PROBLEMS, "samples": SAMPLES, "pairs": PAIRS, "notebook": NOTEBOOK}


class SchemaError(ValueError):
    """A table does not fit a schema. The message names the column."""


def _name(schema: pa.Schema) -> str:
    return schema.metadata.get(b"ap2o.schema", b"?").decode() if schema.metadata else "?"


def conversational(schema: pa.Schema) -> pa.Schema:
    """``schema`` as a chat-format dataset writes it: the config's ``CONVERSATIONAL`` columns typed
    ``MESSAGES`` (help and nullability kept); any other schema unchanged."""
    columns = CONVERSATIONAL.get(_name(schema), {})
    return pa.schema([f.with_type(MESSAGES) if f.name in columns else f for f in schema], metadata=schema.metadata)


def is_conversational(table: pa.Table | pa.Schema, config: str) -> bool:
    """Whether ``table`` holds ``config``'s text columns as message lists (a chat-format dataset)."""
    schema = table if isinstance(table, pa.Schema) else table.schema
    return any(name in schema.names and (pa.types.is_list(schema.field(name).type)
                                           or pa.types.is_large_list(schema.field(name).type))
               for name in CONVERSATIONAL.get(config, {}))


def _layout(table: pa.Table, schema: pa.Schema) -> pa.Schema:
    """The layout of ``schema`` that ``table`` is in: conversational when its text columns are lists."""
    return conversational(schema) if is_conversational(table, _name(schema)) else schema


def required_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if not f.nullable]


def validate(table: pa.Table, schema: pa.Schema, *, required: Iterable[str] | None = None) -> None:
    """Raise ``SchemaError`` naming the first column that is missing, mistyped or null where it
    must not be. Extra columns are allowed (they are the user's). ``required`` overrides the
    schema's non-nullable columns as the set that must be present. A ``samples`` or ``pairs`` table
    may be in either layout (text or ``conversational``), but in one only."""
    name = _name(schema)
    schema = _layout(table, schema)
    must = list(required) if required is not None else required_columns(schema)
    for col in must:
        if col not in table.column_names:
            raise SchemaError(f"{name}: missing required column {col!r} (have: {', '.join(table.column_names)})")
    for field in schema:
        if field.name not in table.column_names:
            continue
        col = table.column(field.name)
        if col.type != field.type and not _castable(col, field.type):
            raise SchemaError(f"{name}: column {field.name!r} has type {col.type}, expected {field.type}")
        if not field.nullable and col.null_count:
            first = col.is_null().to_pylist().index(True)
            raise SchemaError(f"{name}: column {field.name!r} is null in row {first}")


def _castable(col: pa.ChunkedArray, to: pa.DataType) -> bool:
    if pa.types.is_null(col.type):
        return True
    try:
        col.cast(to)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return False


def conform(table: pa.Table, schema: pa.Schema, *, keep_extra: bool = True) -> pa.Table:
    """Cast ``table`` to ``schema``: known columns in schema order and type, missing nullable
    columns filled with nulls, extra columns kept after them (or dropped). Validates first. The
    text columns of a ``conversational`` table stay message lists."""
    validate(table, schema)
    schema = _layout(table, schema)
    arrays, fields = [], []
    for field in schema:
        if field.name in table.column_names:
            arrays.append(table.column(field.name).cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
        fields.append(field)
    if keep_extra:
        for name in table.column_names:
            if schema.get_field_index(name) < 0:
                arrays.append(table.column(name))
                fields.append(table.schema.field(name))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))


def schema_of(table: pa.Table) -> tuple[str | None, str | None]:
    """(name, version) recorded in a table's schema metadata, or (None, None)."""
    meta = table.schema.metadata or {}
    name, version = meta.get(b"ap2o.schema"), meta.get(b"ap2o.schema_version")
    return (name.decode() if name else None, version.decode() if version else None)


__all__ = [
    "SCHEMA_VERSION", "PROBLEM_KINDS", "PROBLEMS", "SAMPLES", "ANSWERS", "PAIRS", "NOTEBOOK", "VERDICT",
    "VERDICT_FIELDS", "GENERATION_FIELDS", "SCHEMAS", "MESSAGES", "CONVERSATIONAL", "SchemaError", "validate",
    "conform", "conversational", "is_conversational", "required_columns", "schema_of",
]
