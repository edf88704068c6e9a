"""The build's configuration: ``BuildConfig`` (one block per stage) and the YAML recipes it is read from.

``BuildConfig`` groups the configs of each stage (``ProblemsConfig``, ``SampleConfig``,
``GraderConfig``, ``PairsConfig``, ``CardConfig``) and the engine's (``EngineConfig``: chunks and
their driver); a YAML recipe has one block per stage, the engine's fields at its top level, and the
command line has one flag per field (``builder.pipeline.configure``). ``resolve_config`` layers
defaults, the recipe (a local file, the embedded default, or a Hub dataset's ``build.yaml``) and
the flags the user typed. ``build.yaml`` in a built dataset is the resolved recipe.

Why a module of its own: what a build *is* (its settings and where they come from) is read by the
orchestration (``builder.pipeline``), by benchmarks and by tests, none of which should need the
orchestration to know it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from builder.dataset.card import BUILD_FILE, CardConfig
from builder.dataset.pairs import PairsConfig
from builder.engine import EngineConfig
from builder.errors import UserError
from builder.flags import build_dataclass, check_types, flag_values
from builder.generation.backends.file import PKG_SCHEME, reconcile
from builder.generation.sample import SampleConfig, typed_settings
from builder.grading.grader import GraderConfig
from builder.problems.sources import ProblemsConfig

# huggingface_hub is imported only to fetch a recipe from the Hub: its HTTP stack costs ~0.1-0.3 s to
# import (seconds cold), and every ap2o-build command imports this module.

RECIPES = pathlib.Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = RECIPES / "humaneval-default.yaml"
BUILD_INFO = "build_info"  # the block of build.yaml the build writes and a recipe reader ignores


@dataclass
class BuildConfig:
    """A whole build: one block per stage, plus how work is chunked, run and kept."""

    problems: ProblemsConfig = field(default_factory=ProblemsConfig, metadata={
        "help": "builder.problems.sources.ProblemsConfig: which problems"})
    sample: SampleConfig = field(default_factory=SampleConfig, metadata={
        "help": "builder.generation.sample.SampleConfig: model, backend, sampling parameters"})
    grader: GraderConfig = field(default_factory=GraderConfig, metadata={
        "help": "builder.grading.grader.GraderConfig: sandbox limits and workers"})
    pairs: PairsConfig = field(default_factory=PairsConfig, metadata={"help": "builder.dataset.pairs.PairsConfig: the pairs filter and cap"})
    card: CardConfig = field(default_factory=CardConfig, metadata={"help": "builder.dataset.card.CardConfig: license, name, repo id"})
    engine: EngineConfig = field(default_factory=EngineConfig, metadata={
        "help": "builder.engine.EngineConfig: problems per chunk, the driver (local or ray); in a recipe, its "
                "fields sit at the top level (chunk_problems, engine, ray_address)"})
    work_dir: str | None = field(default=None, metadata={"help": "where checkpoints go (default: .<output name>.work beside the output)"})
    keep_work: bool = field(default=False, metadata={"help": "keep the checkpoints after a successful build"})

    def to_dict(self) -> dict[str, Any]:
        """The build as a recipe says it: one block per stage, the engine's fields and the rest at
        the top level."""
        out: dict[str, Any] = {g: dataclasses.asdict(getattr(self, g)) for g in GROUPS}
        out.update(self.engine.to_flat())
        out.update(work_dir=self.work_dir, keep_work=self.keep_work)
        return out


GROUPS = ("problems", "sample", "grader", "pairs", "card")
GROUP_CLASSES = {"problems": ProblemsConfig, "sample": SampleConfig, "grader": GraderConfig, "pairs": PairsConfig,
                 "card": CardConfig}
OWN = ("work_dir", "keep_work")  # BuildConfig's own settings (the top level of a recipe, with the engine's)
TOP_LEVEL = (*EngineConfig.FLAT, *OWN)


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
    unknown = sorted(set(data) - set(GROUPS) - set(TOP_LEVEL))
    if unknown:
        raise UserError(f"{path}: unknown block {unknown[0]!r} (known: {', '.join([*GROUPS, *TOP_LEVEL])})")
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
    given = {g: flag_values(args, GROUP_CLASSES[g], g) for g in GROUPS}
    given["sample"] = typed_settings(args, "sample")
    recipe_path = getattr(args, "config", None)
    names_work = {"source"} & set(given["problems"]) or {"backend", "model", "base_url", "completions"} & set(given["sample"])
    if recipe_path is None and not names_work:
        recipe_path = DEFAULT_RECIPE
    recipe = load_recipe(fetch_recipe(recipe_path)) if recipe_path else {g: {} for g in GROUPS}
    where = str(recipe_path or "command line")
    blocks = {g: build_dataclass(GROUP_CLASSES[g], {**recipe[g], **given[g]}, f"{where} [{g}]") for g in GROUPS}
    top = {k: recipe[k] for k in TOP_LEVEL if k in recipe}
    own = {k: v for k, v in top.items() if k in OWN}
    check_types(BuildConfig, own, where)
    own.update({k: v for k, v in vars(args).items() if k in OWN})
    engine = {EngineConfig.FLAT[k]: v for k, v in top.items() if k in EngineConfig.FLAT}
    engine.update(flag_values(args, EngineConfig, "engine"))
    cfg = BuildConfig(**blocks, engine=build_dataclass(EngineConfig, engine, where), **own)
    if cfg.sample.backend == "file" and cfg.sample.completions:
        # what the recipe or the flags state about the answers must agree with the recording;
        # what neither states is taken from it (so build.yaml and the card tell how they were made)
        cfg.sample = reconcile(cfg.sample, set(recipe["sample"]) | set(given["sample"]))
    cfg.sample.validate()
    return cfg


__all__ = ["BUILD_INFO", "DEFAULT_RECIPE", "GROUPS", "GROUP_CLASSES", "RECIPES", "TOP_LEVEL", "BuildConfig",
           "fetch_recipe", "load_recipe", "resolve_config"]
