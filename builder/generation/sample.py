"""The ``sample`` stage: ask a model for ``n`` answers to every problem and write one row per answer.

``ap2o-build sample --problems humaneval --backend openai --base-url URL --model M --n 10 --output s.parquet``

The rows are ``schemas.ANSWERS`` without the grader's verdict: the problem, the program to run
(``completion``) and how it was sampled (model, revision, backend, prompt format, sampling
parameters, seed), so that ``ap2o-build grade`` can grade them and anyone can tell later where
each answer came from. ``sample_problems`` is the same step as a function; the dataset pipeline
calls it chunk by chunk.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import yaml

import schemas
from builder.errors import UserError
from builder.flags import add_dataclass_arguments, add_quiet, build_dataclass, flag_values
from builder.generation.backends import (
    AUTO,
    BACKENDS,
    Backend,
    BackendError,
    SamplingParams,
    default_backend,
    get_backend,
)
from builder.generation.backends.file import reconcile
from builder.generation.prompts import (
    COMPLETION,
    PROMPT_FORMATS,
    check_format,
    make_request,
    stop_strings,
    to_program,
)
from builder.io import check_writable, write_parquet
from builder.problems.sources import ProblemsConfig

# The columns a sampled (not yet graded) answer has: ANSWERS minus what the grader and the
# notebook fill in. Derived, not spelled out, so that schemas stays the one place for columns.
_LATER = {f.name for f in schemas.VERDICT_FIELDS} | {"error_frequency_problem", "error_frequency_global"}
SAMPLED = pa.schema([f for f in schemas.ANSWERS if f.name not in _LATER], metadata=schemas.ANSWERS.metadata)
_PROBLEM_COLUMNS = [f.name for f in schemas.PROBLEMS if f.name in SAMPLED.names]


@dataclass
class SampleConfig:
    """How answers are sampled: the model, the backend that reaches it and the sampling parameters.
    The CLI flags and a recipe's ``sample:`` block map onto it; which problems are asked is
    ``builder.problems.sources.ProblemsConfig``'s (the ``problems:`` block, ``--problems``)."""

    backend: str = field(default=AUTO, metadata={
        "help": f"sampling backend: {', '.join([AUTO, *BACKENDS])} (auto: vllm when installed, else transformers)",
        "choices": (AUTO, *BACKENDS)})
    model: str | None = field(default=None, metadata={
        "help": "model: a path or Hub id (vllm, transformers), the served model name (openai)"})
    model_revision: str | None = field(default=None, metadata={
        "help": "revision recorded with each answer (and loaded, for vllm/transformers)"})
    base_url: str | None = field(default=None, metadata={
        "help": "openai backend: server URL, e.g. http://127.0.0.1:8080/v1 (API key from $OPENAI_API_KEY)"})
    completions: str | None = field(default=None, metadata={
        "help": "file backend: JSONL/Parquet with problem_id and completion columns"})
    prompt_format: str = field(default=COMPLETION, metadata={
        "help": "completion: the model continues the problem prompt; chat: instruction + fenced prompt; "
                "official: the official AP2O raw prompt and stop strings", "choices": PROMPT_FORMATS})
    sanitize: bool = field(default=True, metadata={
        "help": "chat answers: run only the entry point and what it needs, as EvalPlus does (drops the "
                "model's own self-test harness); the raw reply is kept in the response column"})
    n: int = field(default=100, metadata={"help": "answers per problem (paper: 100)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (paper's exam: 1.0)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    max_new_tokens: int = field(default=1024, metadata={"help": "new tokens per answer (paper: 1024)"})
    seed: int = field(default=0, metadata={"help": "sampling seed, recorded with each answer"})
    stop: list[str] | None = field(default=None, metadata={
        "help": "stop strings (default: the prompt format's, see builder.generation.prompts; [] for none)"})
    batch_size: int = field(default=16, metadata={"help": "transformers backend: sequences per generate call"})
    concurrency: int = field(default=8, metadata={"help": "openai backend: requests in flight"})
    max_retries: int = field(default=6, metadata={
        "help": "openai backend: retries of a request on 429/5xx/connection errors, with exponential back-off"})
    device: str | None = field(default=None, metadata={"help": "transformers backend: torch device (default: cuda if available)"})
    vllm_args: dict[str, Any] | None = field(default=None, metadata={
        "help": "vllm backend: more vllm.LLM arguments, KEY=VALUE, repeatable, values read as YAML "
                "(enforce_eager=true skips the compile warm-up; max_model_len=4096, gpu_memory_utilization=0.8)"})

    def params(self) -> SamplingParams:
        return SamplingParams(n=self.n, temperature=self.temperature, top_p=self.top_p,
                              max_new_tokens=self.max_new_tokens, stop=tuple(self.stop or ()), seed=self.seed)

    def validate(self) -> None:
        check_format(self.prompt_format)
        if self.backend != AUTO and self.backend not in BACKENDS:
            raise UserError(f"unknown backend {self.backend!r} (choose from: {', '.join([AUTO, *BACKENDS])})")
        for name, low in (("n", 1), ("max_new_tokens", 1)):
            if getattr(self, name) < low:
                raise UserError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(self, name)}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise UserError(f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")
        if self.vllm_args and self.backend not in ("vllm", AUTO):
            raise UserError(f"--vllm-args is for --backend vllm, not {self.backend}")


def build_backend(cfg: SampleConfig) -> Backend:
    """The backend ``cfg`` names, with the options that backend takes."""
    name = cfg.backend
    if name == "file":
        if not cfg.completions:
            raise UserError("--backend file needs --completions FILE")
        kwargs: dict[str, Any] = dict(path=cfg.completions, model=cfg.model, model_revision=cfg.model_revision)
    elif name == "openai":
        if not cfg.base_url:
            raise UserError("--backend openai needs --base-url (e.g. http://127.0.0.1:8080/v1)")
        kwargs = dict(base_url=cfg.base_url, model=cfg.model, model_revision=cfg.model_revision,
                      concurrency=cfg.concurrency, max_retries=cfg.max_retries)
    else:
        if not cfg.model:
            raise UserError(f"--backend {name} needs --model (a path or Hub id)")
        kwargs = dict(model=cfg.model, revision=cfg.model_revision)
        if name == "transformers" or (name == AUTO and not _has_vllm()):
            if cfg.vllm_args:
                raise UserError("--vllm-args: vLLM is not installed here (--backend auto picked transformers)")
            kwargs.update(batch_size=cfg.batch_size, device=cfg.device)
        else:
            kwargs.update(vllm_arguments(cfg.vllm_args))
    try:
        return get_backend(name, **kwargs)
    except BackendError as e:
        raise UserError(str(e)) from None


def vllm_arguments(args: dict[str, Any] | None) -> dict[str, Any]:
    """``--vllm-args`` as ``vllm.LLM`` keywords: each value read as YAML (``true`` -> True, ``2``
    -> 2) unless a recipe already gave it typed."""
    return {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in (args or {}).items()}


def _has_vllm() -> bool:
    return default_backend() == "vllm"


def sample_problems(problems: pa.Table, backend: Backend, params: SamplingParams, prompt_format: str = COMPLETION,
                    progress: bool = True, *, default_stop: bool = True, sanitize: bool = True) -> pa.Table:
    """``params.n`` answers to each problem of a ``schemas.PROBLEMS`` table, as a ``SAMPLED`` table
    (problem columns, the program to run, the reply it came from, the generation columns),
    problems in input order. ``sanitize`` is ``builder.generation.prompts.to_program``'s (chat answers).

    When ``params.stop`` is empty and ``default_stop`` is true, each problem gets its prompt
    format's stop strings (``builder.generation.prompts.stop_strings``): problems are sent to the backend in
    one call per distinct stop list (in practice one or two)."""
    check_format(prompt_format)
    try:
        problems = schemas.conform(problems, schemas.PROBLEMS, keep_extra=False)
    except schemas.SchemaError as e:
        raise UserError(f"problems: {e}") from None
    rows = problems.to_pylist()
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, row in enumerate(rows):
        stop = params.stop or (stop_strings(row, prompt_format) if default_stop else ())
        groups.setdefault(tuple(stop), []).append(i)
    answers: list[list[str]] = [[] for _ in rows]
    for stop, idx in groups.items():
        requests = [make_request(rows[i], prompt_format) for i in idx]
        got = backend.generate(requests, dataclasses.replace(params, stop=stop), progress=progress)
        if len(got) != len(requests):
            raise BackendError(f"{backend.name}: returned answers for {len(got)} of {len(requests)} prompts")
        for i, a in zip(idx, got):
            answers[i] = list(a)
    return _rows_table(rows, answers, backend, params, prompt_format, sanitize)


def sample_table(problems: pa.Table, backend: Backend, cfg: SampleConfig, *, progress: bool = True) -> pa.Table:
    """``sample_problems`` with the settings of ``cfg``: what the ``sample`` stage and each chunk of
    the engine run."""
    return sample_problems(problems, backend, cfg.params(), cfg.prompt_format, progress=progress,
                           default_stop=cfg.stop is None, sanitize=cfg.sanitize)


def _rows_table(rows: list[dict], answers: list[list[str]], backend: Backend, params: SamplingParams,
                prompt_format: str, sanitize: bool = True) -> pa.Table:
    cols: dict[str, list] = {name: [] for name in SAMPLED.names}
    generation = dict(model=backend.model, model_revision=backend.model_revision, backend=backend.name,
                      prompt_format=prompt_format, temperature=params.temperature, top_p=params.top_p,
                      max_new_tokens=params.max_new_tokens, seed=params.seed)
    generation.update(backend.provenance)
    recorded_for = getattr(backend, "recorded_for", None)  # the file backend: each row keeps what it recorded
    for row, texts in zip(rows, answers):
        for k, text in enumerate(texts):
            for name in _PROBLEM_COLUMNS:
                cols[name].append(row[name])
            cols["completion"].append(to_program(row, text, prompt_format, sanitize=sanitize))
            cols["response"].append(text)
            cols["sample_index"].append(k)
            values = {**generation, **recorded_for(row["problem_id"], k)} if recorded_for else generation
            for name, value in values.items():
                cols[name].append(value)
    return pa.table(cols, schema=SAMPLED)


# --- command line -------------------------------------------------------------------------------

# the problems block of the stage: which problems (the rest of ProblemsConfig is ap2o-build run's)
PROBLEM_FLAGS = {"group": "problems", "rename": {"source": "problems"},
                 "exclude": tuple(f.name for f in dataclasses.fields(ProblemsConfig)
                                  if f.name not in ("source", "split", "limit"))}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", required=True, help="where to write the samples (.parquet)")
    add_quiet(parser)
    add_dataclass_arguments(parser, ProblemsConfig, **PROBLEM_FLAGS)
    add_dataclass_arguments(parser, SampleConfig)
    add_no_stop(parser)


NO_STOP = "no_stop"


def add_no_stop(parser: argparse.ArgumentParser) -> None:
    """``--no-stop``: an empty stop list, which a repeatable ``--stop`` cannot say."""
    parser.add_argument("--no-stop", "--no_stop", dest=NO_STOP, action="store_true",
                        help="no stop strings at all (answers end at EOS or max-new-tokens)")


def typed_settings(args: argparse.Namespace, group: str | None = None) -> dict:
    """The SampleConfig values the user typed (``--no-stop`` as ``stop: []``): the one place that
    reads ``--no-stop``, for every command that samples."""
    values = flag_values(args, SampleConfig, group)
    if getattr(args, NO_STOP, False):
        values["stop"] = []
    return values


def config_from_args(args: argparse.Namespace) -> SampleConfig:
    """The stage's ``SampleConfig``: the flags the user typed; with the file backend, what they left
    out taken from the recording (``reconcile``), then validated."""
    typed = typed_settings(args)
    cfg = build_dataclass(SampleConfig, typed, "command line")
    if cfg.backend == "file" and cfg.completions:
        cfg = reconcile(cfg, set(typed))  # a flag left out is no claim about the recording
    cfg.validate()
    return cfg


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    which = build_dataclass(ProblemsConfig, flag_values(args, ProblemsConfig, "problems"), "command line")
    if not args.output.endswith(".parquet"):
        raise UserError(f"--output {args.output!r}: must end in .parquet")
    check_writable(args.output, "--output")
    problems = which.load()
    if problems.num_rows == 0:
        raise UserError(f"--problems {which.source!r}: no problems to sample (split={which.split}, limit={which.limit})")
    start = time.monotonic()
    with build_backend(cfg) as backend:
        try:
            table = sample_table(problems, backend, cfg, progress=not args.quiet)
        except BackendError as e:
            raise UserError(str(e)) from None
    write_parquet(table, args.output)
    took = time.monotonic() - start
    print(f"sampled {table.num_rows} answers to {problems.num_rows} problems with {backend.name} "
          f"({backend.model or '?'}) in {took:.0f} s -> {args.output}", file=sys.stderr)
    return 0
