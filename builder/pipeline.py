"""The ``run`` stage: problems -> sampled answers -> graded samples -> notebook + pairs -> card.

``ap2o-build run --output DIR [--config recipe.yaml] [flags]`` leaves a folder that *is* a Hugging
Face dataset repo. With no recipe, problems or model it builds the embedded default
(``builder/recipes/humaneval-default.yaml``: HumanEval + recorded answers of Qwen2.5-Coder-0.5B-
Instruct through the ``file`` backend), offline, in minutes.

Resumable. Sampling and grading -- the expensive stages -- run in chunks of ``chunk_problems``
problems, each checkpointed as a Parquet file in the work directory (``.<DIR name>.work`` beside
``DIR``) under a key that hashes its *content*: the chunk's problem rows and every setting that
changes its answers (sampling) or verdicts (grading). A build killed at any point (even SIGKILL)
and started again reuses every finished chunk and redoes only the rest, so it ends with the rows
an uninterrupted build writes; change a setting and only the chunks it affects are redone. The
final folder is assembled in a temporary directory beside ``DIR`` and renamed into place, so
``DIR`` is either absent or complete -- never half a dataset.

``BuildConfig`` groups the configs of each stage (``ProblemsConfig``, ``SampleConfig``,
``GraderConfig``, ``PairsConfig``, ``CardConfig``); a YAML recipe has one block per group and the
command line has one flag per field. ``build.yaml`` in the output is the resolved recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

import schemas
from builder import io
from builder.dataset.card import BUILD_FILE, CardConfig, write_card
from builder.engine import content_key, file_digest, grading_settings
from builder.errors import UserError
from builder.flags import add_dataclass_arguments, add_quiet, build_dataclass, flag_values
from builder.dataset.pairs import PairsConfig
from builder.generation.backends.file import PKG_SCHEME, package_reference, resolve_path

RECIPES = pathlib.Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = RECIPES / "humaneval-default.yaml"
BUILD_INFO = "build_info"  # the block of build.yaml the build writes and a recipe reader ignores
# SampleConfig fields the `problems` block owns in a build (one place to name the problem set)
_SAMPLE_FIELDS_FROM_PROBLEMS = ("problems", "split", "limit")
# settings that never change an answer, so they stay out of the sampling checkpoint key (the openai
# backend seeds each answer by (seed, problem, k) whatever the concurrency; batch size and device DO
# change transformers' answers, so they stay in)
_SAMPLE_FIELDS_NOT_IN_KEY = ("concurrency", "max_retries", *_SAMPLE_FIELDS_FROM_PROBLEMS)


# --- the build configuration ---------------------------------------------------------------------

def _grader_config_class() -> type:
    from builder.grading.grader import GraderConfig

    return GraderConfig


def _group_classes() -> dict[str, type]:
    from builder.problems.sources import ProblemsConfig
    from builder.generation.sample import SampleConfig

    return {"problems": ProblemsConfig, "sample": SampleConfig, "grader": _grader_config_class(),
            "pairs": PairsConfig, "card": CardConfig}


def _default(group: str):
    return lambda: _group_classes()[group]()


@dataclass
class BuildConfig:
    """A whole build: one block per stage, plus how work is chunked and kept."""

    problems: Any = field(default_factory=_default("problems"), metadata={"help": "builder.problems.sources.ProblemsConfig: which problems"})
    sample: Any = field(default_factory=_default("sample"), metadata={
        "help": "builder.generation.sample.SampleConfig: model, backend, sampling parameters (its problems/split/limit come from `problems`)"})
    grader: Any = field(default_factory=_default("grader"), metadata={"help": "builder.grading.grader.GraderConfig: sandbox limits and workers"})
    pairs: PairsConfig = field(default_factory=PairsConfig, metadata={"help": "builder.dataset.pairs.PairsConfig: the pairs filter and cap"})
    card: CardConfig = field(default_factory=CardConfig, metadata={"help": "builder.dataset.card.CardConfig: license, name, repo id"})
    chunk_problems: int = field(default=16, metadata={"help": "problems per checkpointed chunk of sampling and grading"})
    work_dir: str | None = field(default=None, metadata={"help": "where checkpoints go (default: .<output name>.work beside the output)"})
    keep_work: bool = field(default=False, metadata={"help": "keep the checkpoints after a successful build"})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        sample = out["sample"]
        for name in _SAMPLE_FIELDS_FROM_PROBLEMS:
            sample.pop(name, None)
        return out


GROUPS = ("problems", "sample", "grader", "pairs", "card")
_TOP_LEVEL = ("chunk_problems", "work_dir", "keep_work")


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """A recipe's blocks as plain dicts. Relative paths in it are resolved against the recipe's
    folder (sample.completions always; problems.source and sample.model when such a path exists,
    as they may also be names), so a recipe travels with its data."""
    path = pathlib.Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such recipe")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a YAML recipe file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable YAML recipe ({e})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the recipe ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe is a mapping of blocks ({', '.join(GROUPS)})")
    data.pop(BUILD_INFO, None)
    unknown = sorted(set(data) - set(GROUPS) - set(_TOP_LEVEL))
    if unknown:
        raise UserError(f"{path}: unknown block {unknown[0]!r} (known: {', '.join([*GROUPS, *_TOP_LEVEL])})")
    for group in GROUPS:
        block = data.get(group) or {}
        if not isinstance(block, dict):
            raise UserError(f"{path}: block {group!r} must be a mapping")
        data[group] = block
    for group, key, always in (("problems", "source", False), ("sample", "completions", True), ("sample", "model", False)):
        value = data[group].get(key)  # source and model may also be names (humaneval, a Hub id)
        if isinstance(value, str) and value.startswith(PKG_SCHEME):
            continue  # a package-relative reference: resolved where the file is opened, on this machine
        if isinstance(value, str) and not os.path.isabs(value) and (always or (path.parent / value).exists()):
            data[group][key] = str((path.parent / value).resolve())
    return data


HF_URL = "hf://datasets/"


def _hub_recipe_location(spec: str) -> tuple[str, str | None, str] | None:
    """(repo id, revision, file) when ``spec`` names a recipe on the Hub: an
    ``hf://datasets/OWNER/NAME[@REVISION][/PATH]`` URL (PATH defaults to build.yaml), or a bare
    ``OWNER/NAME`` dataset repo id that is no local path (its build.yaml); None for a local file."""
    if spec.startswith(HF_URL):
        parts = spec[len(HF_URL):].split("/")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise UserError(f"--config {spec}: expected {HF_URL}OWNER/NAME[@REVISION]/build.yaml")
        name, _, revision = parts[1].partition("@")
        return f"{parts[0]}/{name}", revision or None, "/".join(parts[2:]) or BUILD_FILE
    looks_like_repo = re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", spec) is not None
    if looks_like_repo and not os.path.exists(spec) and not spec.endswith((".yaml", ".yml")):
        return spec, None, BUILD_FILE
    return None


def fetch_recipe(spec: str | os.PathLike, *, endpoint: str | None = None) -> pathlib.Path:
    """A local path for the recipe ``spec`` names: a local file as is, a Hub dataset's
    ``build.yaml`` (repo id or ``hf://`` URL) downloaded with ``huggingface_hub.hf_hub_download``
    (which honours ``HF_ENDPOINT``, ``HF_TOKEN`` and the cache; ``endpoint`` overrides the first).
    A published dataset is thus rebuilt with ``ap2o-build run --config OWNER/NAME``."""
    spec = os.fspath(spec)
    where = _hub_recipe_location(spec)
    if where is None:
        return pathlib.Path(spec)
    repo_id, revision, filename = where
    from huggingface_hub import constants, errors, hf_hub_download

    if constants.is_offline_mode():
        raise UserError(f"--config {spec}: a recipe on the Hub, but HF_HUB_OFFLINE is set (unset it, or pass a local file)")
    try:
        return pathlib.Path(hf_hub_download(repo_id, filename, repo_type="dataset", revision=revision,
                                            endpoint=endpoint))
    except errors.EntryNotFoundError:
        raise UserError(f"--config {spec}: the dataset {repo_id!r} has no {filename}"
                        + (f" at revision {revision!r}" if revision else "")) from None
    except errors.RevisionNotFoundError:
        raise UserError(f"--config {spec}: the dataset {repo_id!r} has no revision {revision!r}") from None
    except errors.RepositoryNotFoundError:
        raise UserError(f"--config {spec}: no dataset repo {repo_id!r} on {endpoint or constants.ENDPOINT} "
                        "(or it is private: log in with `hf auth login`)") from None
    except errors.HFValidationError as e:
        raise UserError(f"--config {spec}: {str(e).splitlines()[0]}") from None
    except errors.HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        raise UserError(f"--config {spec}: HTTP {status} from {endpoint or constants.ENDPOINT}") from None
    except (OSError, errors.LocalEntryNotFoundError) as e:
        raise UserError(f"--config {spec}: cannot fetch {filename} from {endpoint or constants.ENDPOINT} "
                        f"({type(e).__name__}); check the network or HF_ENDPOINT") from None


def resolve_config(args: argparse.Namespace) -> BuildConfig:
    """Defaults, then the recipe (``--config``, or the embedded default when the command line
    names no problems and no model), then the flags the user typed."""
    classes = _group_classes()
    given = {g: flag_values(args, classes[g], g) for g in GROUPS}
    if getattr(args, "no_stop", False):  # --no-stop: the empty stop list a repeatable --stop cannot give
        given["sample"]["stop"] = []
    recipe_path = getattr(args, "config", None)
    names_work = {"source"} & set(given["problems"]) or {"backend", "model", "base_url", "completions"} & set(given["sample"])
    if recipe_path is None and not names_work:
        recipe_path = DEFAULT_RECIPE
    recipe = load_recipe(fetch_recipe(recipe_path)) if recipe_path else {g: {} for g in GROUPS}
    where = str(recipe_path or "command line")
    blocks = {}
    for g in GROUPS:
        values = {**recipe[g], **given[g]}
        if g == "sample":
            bad = sorted(set(recipe[g]) & set(_SAMPLE_FIELDS_FROM_PROBLEMS))
            if bad:
                raise UserError(f"{where}: sample.{bad[0]} belongs in the problems block")
        blocks[g] = build_dataclass(classes[g], values, f"{where} [{g}]")
    top = {k: recipe[k] for k in _TOP_LEVEL if k in recipe}
    top.update({k: v for k, v in vars(args).items() if k in _TOP_LEVEL})
    cfg = BuildConfig(**blocks, **top)
    if cfg.chunk_problems < 1:
        raise UserError(f"chunk_problems must be >= 1, got {cfg.chunk_problems}")
    if cfg.sample.backend == "file" and cfg.sample.completions:
        from builder.generation.backends.file import reconcile

        # what the recipe or the flags state about the answers must agree with the recording;
        # what neither states is taken from it (so build.yaml and the card tell how they were made)
        cfg.sample = reconcile(cfg.sample, set(recipe["sample"]) | set(given["sample"]))
    cfg.sample.validate()
    return cfg


# --- checkpointed chunks -------------------------------------------------------------------------

def sampling_key(problems: pa.Table, sample_cfg: Any) -> str:
    """What a chunk's answers depend on: its problem rows and the sampling settings (the
    completions file by content, not by name)."""
    settings = {k: v for k, v in dataclasses.asdict(sample_cfg).items() if k not in _SAMPLE_FIELDS_NOT_IN_KEY}
    settings["completions"] = file_digest(resolve_path(sample_cfg.completions) if sample_cfg.completions else None)
    return content_key("sample", schemas.SCHEMA_VERSION, problems.to_pylist(), settings)


def grading_key(sample_key: str, grader_cfg: Any) -> str:
    """What a chunk's verdicts depend on: its answers and the sandbox limits (not how many workers run them)."""
    return content_key("grade", schemas.SCHEMA_VERSION, sample_key, grading_settings(grader_cfg))


@dataclass
class Chunk:
    index: int
    problems: pa.Table
    sample_path: pathlib.Path
    graded_path: pathlib.Path


def plan_chunks(problems: pa.Table, cfg: BuildConfig, work: pathlib.Path) -> list[Chunk]:
    chunks = []
    for i, start in enumerate(range(0, problems.num_rows, cfg.chunk_problems)):
        part = problems.slice(start, cfg.chunk_problems)
        skey = sampling_key(part, cfg.sample)
        chunks.append(Chunk(i, part, work / "sampled" / f"{skey}.parquet",
                            work / "graded" / f"{grading_key(skey, cfg.grader)}.parquet"))
    return chunks


# --- the build -----------------------------------------------------------------------------------

@dataclass
class BuildResult:
    output: pathlib.Path
    rows: dict[str, dict[str, int]]
    seconds: dict[str, float]
    reused: dict[str, int]
    chunks: int
    samples: pa.Table = field(repr=False)


def _tqdm(**kwargs):
    from tqdm.auto import tqdm

    return tqdm(**kwargs)


def _load_problems(cfg: BuildConfig) -> tuple[pa.Table, dict[str, Any]]:
    from builder.problems.sources import load_problems_with_report

    p = cfg.problems
    table, report = load_problems_with_report(p.source, split=p.split, column_map=p.column_map, kind=p.kind,
                                              drop_untested=p.drop_untested, limit=p.limit, name=p.name,
                                              config=p.config)
    flagged_by_split: dict[str, int] = {}
    for pid in report.flagged_ids:
        s = report.split_of[pid]
        flagged_by_split[s] = flagged_by_split.get(s, 0) + 1
    info = {"total": report.total, "per_split": dict(report.per_split), "flagged_by_split": flagged_by_split,
            "flagged": report.counts(), "dropped": bool(p.drop_untested)}
    return table, info


def _only_recorded(problems: pa.Table, backend: Any) -> pa.Table:
    """With the ``file`` backend, the problems the file has answers for (a recording may cover a
    subset of a benchmark); none at all is the user's mistake."""
    recorded = set(getattr(backend, "answers", {}) or {})
    ids = problems.column("problem_id").to_pylist()
    keep = [pid in recorded for pid in ids]
    if not any(keep):
        raise UserError(f"{backend.path}: none of its problem_ids matches the problems "
                        f"(e.g. file has {next(iter(recorded), '?')!r}, problems have {ids[0]!r})")
    if not all(keep):
        print(f"run: {keep.count(False)} of {len(ids)} problems have no answers in {backend.path}; building the "
              f"other {keep.count(True)}", file=sys.stderr)
    return problems.filter(pa.array(keep))


def _sample_chunks(chunks: list[Chunk], cfg: BuildConfig, backend_box: dict, progress: bool) -> int:
    from builder.generation.sample import build_backend, sample_problems
    from builder.generation.backends import BackendError

    reused = 0
    bar = _tqdm(total=sum(c.problems.num_rows for c in chunks), desc="sample", unit="problem", disable=not progress)
    for chunk in chunks:
        if chunk.sample_path.exists() or chunk.graded_path.exists():  # graded implies sampled
            reused += 1
        else:
            if "backend" not in backend_box:  # a model loads only when some chunk needs it
                backend_box["backend"] = build_backend(cfg.sample)
            try:
                table = sample_problems(chunk.problems, backend_box["backend"], cfg.sample.params(),
                                        cfg.sample.prompt_format, progress=progress,  # the backend's own bar within a chunk
                                        default_stop=cfg.sample.stop is None, sanitize=cfg.sample.sanitize)
            except BackendError as e:
                raise UserError(f"sampling chunk {chunk.index}: {e}") from None
            io.write_parquet(table, chunk.sample_path)
        bar.update(chunk.problems.num_rows)
    bar.close()
    return reused


def _grade_chunks(chunks: list[Chunk], cfg: BuildConfig, progress: bool) -> int:
    todo = [c for c in chunks if not c.graded_path.exists()]
    sizes = {c.index: pq.ParquetFile(c.graded_path if c not in todo else c.sample_path).metadata.num_rows
             for c in chunks}
    bar = _tqdm(total=sum(sizes.values()), desc="execute", unit="answer", disable=not progress)
    bar.update(sum(sizes[c.index] for c in chunks if c not in todo))
    if todo:
        from builder.grading.grader import Grader

        with Grader(cfg.grader) as grader:  # one worker pool for every chunk
            for chunk in todo:
                sampled = pq.read_table(chunk.sample_path)
                verdicts = grader.grade(sampled.to_pylist(), progress=False)
                graded = sampled
                verdict = pa.Table.from_pylist(verdicts, schema=schemas.VERDICT)
                for name in schemas.VERDICT.names:
                    graded = graded.append_column(verdict.schema.field(name), verdict.column(name))
                io.write_parquet(schemas.conform(graded, schemas.ANSWERS), chunk.graded_path)
                bar.update(sizes[chunk.index])
    bar.close()
    return len(chunks) - len(todo)


def _clean_stale_temporaries(output: pathlib.Path) -> None:
    """Remove what a killed build left beside ``output`` (``io.atomic_path`` temporaries)."""
    for stale in output.parent.glob(f".{output.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def build_info(problems_report: dict[str, Any]) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        own = version("ap2o-coder")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        own = "unknown"
    return {"ap2o_coder": own, "schema_version": schemas.SCHEMA_VERSION, "problems_report": problems_report}


def run_build(cfg: BuildConfig, output: str | os.PathLike, *, overwrite: bool = False,
              progress: bool = True) -> BuildResult:
    """Build the dataset folder ``output`` from ``cfg``; resume from checkpoints when present."""
    from builder.dataset.notebook import write_configs

    output = pathlib.Path(output)
    if output.exists() and not overwrite:
        raise UserError(f"{output}: already exists (pass --overwrite to replace it)")
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    problems, report = _load_problems(cfg)
    backend_box: dict[str, Any] = {}
    if cfg.sample.backend == "file":
        from builder.generation.sample import build_backend

        backend_box["backend"] = build_backend(cfg.sample)
        problems = _only_recorded(problems, backend_box["backend"])
    seconds["problems"] = time.monotonic() - t0

    work = pathlib.Path(cfg.work_dir) if cfg.work_dir else output.parent / f".{output.name}.work"
    fresh_work = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    _clean_stale_temporaries(output)
    t = time.monotonic()
    from builder.grading.reference import measure_references  # each problem's reference_cpu_s (time limits)

    problems = measure_references(problems, cfg.grader, work_dir=work, progress=progress)
    seconds["references"] = time.monotonic() - t
    chunks = plan_chunks(problems, cfg, work)
    reused: dict[str, int] = {}
    try:
        t = time.monotonic()
        reused["sample"] = _sample_chunks(chunks, cfg, backend_box, progress)
        seconds["sample"] = time.monotonic() - t
    finally:
        if "backend" in backend_box:
            backend_box["backend"].close()
        if fresh_work and not any(work.rglob("*.parquet")):  # failed before any checkpoint: leave nothing
            shutil.rmtree(work, ignore_errors=True)
    t = time.monotonic()
    reused["execute"] = _grade_chunks(chunks, cfg, progress)
    seconds["execute"] = time.monotonic() - t

    t = time.monotonic()
    samples = pa.concat_tables([pq.read_table(c.graded_path) for c in chunks])
    with io.atomic_path(output) as tmp:
        rows = write_configs(samples, tmp, problems=problems, pairs=cfg.pairs, progress=progress)
        seconds["notebook"] = time.monotonic() - t
        t = time.monotonic()
        recipe = cfg.to_dict()
        recipe.pop("work_dir", None)
        if recipe["sample"].get("completions"):  # the embedded recording by reference, not by this machine's path
            recipe["sample"]["completions"] = package_reference(recipe["sample"]["completions"])
        recipe[BUILD_INFO] = build_info(report)
        (tmp / BUILD_FILE).write_text(
            "# ap2o-build: the resolved configuration of this dataset; `ap2o-build run --config build.yaml`\n"
            "# rebuilds it (the build_info block is written by the build and ignored when read back).\n"
            + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True, width=1000), encoding="utf-8")
        bar = _tqdm(total=1, desc="card", unit="file", disable=not progress)
        write_card(tmp, cfg.card, name=output.name)
        bar.update()
        bar.close()
        seconds["card"] = time.monotonic() - t
    if not cfg.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    seconds["total"] = time.monotonic() - t0
    return BuildResult(output, rows, seconds, reused, len(chunks), samples)


def summary(result: BuildResult) -> str:
    """The closing table: rows per config and split, pass rate, time per stage, reuse."""
    samples = result.samples
    lines = [f"built {result.output}"]
    splits = list(result.rows["samples"])
    passed = samples.column("passed").to_pylist()
    split_col = samples.column("split").to_pylist() if "split" in samples.column_names else ["train"] * len(passed)
    lines.append(f"{'split':12s}{'problems':>10s}{'answers':>10s}{'pass rate':>11s}{'pairs':>10s}")
    for s in splits:
        mine = [p for p, sp in zip(passed, split_col) if (sp or "train") == s]
        rate = sum(mine) / len(mine) if mine else 0.0
        lines.append(f"{s:12s}{result.rows['notebook_by_problem'].get(s, 0):>10,d}{len(mine):>10,d}"
                     f"{rate:>11.1%}{result.rows['pairs'].get(s, 0):>10,d}")
    stages = "  ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    lines.append(f"time: {stages}")
    lines.append(f"chunks: {result.chunks} ({result.reused.get('sample', 0)} sampled and "
                 f"{result.reused.get('execute', 0)} graded ones reused from checkpoints)")
    lines.append(f'load: datasets.load_dataset("{result.output}", "pairs")  |  publish: ap2o-build push {result.output} --repo-id USER/NAME')
    return "\n".join(lines)


# --- command line --------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", required=True, help="dataset folder to create (appears only when complete)")
    parser.add_argument("--config", help="YAML recipe (blocks: problems, sample, grader, pairs, card); flags override it. "
                                         "A local file, or a Hub dataset's build.yaml: OWNER/NAME or "
                                         "hf://datasets/OWNER/NAME[@REVISION]/build.yaml. "
                                         f"Default with no problems/model flags: {DEFAULT_RECIPE.name}")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    add_quiet(parser)
    classes = _group_classes()
    add_dataclass_arguments(parser, classes["problems"], group="problems", rename={"source": "problems"})
    add_dataclass_arguments(parser, classes["sample"], group="sample", exclude=_SAMPLE_FIELDS_FROM_PROBLEMS)
    from builder.generation.sample import add_no_stop

    add_no_stop(parser)
    from builder.grading.grader import COMMAND_LINE

    add_dataclass_arguments(parser, classes["grader"], group="grader", **COMMAND_LINE)
    add_dataclass_arguments(parser, PairsConfig, group="pairs")
    add_dataclass_arguments(parser, CardConfig, group="card")
    top = parser.add_argument_group("build")
    for f in dataclasses.fields(BuildConfig):
        if f.name in _TOP_LEVEL:
            kind = {"chunk_problems": {"type": int}, "work_dir": {"type": str},
                    "keep_work": {"action": argparse.BooleanOptionalAction}}[f.name]
            top.add_argument("--" + f.name.replace("_", "-"), default=argparse.SUPPRESS, help=f.metadata["help"], **kind)


def main(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    result = run_build(cfg, args.output, overwrite=args.overwrite, progress=not args.quiet)
    print(summary(result))
    return 0


__all__ = [
    "DEFAULT_RECIPE",
    "BuildConfig",
    "BuildResult",
    "load_recipe",
    "resolve_config",
    "run_build",
    "summary",
]
