"""The dataset card: ``README.md`` (YAML header + generated statistics) and the error plot.

The card is what makes a folder a Hub dataset repo: its YAML ``configs`` tell ``load_dataset`` and
the dataset viewer where each config's splits are (``pairs`` marked default), and its body tells a
person what the data is, how it was made and what it holds. Everything in it is computed from the
folder itself (the small ``notebook_by_problem``/``notebook`` configs, a few short columns of
``samples``, Parquet metadata, and one batch-by-batch pass over each config for its in-memory size)
plus ``build.yaml``, so ``ap2o-build card FOLDER`` can (re)write it alone.

The template is ``cards/dataset_card.md`` (``string.Template``: ``${name}`` placeholders, no
template engine to install); the tables and sections are generated here. What the card says about a
problem source it knows by name (its Hub id, licence and citation) is in ``cards/sources.yaml``.

The card ends with a stamp (``<!-- ap2o-build card sha256:... -->``, the hash of the text above it)
so that ``push`` can tell a card this module wrote from one a person edited on the Hub since.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import string
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

import cards
import schemas
from builder import io
from builder.dataset import shards
from builder.errors import UserError
from builder.flags import add_dataclass_arguments, dataclass_from_args
from builder.grading import taxonomy

# datasets, huggingface_hub and matplotlib (seconds together) are imported in the functions that
# use them: every ap2o-build command imports this module for CardConfig, few of them write a card.

TEMPLATE = "dataset_card.md"  # in the `cards` package
PLOT_NAME = "error_distribution.png"
BUILD_FILE = "build.yaml"
DEFAULT_CONFIG = "pairs"

# One line per config: the card's configs table and sections read it from here.
CONFIG_HELP = {
    "pairs": "TRL-ready preference pairs: `prompt`, `chosen` (passed), `rejected` (failed) + its error type and frequency",
    "samples": "one row per sampled answer in TRL's prompt/completion/label form: what the model was asked and answered, "
               "whether it passed, the program that ran, how it was sampled, the grader's verdict",
    "notebook": "the error notebook, long form: count, frequency and rank per error type, per split (`scope: global`) and per problem",
    "notebook_by_problem": "the error notebook, wide: one row per problem with answers, passed, pass rate and one count column per error type",
    "problems": "the problems with their tests (after the data-quality filter)",
}
CONFIG_ORDER = ("pairs", "samples", "notebook", "notebook_by_problem", "problems")
PLACEHOLDER_OWNER = "your-username"  # the repo id's owner in a card written without --repo-id
BASE_TAGS = ("code", "preference", "dpo", "error-types", "ap2o")  # on every card; CardConfig.tags adds to them
SOURCES_FILE = "sources.yaml"  # in the `cards` package: Hub id, licence and citation per known source
LICENSE_FILE = "LICENSE.md"  # written with license 'other' and no license_link: what is known of the parts
STAMP = "<!-- ap2o-build card sha256:"  # the card's last line: the hash of the text above it
# How the answers were sampled, per `backend` value of the samples (schemas.GENERATION_FIELDS)
BACKENDS = {"vllm": "vLLM", "transformers": "transformers' generate", "openai": "an OpenAI-compatible server",
            "file": "a file of answers"}
# notebook_by_problem is built per split with one column per error type (builder.dataset.notebook), so its
# fixed columns have no entry in `schemas`; the error-type columns carry their own help.
_WIDE_HELP = {"problem_id": "the problem", "answers": "answers sampled for it", "passed": "answers that passed",
              "failed": "answers that failed", "pass_rate": "passed / answers"}


@dataclass
class CardConfig:
    """What the card says about the dataset that the data itself cannot."""

    license: str = field(default="other", metadata={"help": "license id for the card's YAML (e.g. mit, apache-2.0, cc-by-4.0)"})
    license_name: str | None = field(default=None, metadata={
        "help": "with license 'other': the licence's short name for the card's YAML (lowercase, dashes); "
                "default: 'unspecified'"})
    license_link: str | None = field(default=None, metadata={
        "help": "with license 'other': a URL, or a file in the dataset folder, with the licence's text; "
                f"default: {LICENSE_FILE}, written beside the card with what is known of the parts' licences"})
    pretty_name: str | None = field(default=None, metadata={"help": "title of the card; default: from the folder name"})
    repo_id: str | None = field(default=None, metadata={"help": "Hub repo id used in the card's load_dataset snippets"})
    tags: list[str] = field(default_factory=list, metadata={"help": "extra tags for the card's YAML"})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def known_sources() -> dict[str, dict[str, Any]]:
    """``cards/sources.yaml``: per source name, its title, Hub id, licence and bibtex."""
    return yaml.safe_load(files("cards").joinpath(SOURCES_FILE).read_text(encoding="utf-8"))


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket of ``n`` rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"),
                        (1_000_000_000, "100M<n<1B")):
        if n < limit:
            return name
    return "n>1T" if n >= 10**12 else "1B<n<10B"


def _rows(folder: pathlib.Path, config: str, split: str) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in shards.shard_paths(folder, config, split))


def _read(folder: pathlib.Path, config: str, split: str, columns: list[str] | None = None) -> pl.DataFrame:
    return pl.from_arrow(shards.read_split(folder, config, split, columns=columns))


@dataclass
class Stats:
    """What the card's tables show, per split."""

    splits: list[str]
    configs: dict[str, dict[str, int]]                # config -> split -> rows
    answers: dict[str, int]
    passed: dict[str, int]
    problems_sampled: dict[str, int]
    problems_paired: dict[str, int]
    error_counts: pl.DataFrame                        # error_type, error_category, one count column per split
    models: list[str] = field(default_factory=list)   # the samples' `model` values (who wrote the answers)
    # who wrote the answers and how, as the samples record it: model, model_revision, backend, answers
    provenance: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # the problems' `source` names
    chat: bool = False                                # the text columns are TRL's message lists

def collect_stats(folder: pathlib.Path) -> Stats:
    present = shards.configs(folder)
    for needed in ("samples", "pairs", "notebook", "notebook_by_problem"):
        if needed not in present:
            raise UserError(f"{folder}: no {needed!r} config under data/ (build it with `ap2o-build run` or `ap2o-build notebook`)")
    splits = shards.splits(folder, "samples")
    configs = {c: {s: _rows(folder, c, s) for s in shards.splits(folder, c)} for c in CONFIG_ORDER if c in present}
    answers, passed, sampled, paired = {}, {}, {}, {}
    counts = []
    for s in splits:
        wide = _read(folder, "notebook_by_problem", s, ["problem_id", "answers", "passed"])
        answers[s], passed[s], sampled[s] = int(wide["answers"].sum()), int(wide["passed"].sum()), wide.height
        paired[s] = _read(folder, "pairs", s, ["problem_id"])["problem_id"].n_unique()
        nb = _read(folder, "notebook", s, ["scope", "error_type", "error_category", "count"])
        counts.append(nb.filter(pl.col("scope") == "global").select("error_type", "error_category", pl.col("count").alias(s)))
    errors = pl.DataFrame(schema={"error_type": pl.String, "error_category": pl.String})
    for c in counts:
        errors = errors.join(c, on=["error_type", "error_category"], how="full", coalesce=True)
    errors = errors.fill_null(0)
    if splits:
        errors = errors.with_columns(_total=pl.sum_horizontal(splits)).sort(["_total", "error_type"], descending=[True, False]).drop("_total")
    made = pl.concat([_read(folder, "samples", s, ["model", "model_revision", "backend", "source"]) for s in splits]) \
        if splits else pl.DataFrame(schema={c: pl.String for c in ("model", "model_revision", "backend", "source")})
    models = sorted(m for m in made["model"].unique().to_list() if m)
    provenance = (made.group_by("model", "model_revision", "backend").agg(answers=pl.len())
                  .sort("answers", "model", "model_revision", descending=[True, False, False], nulls_last=True).to_dicts())
    sources = sorted(s for s in made["source"].unique().to_list() if s)
    chat = bool(splits) and schemas.is_conversational(pq.read_schema(shards.shard_paths(folder, "samples", splits[0])[0]),
                                                      "samples")
    return Stats(splits, configs, answers, passed, sampled, paired, errors, models, provenance, sources, chat)


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.1%}" if 0 <= v <= 1 else f"{v:,.2f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _summary_table(st: Stats) -> str:
    rows = []
    for s in st.splits:
        a, p = st.answers[s], st.passed[s]
        rows.append([s, st.problems_sampled[s], a, p, (p / a) if a else 0.0, a - p,
                     st.configs.get("pairs", {}).get(s, 0)])
    return _md_table(["split", "problems", "answers", "passed", "pass rate", "failed", "pairs"], rows)


def _configs_table(st: Stats) -> str:
    rows = [[f"`{c}`" + (" (default)" if c == DEFAULT_CONFIG else ""), CONFIG_HELP.get(c, ""),
             ", ".join(f"{s}: {n:,}" for s, n in st.configs[c].items())] for c in CONFIG_ORDER if c in st.configs]
    return _md_table(["config", "what", "rows per split"], rows)


def _error_table(st: Stats) -> str:
    if st.error_counts.height == 0:
        return "No failed answers."
    rows = [[f"`{r['error_type']}`", r["error_category"] or "", *[int(r[s]) for s in st.splits]]
            for r in st.error_counts.iter_rows(named=True)]
    return _md_table(["error type", "category", *[f"{s} (failed answers)" for s in st.splits]], rows)


def _problems_table(st: Stats, info: dict[str, Any]) -> str:
    quality = (info.get("build_info") or {}).get("problems_report") or {}
    read = quality.get("per_split", {})
    flagged = quality.get("flagged_by_split", {})
    rows = []
    for s in st.splits:
        rows.append([s, read.get(s, "-"), flagged.get(s, 0) if quality else "-",
                     st.configs.get("problems", {}).get(s, st.problems_sampled[s]),
                     st.problems_sampled[s], st.problems_paired[s], st.problems_sampled[s] - st.problems_paired[s]])
    table = _md_table(["split", "read", "dropped (quality)", "in `problems`", "sampled", "kept for pairs",
                       "dropped by the pairs filter"], rows)
    pairs = info.get("pairs") or {}
    notes = [
        ("*Dropped (quality)*: problems whose tests cannot fail an answer (e.g. they never call the entry "
         "point); see `problems_report` in `build.yaml`."),
        (f"*Dropped by the pairs filter*: problems without at least {pairs.get('min_passed', 2)} passed and "
         f"{pairs.get('min_failed', 2)} failed distinct answers (de-duplicated first), as the official merge.py does."),
        ("Problems read but neither dropped nor in `problems` were left out by the recipe's `limit` or, "
         "with recorded answers (the `file` backend), are not covered by the recording."),
    ]
    return table + "\n\n" + "\n".join(f"- {n}" for n in notes)


def _example(folder: pathlib.Path, config: str) -> str:
    split = shards.splits(folder, config)[0]
    paths = shards.shard_paths(folder, config, split)
    table = pq.ParquetFile(paths[0]).read_row_group(0) if pq.ParquetFile(paths[0]).metadata.num_row_groups else None
    if table is None or table.num_rows == 0:
        return "(no rows)"

    def short(v: Any) -> Any:
        if isinstance(v, str) and len(v) > 300:
            return v[:300] + f"... ({len(v):,} characters)"
        if isinstance(v, list):
            return [short(x) for x in v[:5]] + ([f"... ({len(v)} items)"] if len(v) > 5 else [])
        if isinstance(v, dict):
            return {k: short(x) for k, x in v.items()}
        return v
    row = {k: short(v) for k, v in table.slice(0, 1).to_pylist()[0].items()}
    return json.dumps(row, indent=2, ensure_ascii=False, default=str)


def column_help(config: str, field: pa.Field) -> str:
    """What a column means: ``schemas`` (the one place for column docs), else the help the file's
    own schema carries (notebook_by_problem's error-type columns), else the wide notebook's fixed
    columns."""
    known = schemas.SCHEMAS.get(config)
    if known is not None and field.name in known.names:
        meta = known.field(field.name).metadata or {}
        if meta.get(b"help"):
            return meta[b"help"].decode()
    if field.metadata and field.metadata.get(b"help"):
        return field.metadata[b"help"].decode()
    return _WIDE_HELP.get(field.name, "")


def _type_name(tp: pa.DataType) -> str:
    if pa.types.is_list(tp) or pa.types.is_large_list(tp):
        return f"list of {_type_name(tp.value_type)}"
    if pa.types.is_struct(tp):
        return "{" + ", ".join(f"{f.name}: {_type_name(f.type)}" for f in tp) + "}"
    return {"large_string": "string", "bool": "bool"}.get(str(tp), str(tp))


def _columns_table(config: str, schema: pa.Schema) -> str:
    return _md_table(["column", "type", "meaning"],
                     [[f"`{f.name}`", _type_name(f.type), column_help(config, f)] for f in schema])


def schema_columns_table(config: str) -> str:
    """``config``'s column table from ``schemas`` itself, a conversational column's type in both
    layouts: what ``docs/dataset.md`` shows (``scripts/docs_tables.py`` writes it there and
    ``tests/test_docs.py`` checks it has not drifted)."""
    chat = schemas.conversational(schemas.SCHEMAS[config])
    rows = []
    for f in schemas.SCHEMAS[config]:
        kind = _type_name(f.type)
        if chat.field(f.name).type != f.type:
            kind += f"; chat: {_type_name(chat.field(f.name).type)}"
        rows.append([f"`{f.name}`", kind, column_help(config, f)])
    return _md_table(["column", "type", "meaning"], rows)


def _config_sections(folder: pathlib.Path, st: Stats, repo_id: str) -> str:
    out = []
    for c in CONFIG_ORDER:
        if c not in st.configs:
            continue
        splits = list(st.configs[c])
        schema = pq.read_schema(shards.shard_paths(folder, c, splits[0])[0])
        out.append("\n".join([
            f"### `{c}`", "", CONFIG_HELP.get(c, ""), "",
            _columns_table(c, schema), "",
            "```python", "from datasets import load_dataset", "",
            f'ds = load_dataset("{repo_id}", "{c}", split="{splits[0]}")', "```", "",
            f"One record (`{splits[0]}` split, long strings shortened):", "",
            "```json", _example(folder, c), "```", ""]))
    return "\n".join(out)


def source_datasets(info: dict[str, Any]) -> list[str]:
    """The Hub's ``source_datasets``: ``extended|<id>`` for a benchmark on the Hub (its problems,
    with answers and labels added), ``original`` for problems from a local file."""
    source = str((info.get("problems") or {}).get("source") or "")
    hub_id = (known_sources().get(source.lower()) or {}).get("hub_id")
    if hub_id is None and source.count("/") == 1 and not os.path.exists(source) and not source.startswith((".", "/")):
        hub_id = source  # a Hub dataset id
    return [f"extended|{hub_id}"] if hub_id else ["original"]


def _yaml_header(folder: pathlib.Path, st: Stats, cfg: CardConfig, pretty_name: str, info: dict[str, Any]) -> str:
    configs = []
    for c in CONFIG_ORDER:
        if c not in st.configs:
            continue
        entry: dict[str, Any] = {"config_name": c}
        if c == DEFAULT_CONFIG:
            entry["default"] = True
        entry["data_files"] = [{"split": s, "path": shards.split_pattern(c, s)} for s in _listed(st, c)]
        configs.append(entry)
    total = sum(st.answers.values())
    header: dict[str, Any] = {"license": cfg.license}
    if cfg.license == "other":  # the Hub asks which other licence and where its text is; never leave it to guess
        header["license_name"] = cfg.license_name or "unspecified"
        header["license_link"] = cfg.license_link or LICENSE_FILE
    header.update({
        "pretty_name": pretty_name,
        "language": ["en"],
        # problems and tests were written by people; answers by a model; labels by running them
        "language_creators": ["expert-generated", "machine-generated"],
        "annotations_creators": ["machine-generated"],
        "source_datasets": source_datasets(info),
        "task_categories": ["text-generation"],
        "tags": [*BASE_TAGS, *[t for t in cfg.tags if t not in BASE_TAGS]],
        "size_categories": [size_category(total)],
        "configs": configs,
        "dataset_info": _dataset_info(folder, st),
    })
    return yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=1000).rstrip()


def _listed(st: Stats, config: str) -> list[str]:
    """The splits of ``config`` the card lists: those with rows. ``datasets`` cannot load a config
    with an empty split (an empty shard fails with "BatchSize must be greater than 0", none at all
    with "corresponds to no data"), and a build often has one: a validation split where no problem
    got both a passed and a failed answer has no pairs. The empty shard stays on disk (it carries
    the schema); a config empty in every split keeps them all, there is nothing to load anyway."""
    return [s for s, rows in st.configs[config].items() if rows] or list(st.configs[config])


def arrow_nbytes(paths: list[pathlib.Path]) -> int:
    """The in-memory Arrow size of Parquet files as ``datasets`` holds them once loaded: what
    ``Dataset.push_to_hub`` records as a split's ``num_bytes`` (``Dataset._estimate_nbytes``, the
    table's ``nbytes``), not the encoded Parquet size. Read a batch at a time and passed through
    Arrow IPC as ``datasets``' cache files are (which drops the validity buffers of columns without
    nulls that a Parquet read allocates); exact for splits of up to one batch, within a few bytes
    per batch above that (each batch has its own offsets)."""
    total = 0
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_batch(batch)
            total += pa.ipc.open_stream(sink.getvalue()).read_all().nbytes
    return total


def _dataset_info(folder: pathlib.Path, st: Stats) -> list[dict[str, Any]]:
    """The ``dataset_info`` block ``push_to_hub`` would write: features, rows and bytes per split
    (``num_bytes`` the in-memory Arrow size, ``download_size`` the Parquet files').

    Besides telling the viewer and ``load_dataset`` the schema up front, it matters for local use:
    ``datasets`` keys its cache of a local folder on the folder's *name* and the card's YAML, not
    on the files, so without it two builds into folders of the same name (a rebuild, say) would
    read back the first one's cached rows. The sizes here change with the data, and so the key."""
    from datasets import DatasetInfo, Features, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    infos = {}
    for config in CONFIG_ORDER:
        if config not in st.configs:
            continue
        splits, download, schema = SplitDict(), 0, None
        for split in _listed(st, config):
            paths = shards.shard_paths(folder, config, split)
            schema = schema or pq.read_schema(paths[0])
            splits.add(SplitInfo(name=split, num_bytes=arrow_nbytes(paths),
                                 num_examples=sum(pq.ParquetFile(p).metadata.num_rows for p in paths)))
            download += sum(p.stat().st_size for p in paths)
        infos[config] = DatasetInfo(features=Features.from_arrow_schema(schema), splits=splits, config_name=config,
                                    download_size=download, dataset_size=sum(s.num_bytes for s in splits.values()))
    card = DatasetCardData()
    DatasetInfosDict(infos).to_dataset_card_data(card)
    info = card.to_dict()["dataset_info"]
    return info if isinstance(info, list) else [info]


def _build_description(info: dict[str, Any], st: Stats) -> str:
    problems = info.get("problems") or {}
    sample = info.get("sample") or {}
    grader = info.get("grader") or {}
    pairs = info.get("pairs") or {}
    if not info:
        return "No `build.yaml` in the folder: the build configuration is unknown."
    lines = [
        f"- **Problems**: `{problems.get('source', '?')}`"
        + (f", split `{problems['split']}`" if problems.get("split") else "")
        + (", quality-flagged problems dropped" if problems.get("drop_untested", True) else ""),
        (f"- **Answers**: up to {sample.get('n', '?')} per problem, `{sample.get('prompt_format', '?')}` prompt format, "
         f"temperature {sample.get('temperature', '?')}, top-p {sample.get('top_p', '?')}, "
         f"at most {sample.get('max_new_tokens', '?')} new tokens, seed {sample.get('seed', '?')}; "
         + _provenance(info, st)),
        "- **Grading**: the ap2o-coder sandbox, "
        + ", ".join(f"{k} {v}" for k, v in grader.items() if v is not None and not isinstance(v, (dict, list))),
        f"- **Pairs**: at least {pairs.get('min_passed', 2)} passed and {pairs.get('min_failed', 2)} failed distinct "
        f"answers per problem, de-duplication {'on' if pairs.get('dedup', True) else 'off'}, "
        + (f"at most {pairs['max_pairs_per_problem']} pairs per problem (seed {pairs.get('seed', 0)})"
           if pairs.get("max_pairs_per_problem") else "every passed x failed pair"),
    ]
    return "\n".join(lines)


def quantization(revision: str | None) -> str | None:
    """The quantization a model file's name states (``...-q4.gguf`` -> ``Q4``, ``...Q4_K_M.gguf`` ->
    ``Q4_K_M``, ``-f16.gguf`` -> ``F16``), or None: the name is all a recorded revision keeps of it."""
    name = (revision or "").split("@", 1)[0]
    match = re.search(r"(?i)[-_.]((?:i?q\d(?:_[a-z0-9]+)*)|bf16|f16|f32)\.gguf$", name)
    return match.group(1).upper() if match else None


def _model_file(revision: str | None) -> str:
    """A recorded ``model_revision`` in words: a model file (``NAME@sha256:DIGEST``, as
    ``scripts/record_embedded.sh`` passes the GGUF file it serves as ``--model-revision``) with its
    quantization, else a revision (a commit)."""
    if not revision:
        return "no recorded revision"
    name, _, digest = revision.partition("@")
    if not digest:
        return f"revision `{revision}`"
    quant = quantization(name)
    return (f"model file `{name}` (`{digest}`"
            + (f"; {quant}-quantized, not the full-precision weights)" if quant else ")"))


def _provenance(info: dict[str, Any], st: Stats) -> str:
    """Who wrote the answers and how, as every sample row records it (model, revision, backend),
    and how this build got them (the recipe's backend: ``file`` imports a recording)."""
    if not st.provenance:
        return f"from `{_model(info, st) or 'an unrecorded model'}`"
    parts = []
    for p in st.provenance:
        backend = p["backend"] or "unrecorded"
        how = f"`{backend}` backend ({BACKENDS[backend]})" if backend in BACKENDS else f"`{backend}` backend"
        parts.append(f"{p['answers']:,} answers written by `{p['model'] or 'an unrecorded model'}`, "
                     f"{_model_file(p['model_revision'])}, sampled through the {how}")
    text = "; ".join(parts)
    sample = info.get("sample") or {}
    if sample.get("backend") == "file" and any(p["backend"] != "file" for p in st.provenance):
        text += (". This build imported them from that recording with the `file` backend"
                 + (f" (`{sample['completions']}`)" if sample.get("completions") else ""))
    return text


def _model(info: dict[str, Any], st: Stats) -> str | None:
    """Who wrote the answers: the recipe's model, else what the samples record (a file of
    recorded answers names its model per row)."""
    return (info.get("sample") or {}).get("model") or (", ".join(st.models) if st.models else None)


def _origin(info: dict[str, Any], st: Stats) -> str:
    model = _model(info, st)
    source = (info.get("problems") or {}).get("source")
    if not model and not source:
        return ""
    return f"The answers are {f'`{model}`' if model else 'a model'}'s, to the problems of `{source or '?'}`."


def _test_splits(info: dict[str, Any], st: Stats) -> list[str]:
    """The splits whose pairs come from a benchmark's test problems: a split named ``test`` (HumanEval
    has no other), or every split when the recipe picked a test split of its source."""
    chosen = str((info.get("problems") or {}).get("split") or "")
    paired = [s for s in st.splits if st.configs.get("pairs", {}).get(s, 0)]
    return [s for s in paired if "test" in s.lower() or "test" in chosen.lower()]


def _limitations(info: dict[str, Any], st: Stats, cfg: CardConfig) -> str:
    source = (info.get("problems") or {}).get("source") or "the problem source"
    model = _model(info, st) or "the model that wrote them"
    items = []
    tests = _test_splits(info, st)
    if tests:
        items.append(
            f"**Contamination: the pairs of split{'s' if len(tests) > 1 else ''} {', '.join(f'`{s}`' for s in tests)} "
            f"come from the *test* problems of `{source}`.** These are the problems benchmarks score models on "
            "(HumanEval and MBPP, and EvalPlus's HumanEval+ and MBPP+, which extend these very problems; all four "
            "are `ap2o-eval --benchmark` choices). A model trained on these pairs and then evaluated on the same "
            "benchmark has seen the problems and their passing answers: its score is not a held-out result. Use "
            "them to try the pipeline, or train on pairs built from a training split (e.g. `--problems mbpp "
            "--split train`) and evaluate elsewhere.")
    items += [
        ("**A pass means the problem's tests passed**, no more: benchmarks with few tests per problem let some "
         "wrong answers pass (EvalPlus adds tests for this reason), so some `chosen` answers are wrong on inputs "
         "the tests do not try."),
        ("**Error types depend on where the answers ran**: one Python version and the sandbox's limits (see *How "
         "the data was built*). `Timeout` and resource labels near a limit can change on a slower or faster "
         "machine; `runtime_s` is measured, not derived, and differs between runs."),
        (f"**The answers, and so the error distribution, are `{model}`'s**, sampled with the settings below. AP2O "
         "trains a model on its *own* errors: pairs written by one model say little about another model's weak "
         "spots."),
        (f"**Licences**: the problems and tests are `{source}`'s and keep its licence{_source_licences(info, st)}; "
         f"the answers were generated by `{model}` and are subject to that model's terms. The card's `license` "
         f"({cfg.license}) covers what this build adds (labels, error types, the notebook)."),
    ]
    return "\n".join(f"- {item}" for item in items)


def _sources(info: dict[str, Any], st: Stats) -> list[tuple[str, dict[str, Any]]]:
    """The known sources (``cards/sources.yaml``) the problems come from: the problems' ``source``
    names, and the recipe's source when it is a known name."""
    known = known_sources()
    names = [*st.sources, str((info.get("problems") or {}).get("source") or "").lower()]
    return [(n, known[n]) for n in dict.fromkeys(names) if n in known]


def _source_licences(info: dict[str, Any], st: Stats) -> str:
    stated = [f"{entry['title']}: {entry['license']}" for _, entry in _sources(info, st) if entry.get("license")]
    return f" ({'; '.join(stated)})" if stated else ""


def _source_citations(info: dict[str, Any], st: Stats) -> str:
    entries = _sources(info, st)
    if not entries:
        return ""
    titles = " and ".join(entry["title"] for _, entry in entries)
    blocks = "\n".join(entry["bibtex"].strip() + "\n" for _, entry in entries)
    return f"and the source of its problems, {titles}:\n\n```bibtex\n{blocks}```"


def _training_section(st: Stats, info: dict[str, Any], repo_id: str) -> str:
    """How to train on the ``pairs`` and ``samples`` configs with TRL, as loaded (tests/test_card.py
    runs these snippets)."""
    split = next((s for s in st.splits if st.configs.get("pairs", {}).get(s)), st.splits[0] if st.splits else "train")

    wrote = _model(info, st) if len(st.models) <= 1 else None
    model = wrote if wrote and re.fullmatch(r"[\w.-]+/[\w.-]+", wrote) else "MODEL"  # a Hub id, else a placeholder
    form = ("The text columns are TRL's conversational form (message lists), so each trainer applies the "
            "model's chat template." if st.chat else
            "The text columns are plain text (the prompt exactly as the model was asked, the answer without it), so "
            "each trainer tokenizes them as they are, with no chat template.")
    return "\n".join([
        f"{form} " + (f"`{model}` wrote the answers: AP2O trains a model on its *own* errors."
                      if model != "MODEL" else "AP2O trains a model on its *own* errors: `MODEL` is the one that "
                      "wrote the answers."), "",
        ("`pairs` (prompt, chosen, rejected) is TRL's preference format: `DPOTrainer` as below, and TRL's ORPO and "
         "CPO trainers take the same columns:"), "",
        "```python", "from datasets import load_dataset", "from trl import DPOConfig, DPOTrainer", "",
        f'pairs = load_dataset("{repo_id}", "pairs", split="{split}")',
        f'trainer = DPOTrainer(model="{model}", args=DPOConfig(output_dir="dpo"), train_dataset=pairs)',
        "trainer.train()", "```", "",
        ("`samples` (prompt, completion, label) is TRL's unpaired preference format (`KTOTrainer`); its passed "
         "answers are prompt-completion data for `SFTTrainer`:"), "",
        "```python", "from datasets import load_dataset", "from trl import KTOConfig, KTOTrainer, SFTConfig, SFTTrainer", "",
        f'samples = load_dataset("{repo_id}", "samples", split="{split}")',
        f'KTOTrainer(model="{model}", args=KTOConfig(output_dir="kto"), train_dataset=samples).train()',
        'passed = samples.filter(lambda row: row["label"])',
        f'SFTTrainer(model="{model}", args=SFTConfig(output_dir="sft"), train_dataset=passed).train()', "```", "",
        ("`notebook`, `notebook_by_problem` and `problems` are not training rows: they order and re-check them. "
         "ap2o-coder's `ap2o-train` reads `samples`, `notebook` and `problems` to train in AP2O's order (an error "
         "window from rare to frequent types, re-weighted by quizzes):"), "",
        "```bash", f"ap2o-train --dataset {repo_id} --model {model} --method ap2o-l2h --output-dir runs/l2h", "```",
    ])


def card_options(folder: str | os.PathLike) -> CardConfig:
    """The options the folder's current card was written with (licence, name, extra tags, repo id),
    read back from its YAML and snippets, so a card can be rewritten with one option changed
    (``push`` rewrites it with the real repo id) without losing the others."""
    path = pathlib.Path(folder) / "README.md"
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    match = re.match(r"^---\n(.*?)\n---\n", text, flags=re.DOTALL)
    try:
        data = (yaml.safe_load(match.group(1)) if match else None) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: its YAML header does not parse ({str(e).splitlines()[0]})") from None
    repo = re.search(r'load_dataset\("([^"]+)"', text)
    if repo and repo.group(1).startswith(PLACEHOLDER_OWNER + "/"):
        repo = None  # the placeholder of a card written without a repo id: derive it afresh
    tags = [t for t in data.get("tags") or [] if t not in BASE_TAGS]
    link = data.get("license_link")
    return CardConfig(license=data.get("license") or CardConfig.license, license_name=data.get("license_name"),
                      license_link=None if link == LICENSE_FILE else link,  # ours: written again when needed
                      pretty_name=data.get("pretty_name"), repo_id=repo.group(1) if repo else None, tags=tags)


def error_figure(st: Stats, title: str):
    """Horizontal bars: failed answers per error type, one bar per split (most frequent on top),
    each labelled with its count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    errors = st.error_counts.head(20)
    types = errors["error_type"].to_list()[::-1]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.45 * len(types) + 1.2)), dpi=110)
    height = 0.8 / max(len(st.splits), 1)
    for i, s in enumerate(st.splits):
        values = errors[s].to_list()[::-1] if types else []
        ys = [y - (i - (len(st.splits) - 1) / 2) * height for y in range(len(types))]  # first split on top
        bars = ax.barh(ys, values, height=height, label=s)
        ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8)
    ax.set_yticks(range(len(types)), types)
    ax.set_xlabel("failed answers")
    ax.set_title(title)
    if len(st.splits) > 1:
        ax.legend(title="split")
    if not types:
        ax.text(0.5, 0.5, "no failed answers", ha="center", va="center", transform=ax.transAxes)
    ax.grid(axis="x", alpha=0.3)
    ax.margins(x=0.12)  # room for the counts beside the longest bar
    fig.tight_layout()
    return fig


def plot_errors(st: Stats, target: pathlib.Path, title: str) -> None:
    """``error_figure`` as a PNG at ``target``."""
    import matplotlib.pyplot as plt

    fig = error_figure(st, title)
    with io.atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


def read_build_info(folder: pathlib.Path) -> dict[str, Any]:
    path = folder / BUILD_FILE
    if not path.exists():
        return {}
    try:
        info = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not readable YAML ({e})") from None
    return info if isinstance(info, dict) else {}


def write_card(folder: str | os.PathLike, config: CardConfig | None = None, *, name: str | None = None) -> pathlib.Path:
    """Write ``README.md`` and the error plot into ``folder``; return the card's path.

    Card options not given fall back to the ``card:`` block of the folder's ``build.yaml``. ``name``
    is the dataset's folder name when ``folder`` is a temporary one (the default title and repo
    id derive from it)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such dataset folder")
    info = read_build_info(folder)
    recorded = info.get("card") or {}
    given = asdict(config) if config else {}
    merged = {k: (given.get(k) if given.get(k) not in (None, []) else recorded.get(k, v))
              for k, v in asdict(CardConfig()).items()}
    cfg = CardConfig(**merged)
    name = name or folder.resolve().name
    pretty_name = cfg.pretty_name or name.replace("-", " ").replace("_", " ")
    repo_id = cfg.repo_id or f"{PLACEHOLDER_OWNER}/{name}"

    st = collect_stats(folder)
    plot_errors(st, folder / PLOT_NAME, f"{pretty_name}: failed answers per error type")
    build_section = _build_description(info, st)
    if info:  # folded: the recipe is long, and a reader wants the summary above it first
        build_section += ("\n\n<details>\n<summary>The resolved configuration: <code>build.yaml</code> "
                          "(<code>ap2o-build run --config build.yaml</code> rebuilds the data)</summary>\n\n```yaml\n"
                          + (folder / BUILD_FILE).read_text(encoding="utf-8").strip() + "\n```\n\n</details>")

    text = string.Template(files("cards").joinpath(TEMPLATE).read_text(encoding="utf-8")).substitute(
        yaml_header=_yaml_header(folder, st, cfg, pretty_name, info),
        limitations=_limitations(info, st, cfg),
        pretty_name=pretty_name,
        origin=_origin(info, st),
        summary_table=_summary_table(st),
        configs_table=_configs_table(st),
        repo_id=repo_id,
        plot_name=PLOT_NAME,
        error_table=_error_table(st),
        problems_table=_problems_table(st, info),
        build_section=build_section,
        config_sections=_config_sections(folder, st, repo_id),
        training_section=_training_section(st, info, repo_id),
        source_citations=_source_citations(info, st),
        ap2o_citation=cards.ap2o_citation(),
        synthetic_types=", ".join(f"`{t}`" for t in taxonomy.SYNTHETIC_TYPES),
    )
    _write_licence_note(folder, cfg, info, st)
    target = folder / "README.md"
    with io.atomic_path(target) as tmp:
        tmp.write_text(stamp(text), encoding="utf-8")
    return target


def stamp(text: str) -> str:
    """``text`` with its last line the stamp: the sha256 of everything above it."""
    body = text.rstrip("\n") + "\n"
    return f"{body}\n{STAMP}{hashlib.sha256(body.encode()).hexdigest()} -->\n"


def is_stamped(text: str) -> bool:
    """Whether ``text`` is a card as ``write_card`` wrote it: its stamp matches the text above it
    (any edit since, on the Hub or by hand, breaks the match)."""
    head, sep, _ = text.rstrip("\n").rpartition("\n" + STAMP)
    return bool(sep) and stamp(head) == text.rstrip("\n") + "\n"


_LICENCE_MARK = "<!-- written by ap2o-build card: rewritten or removed with the card -->"


def _write_licence_note(folder: pathlib.Path, cfg: CardConfig, info: dict[str, Any], st: Stats) -> None:
    """With ``license: other`` and no link of the user's, ``LICENSE.md`` (the card's ``license_link``)
    says what is known: no licence was chosen, and the parts' own terms. Removed again when the
    card gets a licence; a ``LICENSE.md`` this function did not write is never touched."""
    path = folder / LICENSE_FILE
    ours = not path.exists() or path.read_text(encoding="utf-8", errors="replace").startswith(_LICENCE_MARK)
    if not ours:
        return
    if cfg.license != "other" or cfg.license_link:
        path.unlink(missing_ok=True)
        return
    source = (info.get("problems") or {}).get("source") or ", ".join(st.sources) or "the problem source"
    model = _model(info, st) or "the model that wrote them"
    text = "\n".join([
        _LICENCE_MARK, "", "# Licence", "",
        (f"No licence was chosen for this dataset (`license: other`, `license_name: {cfg.license_name or 'unspecified'}`"
         "): ask its publisher before reusing it beyond what its parts' own terms allow. Its parts:"), "",
        f"- the problems and tests: `{source}`'s, under its licence{_source_licences(info, st)};",
        f"- the answers: generated by `{model}`, subject to that model's terms;",
        "- the labels, error types and error notebook: computed by `ap2o-build` from the two above.", ""])
    with io.atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# --- the `card` stage ----------------------------------------------------------------------------

def configure(parser) -> None:
    parser.add_argument("folder", help="dataset folder (from `ap2o-build run` or `ap2o-build notebook`)")
    add_dataclass_arguments(parser, CardConfig)


def main(args) -> int:
    # build.yaml's card block, then what the current card says, then the flags typed: a flag left
    # out keeps its value (`card --repo-id X` must not reset the licence to the default)
    folder = pathlib.Path(args.folder)
    if folder.is_dir():
        io.check_writable(folder, "folder", kind="into")  # README.md, the plot, maybe LICENSE.md go in it
    base = {k: v for k, v in (read_build_info(folder).get("card") or {}).items() if v not in (None, [])} \
        if folder.is_dir() else {}
    if (folder / "README.md").is_file():
        base.update({k: v for k, v in asdict(card_options(folder)).items() if v not in (None, [])})
    path = write_card(args.folder, dataclass_from_args(CardConfig, args, base=base))
    print(f"wrote {path} and {pathlib.Path(args.folder) / PLOT_NAME}")
    return 0


__all__ = ["CONFIG_HELP", "CardConfig", "arrow_nbytes", "card_options", "collect_stats", "column_help", "is_stamped",
           "known_sources", "quantization", "schema_columns_table", "size_category", "source_datasets", "stamp", "write_card"]
