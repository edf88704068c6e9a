"""The ``run`` stage: problems -> sampled answers -> graded samples -> notebook + pairs -> card.

``ap2o-build run --output DIR [--config recipe.yaml] [flags]`` leaves a folder that *is* a Hugging
Face dataset repo. With no recipe, problems or model it builds the embedded default
(``builder/recipes/humaneval-default.yaml``: HumanEval + recorded answers of Qwen2.5-Coder-0.5B-
Instruct through the ``file`` backend), offline, in minutes.

Resumable. Sampling and grading -- the expensive stages -- go through ``builder.engine``: chunks of
``chunk_problems`` problems, each checkpointed as a Parquet file in the work directory
(``.<DIR name>.work`` beside ``DIR``) under a key that hashes its *content*: the chunk's problem
rows and every setting that changes its answers (sampling) or verdicts (grading). A build killed at
any point (even SIGKILL) and started again reuses every finished chunk and redoes only the rest, so
it ends with the rows an uninterrupted build writes; change a setting and only the chunks it
affects are redone. The final folder is assembled in a temporary directory beside ``DIR`` and
renamed into place, so ``DIR`` is either absent or complete -- never half a dataset.

What a build is (``BuildConfig``, recipes) lives in ``builder.config``; this module orchestrates.
``build.yaml`` in the output is the resolved recipe.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import yaml

import schemas
from builder import engine, io
from builder.config import BUILD_INFO, DEFAULT_RECIPE, GROUPS, BuildConfig, load_recipe, resolve_config
from builder.dataset.assemble import write_configs
from builder.dataset.card import BUILD_FILE, CardConfig, write_card
from builder.dataset.pairs import PairsConfig
from builder.engine import COMMAND_LINE as ENGINE_COMMAND_LINE
from builder.engine import EngineConfig
from builder.errors import UserError
from builder.flags import add_dataclass_arguments, add_quiet, package_version
from builder.generation.backends.file import FileBackend, package_reference
from builder.generation.sample import SampleConfig, add_no_stop, build_backend
from builder.grading.grader import COMMAND_LINE as GRADER_COMMAND_LINE
from builder.grading.grader import GraderConfig
from builder.problems.quality import QualityReport
from builder.problems.sources import ProblemsConfig
from builder.progress import bar as progress_bar

# --- the build -----------------------------------------------------------------------------------

@dataclass
class BuildResult:
    output: pathlib.Path
    rows: dict[str, dict[str, int]]
    seconds: dict[str, float]
    reused: dict[str, int]
    chunks: int
    samples: pa.Table = field(repr=False)
    placement: list[str] = field(default_factory=list)  # --engine ray: which node graded which chunks


def _load_problems(cfg: BuildConfig) -> tuple[pa.Table, dict[str, Any], QualityReport]:
    """The problems, the card's record of the quality report, and the report (whose summary line
    ``run_build`` prints once it knows which problems are built)."""
    table, report = cfg.problems.load_with_report(quiet=True)
    flagged_by_split: dict[str, int] = {}
    for pid in report.flagged_ids:
        s = report.split_of[pid]
        flagged_by_split[s] = flagged_by_split.get(s, 0) + 1
    info = {"total": report.total, "per_split": dict(report.per_split), "flagged_by_split": flagged_by_split,
            "flagged": report.counts(), "dropped": bool(cfg.problems.drop_untested)}
    return table, info, report


def _only_recorded(problems: pa.Table, backend: FileBackend) -> tuple[pa.Table, str]:
    """With the ``file`` backend, the problems the file has answers for (a recording may cover a
    subset of a benchmark: the embedded default's covers HumanEval's first 40), and the words that
    say so; none at all is the user's mistake."""
    recorded = set(getattr(backend, "answers", {}) or {})
    ids = problems.column("problem_id").to_pylist()
    keep = [pid in recorded for pid in ids]
    if not any(keep):
        raise UserError(f"{backend.path}: none of its problem_ids matches the problems "
                        f"(e.g. file has {next(iter(recorded), '?')!r}, problems have {ids[0]!r})")
    note = "" if all(keep) else f" (the ones {pathlib.Path(backend.path).name} has answers for)"
    return problems.filter(pa.array(keep)), note


def _clean_stale_temporaries(output: pathlib.Path) -> None:
    """Remove what a killed build left beside ``output`` (``io.atomic_path`` temporaries)."""
    for stale in output.parent.glob(f".{output.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def build_info(problems_report: dict[str, Any]) -> dict[str, Any]:
    return {"ap2o_coder": package_version(), "schema_version": schemas.SCHEMA_VERSION,
            "problems_report": problems_report}


def run_build(cfg: BuildConfig, output: str | os.PathLike, *, overwrite: bool = False,
              progress: bool = True) -> BuildResult:
    """Build the dataset folder ``output`` from ``cfg``; resume from checkpoints when present."""
    output = pathlib.Path(output)
    if output.exists() and not overwrite:
        raise UserError(f"{output}: already exists (pass --overwrite to replace it)")
    io.check_writable(output, "--output", kind="folder")  # before any work: the folder and work dir go beside it
    if cfg.work_dir:
        io.check_writable(cfg.work_dir, "--work-dir", kind="into")
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    problems, report, quality = _load_problems(cfg)
    backend, note = None, ""  # the engine builds a backend when some chunk needs sampling, except a recording:
    if cfg.sample.backend == "file":  # read now, to build only the problems it answers
        backend = build_backend(cfg.sample)
        problems, note = _only_recorded(problems, backend)
    print(quality.summary(str(cfg.problems.source), kept=problems.num_rows, dropped=cfg.problems.drop_untested)
          + note, file=sys.stderr)
    seconds["problems"] = time.monotonic() - t0

    work = pathlib.Path(cfg.work_dir) if cfg.work_dir else output.parent / f".{output.name}.work"
    fresh_work = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    _clean_stale_temporaries(output)
    t = time.monotonic()
    store = engine.Store(work)
    # each problem's reference_cpu_s (the per-problem time limits), kept in the same store as the chunks
    problems = engine.measure_references(problems, cfg.grader, store=store, progress=progress)
    seconds["references"] = time.monotonic() - t
    tasks = engine.plan(problems, cfg.sample, cfg.grader, cfg.engine.chunk_problems)
    try:
        done = engine.run(tasks, cfg.sample, cfg.grader, store, cfg.engine, backend=backend, progress=progress)
    finally:
        if backend is not None:
            backend.close()
        if fresh_work and not store.any_chunks():  # failed before any checkpoint: leave nothing
            shutil.rmtree(work, ignore_errors=True)
    reused = dict(done.reused)
    seconds.update(done.seconds)

    t = time.monotonic()
    samples = done.table()
    with io.atomic_path(output) as tmp:
        rows = write_configs(samples, tmp, problems=problems, pairs=cfg.pairs, progress=progress)
        seconds["notebook"] = time.monotonic() - t
        t = time.monotonic()
        recipe = cfg.to_dict()
        for how in ("work_dir", "engine", "ray_address"):  # how this machine ran it, not what the dataset is
            recipe.pop(how, None)
        if recipe["sample"].get("completions"):  # the embedded recording by reference, not by this machine's path
            recipe["sample"]["completions"] = package_reference(recipe["sample"]["completions"])
        recipe[BUILD_INFO] = build_info(report)
        (tmp / BUILD_FILE).write_text(
            "# ap2o-build: the resolved configuration of this dataset; `ap2o-build run --config build.yaml`\n"
            "# rebuilds it (the build_info block is written by the build and ignored when read back).\n"
            + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True, width=1000), encoding="utf-8")
        bar = progress_bar(total=1, desc="card", unit="file", disable=not progress)
        write_card(tmp, cfg.card, name=output.name)
        bar.update()
        bar.close()
        seconds["card"] = time.monotonic() - t
    if not cfg.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    seconds["total"] = time.monotonic() - t0
    return BuildResult(output, rows, seconds, reused, len(tasks), samples, done.placement_lines())


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
                 f"{result.reused.get('grade', 0)} graded ones reused from checkpoints)")
    lines.extend(result.placement)
    lines.append(f'load: datasets.load_dataset("{result.output}", "pairs")  |  publish: ap2o-build push {result.output} --repo-id USER/NAME')
    return "\n".join(lines)


# --- command line --------------------------------------------------------------------------------

PRESET = "embedded default build"  # how --help names the values a flagless run takes from DEFAULT_RECIPE


def _flagless_settings() -> dict[str, Any]:
    """What ``ap2o-build run --output DIR`` with no other flag builds with: the embedded default
    recipe, resolved as a run resolves it (the recording supplies the model and its revision)."""
    try:
        return resolve_config(argparse.Namespace()).to_dict()
    except UserError:  # the recording is not readable here: the recipe's own lines still say most
        return load_recipe(DEFAULT_RECIPE)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (f"{parser.description}. With no --config and no problems or model flags it builds the "
                          f"embedded default ({DEFAULT_RECIPE.name}: HumanEval's first 40 problems with 10 recorded "
                          f"answers each), offline; a flag's help shows the value that build uses as '{PRESET}: X' "
                          "where it differs from the flag's own default.")
    parser.add_argument("--output", "-o", required=True, help="dataset folder to create (appears only when complete)")
    parser.add_argument("--config", help="YAML recipe (blocks: problems, sample, grader, pairs, card); flags override it. "
                                         "A local file, or a Hub dataset's build.yaml: OWNER/NAME or "
                                         "hf://datasets/OWNER/NAME[@REVISION]/build.yaml. "
                                         f"Default with no problems/model flags: {DEFAULT_RECIPE.name}")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    add_quiet(parser)
    preset = _flagless_settings()
    shown = {"preset_label": PRESET}
    add_dataclass_arguments(parser, ProblemsConfig, group="problems", rename={"source": "problems"},
                            preset=preset["problems"], **shown)
    add_dataclass_arguments(parser, SampleConfig, group="sample", preset=preset["sample"], **shown)
    add_no_stop(parser)
    add_dataclass_arguments(parser, GraderConfig, group="grader", preset=preset["grader"], **shown, **GRADER_COMMAND_LINE)
    add_dataclass_arguments(parser, PairsConfig, group="pairs", preset=preset["pairs"], **shown)
    add_dataclass_arguments(parser, CardConfig, group="card", preset=preset["card"], **shown)
    engine_preset = {EngineConfig.FLAT[k]: v for k, v in preset.items() if k in EngineConfig.FLAT}
    add_dataclass_arguments(parser, EngineConfig, group="engine", preset=engine_preset, **shown, **ENGINE_COMMAND_LINE)
    # the build's own fields (work dir), undotted: resolve_config reads them at the top level
    add_dataclass_arguments(parser, BuildConfig, exclude=(*GROUPS, "engine"), title="build", preset=preset, **shown)


def main(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    result = run_build(cfg, args.output, overwrite=args.overwrite, progress=not args.quiet)
    print(summary(result))
    return 0


__all__ = ["BuildResult", "configure", "main", "run_build", "summary"]
