"""One ``ap2o-eval`` run: load the benchmark, decide what was left open, sample and grade through
``builder.engine``, write the run folder.

``EvalConfig`` is composed, not copied: its ``sample`` block is a ``SampleConfig`` with the
evaluation's defaults (``EvalSampleConfig``: n = 10, temperature 0.6, max_new_tokens and
prompt_format decided per run) and its ``grader`` block the builder's ``GraderConfig``, so every
sampling and sandbox setting the builder has is an ``ap2o-eval`` flag too, with the same name,
and answers are keyed, made and graded exactly as in a build (the same ``engine.plan``/``run``).
Sampled answers and grades are checkpointed per chunk of problems under ``DIR/.ap2o-cache``
(``sampled/``, ``graded/``), so a rerun (after a crash, or with more problems) redoes only what changed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import schemas
from builder import (
    AUTO,
    CHAT,
    COMPLETION,
    PROMPT_FORMATS,
    Backend,
    BackendError,
    GraderConfig,
    SampleConfig,
    SamplingParams,
    TransformersBackend,
    auto_dtype,
    build_backend,
    check_format,
    check_reachable,
    default_backend,
    default_max_new_tokens,
    engine,
    get_backend,
    io,
    is_benchmark,
    load_benchmark,
    load_causal_lm,
    load_problems_with_report,
    load_tokenizer,
)
from builder.engine import EngineConfig
from builder.errors import UserError
from builder.io import read_rows
from builder.progress import plural
from trainer.evaluation.export import EVALPLUS_FILE, METRICS_FILE, PLUS_SAMPLES_FILE, SAMPLES_FILE, write_run
from trainer.evaluation.metrics import DEFAULT_KS, answers_per_problem, metrics_of, n_text
from trainer.runinfo import BEST, RUN_INFO, best_of, read_run_info

# torch, peft and datasets are imported where an adapter or a Hub dataset is loaded: ap2o-eval
# checks its arguments before them, and a file or openai backend never needs them.

CACHE_DIR = ".ap2o-cache"
BLOCKS = ("sample", "grader", "engine")  # EvalConfig's fields that are configs of their own
AS_TRAINED = ", as trained"  # ends the reason of a prompt format read from the training run or its data


# --- the configuration ---------------------------------------------------------------------------

@dataclass
class EvalSampleConfig(SampleConfig):
    """How answers are sampled (``builder.generation.sample.SampleConfig``) with the evaluation's
    defaults: the paper's temperature 0.6 and n = 10; max_new_tokens and prompt_format left open
    (None) until ``resolve`` decides them for the benchmark and the model."""

    model: str | None = field(default=None, metadata={
        "help": "model path or Hub id (the base model with --adapter; the served name for openai)"})
    prompt_format: str | None = field(default=None, metadata={
        "help": "completion, chat, ... (builder.generation.prompts.PROMPT_FORMATS); default: the trained run's "
                "(ap2o_train.json in --adapter/--model), else --dataset's, else as EvalPlus: chat for "
                "a model with a chat template or the openai backend, completion for a base model",
        "choices": PROMPT_FORMATS})
    n: int = field(default=10, metadata={"help": "answers per problem"})
    temperature: float = field(default=0.6, metadata={"help": "sampling temperature (paper: 0.6)"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "new tokens per answer; default: 1024, the official infer.py's MAX_LEN (L84), LiveCodeBench 1200 "
                "(lcb_runner/runner/parser.py --max_tokens); --paper-budget: the paper's text instead"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})


@dataclass
class EvalConfig:
    """One ``ap2o-eval`` run. Defaults follow the paper's evaluation (temperature 0.6, k = 1, 5, 10)."""

    output: str = field(metadata={"help": "run folder: metrics.json, samples.parquet, evalplus_samples.jsonl"})
    adapter: str | None = field(default=None, metadata={
        "help": "PEFT adapter folder loaded on top of --model (transformers backend); an ap2o-train output folder "
                "gives its best checkpoint (see --checkpoint)"})
    checkpoint: str = field(default="best", metadata={
        "help": "which checkpoint of an ap2o-train output folder (--adapter RUN, or --model RUN for full "
                "fine-tuning) to evaluate: best (RUN/best: the best quiz pass@1, or eval_loss for the official "
                "SFT; what the official infer.py evaluates), final (RUN itself) or a step N (RUN/checkpoint-N)"})
    benchmark: str = field(default="humaneval", metadata={
        "help": "the paper's 'humaneval+', 'mbpp+' (EvalPlus: base and plus tests) or 'livecodebench' "
                "(v6, Feb-Apr 2025); or 'humaneval', 'mbpp', or any problem source builder.problems.sources reads"})
    benchmark_source: str | None = field(default=None, metadata={
        "help": "humaneval+/mbpp+/livecodebench: a local copy (folder) or another Hub id instead of "
                "evalplus/humanevalplus, evalplus/mbppplus, livecodebench/code_generation_lite"})
    dataset: str | None = field(default=None, metadata={
        "help": "the builder dataset the model was trained on (folder or Hub id): its samples' "
                "prompt_format is the default --prompt-format"})
    split: str | None = field(default=None, metadata={
        "help": "split to evaluate (default: 'test' when the benchmark has one, else all)"})
    limit: int | None = field(default=None, metadata={"help": "only the first N problems (quick checks)"})
    k: tuple[int, ...] = field(default=DEFAULT_KS, metadata={"help": "the k of pass@k"})
    paper_budget: bool = field(default=False, metadata={
        "help": "new tokens per answer as the paper's text sets them (MBPP/MBPP+ 512: 'the 512-token budget "
                "constraint on the MBPP benchmark set by EvalPlus'; HumanEval(+) 768, EvalPlus's) instead of the "
                "official infer.py's 1024; --max-new-tokens overrides both"})
    keep_untested: bool = field(default=False, metadata={
        "help": "keep problems whose tests cannot fail an answer (builder.problems.quality.quality_report)"})
    sample: EvalSampleConfig = field(default_factory=EvalSampleConfig, metadata={
        "help": "EvalSampleConfig: model, backend, sampling parameters (flat flags: --model, --n, --temperature, ...)"})
    grader: GraderConfig = field(default_factory=GraderConfig, metadata={
        "help": "builder.grading.grader.GraderConfig: sandbox limits and workers (flat flags: --timeout, --workers, ...)"})
    engine: EngineConfig = field(default_factory=EngineConfig, metadata={
        "help": "builder.engine.EngineConfig: problems per chunk and the driver, as ap2o-build run's (flat flags: "
                "--chunk-problems, --engine, --ray-address)"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    @classmethod
    def from_flat(cls, **values: Any) -> EvalConfig:
        """An ``EvalConfig`` from flat settings, as the command line names them
        (``from_flat(output=..., model=..., n=4, timeout_s=2, engine="ray")``): each goes to its block."""
        own = {f.name for f in dataclasses.fields(cls)} - set(BLOCKS)
        names = {"sample": {f.name for f in dataclasses.fields(EvalSampleConfig)},
                 "grader": {f.name for f in dataclasses.fields(GraderConfig)}, "engine": set(EngineConfig.FLAT)}
        blocks: dict[str, dict[str, Any]] = {"own": {}, "sample": {}, "grader": {}, "engine": {}}
        for name, value in values.items():
            where = "own" if name in own else next((b for b, known in names.items() if name in known), None)
            if where is None:
                raise TypeError(f"EvalConfig has no setting {name!r}")
            blocks[where][name] = value
        return cls(**blocks["own"], sample=EvalSampleConfig(**blocks["sample"]), grader=GraderConfig(**blocks["grader"]),
                   engine=EngineConfig.from_flat(blocks["engine"]))

    def validate(self) -> None:
        s = self.sample
        if s.prompt_format is not None:
            check_format(s.prompt_format)
        if s.n < 1 or (s.max_new_tokens is not None and s.max_new_tokens < 1):
            raise UserError("--n and --max-new-tokens must be >= 1")
        if not self.k or any(k < 1 for k in self.k):
            raise UserError(f"--k must list positive integers, got {','.join(map(str, self.k))}")
        if s.backend == "file" and not s.completions:
            raise UserError("--backend file needs --completions FILE")
        if s.backend not in ("file", "openai") and not s.model:
            raise UserError(f"--backend {s.backend} needs --model")
        if self.adapter and s.backend not in ("transformers", "auto"):
            raise UserError(f"--adapter is loaded with transformers; --backend {s.backend} cannot apply it "
                            "(merge the adapter into the model first)")


# --- one evaluation run ------------------------------------------------------------------------

def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Sample, grade, and write one run folder; return the metrics. Resumable (see module doc)."""
    cfg, checkpoint = resolve_checkpoint(cfg)
    cfg = resolve_base_model(cfg)
    cfg.validate()
    if cfg.sample.backend in ("auto", "transformers", "vllm"):  # a Hub id that cannot be had: one line now
        check_reachable(cfg.sample.model, cfg.sample.model_revision)
    out = pathlib.Path(cfg.output)
    io.check_writable(out, "--output", kind="into")  # before any work, not when the first chunk is saved
    problems, plus = load_eval_benchmark(cfg)
    cfg, format_reason = resolve(cfg, problems)
    s = cfg.sample
    _stage(cfg, f"[1/2] sampling {plural(s.n, 'answer')} to each of {plural(problems.num_rows, 'problem')} "
                f"({cfg.benchmark}) and grading them" + (" on the base tests, then the plus tests" if plus is not None else ""))
    if s.backend == "file":
        _stage(cfg, f"      answers from {s.completions}")
    store = engine.Store(out / CACHE_DIR)
    identity = _identity(cfg)
    tasks = engine.plan(problems, s, cfg.grader, cfg.engine.chunk_problems, identity=identity)
    plus_tasks = [] if plus is None else engine.plan(
        problems, s, cfg.grader, cfg.engine.chunk_problems, identity=identity,
        tests=dict(zip(plus.column("problem_id").to_pylist(), plus.column("test").to_pylist())))
    done = engine.run(tasks + plus_tasks, s, cfg.grader, store, cfg.engine,
                      make_backend=functools.partial(eval_backend, cfg), progress=cfg.progress)
    for line in done.placement_lines():  # where each chunk ran (--engine ray): in the log, never in the rows
        _stage(cfg, "      " + line)
    samples = done.table(tasks)
    if samples.num_rows == 0:
        raise UserError(f"{cfg.benchmark}: no answers were sampled")
    plus_samples = None if plus is None else combine_plus(samples, done.table(plus_tasks))
    _stage(cfg, f"[2/2] writing {out}")
    counted = answers_per_problem(samples, s.n)
    if counted["n"] != s.n:
        print(f"note: {n_text(counted)} answers per problem, not the --n {s.n} asked for "
              "(the backend returned fewer); pass@k uses the real counts", file=sys.stderr)
    metrics = {
        "benchmark": cfg.benchmark, "split": ",".join(sorted(set(problems.column("split").to_pylist()))),
        "model": _single(samples, "model") or s.model, "adapter": cfg.adapter, "checkpoint": checkpoint,
        "backend": _single(samples, "backend") or s.backend,
        "prompt_format": s.prompt_format, "prompt_format_from": format_reason,
        **counted, "k": list(cfg.k), "temperature": s.temperature, "top_p": s.top_p,
        "max_new_tokens": s.max_new_tokens, "seed": s.seed,
        **metrics_of(samples, cfg.k),
    }
    if plus_samples is not None:
        metrics["plus"] = metrics_of(plus_samples, cfg.k)
    write_run(out, samples, metrics, plus_samples)
    plus_file = f", {PLUS_SAMPLES_FILE}" if plus_samples is not None else ""
    _stage(cfg, f"      wrote {out / METRICS_FILE}, {SAMPLES_FILE}{plus_file}, {EVALPLUS_FILE}")
    return metrics


def _identity(cfg: EvalConfig) -> dict[str, Any] | None:
    """What decides the answers besides the problems and the sample block: the adapter, by a
    fingerprint of its files (a retrained adapter saved to the same folder is not the old one)."""
    if not cfg.adapter:
        return None
    return {"adapter": cfg.adapter, "adapter_files": engine.folder_fingerprint(cfg.adapter)}


def eval_backend(cfg: EvalConfig) -> Backend:
    """The backend of a run (a top-level function of a dataclass, so ``functools.partial`` of it
    travels to another process): the base model with the adapter, or what the sample block names."""
    if cfg.adapter:
        return _adapter_backend(cfg)

    return build_backend(cfg.sample)


def _adapter_backend(cfg: EvalConfig):
    """Base model + PEFT adapter, wrapped without merging: the weights evaluated are exactly the
    ones training saved."""
    import torch

    try:
        from peft import PeftModel
    except ImportError:
        raise UserError("--adapter needs peft (pip install -e '.[train]')") from None
    s = cfg.sample
    adapter = pathlib.Path(cfg.adapter)
    if not (adapter / "adapter_config.json").exists():
        raise UserError(f"--adapter {cfg.adapter}: no adapter_config.json (not a PEFT adapter folder)")
    device = s.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        tok_source = cfg.adapter if (adapter / "tokenizer_config.json").exists() else s.model
        tokenizer = load_tokenizer(tok_source)
        # The precision the plain transformers backend picks (fp32 on CPU), so base and adapter
        # runs of the same model differ only by the adapter.
        base = load_causal_lm(s.model, dtype=auto_dtype("auto", device))
        model = PeftModel.from_pretrained(base, cfg.adapter).to(device).eval()
    except (OSError, ValueError, ImportError) as e:
        raise UserError(f"cannot load {s.model!r} with adapter {cfg.adapter!r}: {e}") from None
    return TransformersBackend.from_model(model, tokenizer, batch_size=s.batch_size,
                                          model_id=f"{s.model}+{cfg.adapter}")


# --- grading given answers -----------------------------------------------------------------------

def grade_answers(problems: pa.Table, answers: Mapping[str, Sequence[str]] | Sequence[Sequence[str]], *,
                  prompt_format: str = "completion", grader_config: Any = None, progress: bool = False,
                  model: str | None = None, backend: str = "given", params: Any = None) -> pa.Table:
    """Grade given answers to ``problems`` and return a ``schemas.ANSWERS`` table.

    ``answers`` maps problem id -> answer texts (or is a list aligned with the problems' rows);
    an answer is what a model produced (continuation or chat reply), turned into the program
    that runs by ``builder.generation.prompts.to_program`` exactly as when sampling. Problems without
    answers are skipped. ``model``, ``backend`` and ``params`` (the ``SamplingParams`` the answers
    were drawn with) are recorded in the rows. The rows are made and graded by ``builder.engine``
    itself (in memory), so they cannot drift from a build's."""
    if not isinstance(answers, Mapping):
        ids = problems.column("problem_id").to_pylist()
        if len(ids) != len(answers):
            raise ValueError(f"grade_answers: {len(answers)} answer lists for {len(ids)} problems")
        answers = dict(zip(ids, answers))
    keep = [pid in answers and len(answers[pid]) > 0 for pid in problems.column("problem_id").to_pylist()]
    problems = problems.filter(pa.array(keep, pa.bool_()))
    n = max((len(a) for a in answers.values()), default=1)
    given = GivenAnswers({k: list(v) for k, v in answers.items()}, name=backend, model=model)
    params = dataclasses.replace(params, n=n) if params is not None else SamplingParams(n=n)
    sample_cfg = SampleConfig(model=model, prompt_format=prompt_format, n=n, temperature=params.temperature,
                              top_p=params.top_p, max_new_tokens=params.max_new_tokens, seed=params.seed,
                              stop=list(params.stop))  # given answers: no stop strings to apply
    done = engine.sample_and_grade(problems, sample_cfg, grader_config or GraderConfig(), backend=given,
                                   progress=progress)
    return done.table()


class GivenAnswers(Backend):
    """Answers already in memory, served through the backend interface so that their rows are
    built by the one function that builds rows for real sampling."""

    def __init__(self, answers: dict[str, list[str]], *, name: str, model: str | None) -> None:
        self.answers, self.name, self.model = answers, name, model

    def generate(self, requests: list[Any], params: Any, *, progress: bool = True) -> list[list[str]]:
        return [self.answers[r.key][:params.n] for r in requests]


# --- which checkpoint of a training run ----------------------------------------------------------

def resolve_checkpoint(cfg: EvalConfig) -> tuple[EvalConfig, dict[str, Any] | None]:
    """``cfg`` with ``--adapter`` (or, without one, ``--model``) pointing at the checkpoint to
    evaluate when it names an ``ap2o-train`` output folder, and what was chosen; one line on stderr
    says which. The best checkpoint by default, as the official code evaluates the checkpoint its
    ``save_strategy='best'`` kept; a run that stopped before its first quiz has none, and its final
    model is evaluated, said so."""
    name, folder = ("adapter", cfg.adapter) if cfg.adapter else ("model", cfg.sample.model)
    path, chosen, line = trained_checkpoint(folder, cfg.checkpoint)
    if line:
        print(line, file=sys.stderr)
    if path == folder:
        return cfg, chosen
    if name == "adapter":
        return dataclasses.replace(cfg, adapter=path), chosen
    return dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample, model=path)), chosen


def resolve_base_model(cfg: EvalConfig) -> EvalConfig:
    """``--adapter`` without ``--model``: the base model the adapter was trained on, as its
    ``ap2o_train.json`` records it (``ap2o-train`` writes the model's Hub id, or its absolute path),
    else as PEFT's ``adapter_config.json`` names it (``base_model_name_or_path``); one line says which."""
    if not cfg.adapter or cfg.sample.model:
        return cfg

    adapter = pathlib.Path(cfg.adapter)
    model, source = (read_run_info(adapter) or {}).get("model") if adapter.is_dir() else None, adapter / RUN_INFO
    if not model and (adapter / "adapter_config.json").is_file():
        try:
            model = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
        except (json.JSONDecodeError, UnicodeDecodeError):
            model = None
        source = adapter / "adapter_config.json"
    if not model:
        raise UserError(f"--adapter {cfg.adapter}: give the base model with --model (the folder records none)")
    print(f"model: {model} (the base model, as {source} records it)", file=sys.stderr)
    return dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample, model=str(model)))


def trained_checkpoint(folder: str | None, which: str = "best") -> tuple[str | None, dict[str, Any] | None, str | None]:
    """(folder to load, what was chosen, the line that says so) for ``which`` ('best', 'final' or
    a step) of a training run's output ``folder``; a folder that is no training run is taken as it is."""
    root = pathlib.Path(folder) if folder else None
    info = (read_run_info(root) or {}) if root is not None and root.is_dir() else {}
    steps = sorted(int(c.name.split("-")[1]) for c in root.glob("checkpoint-*") if c.name.split("-")[1].isdigit()) \
        if root is not None and root.is_dir() else []
    if root is None or not (info.get("kind") == "run" or (root / BEST).is_dir() or steps):
        if which != "best":
            raise UserError(f"--checkpoint {which}: {folder or 'the model'} is not an ap2o-train output folder "
                            f"(no {RUN_INFO} of the run, no best/ or checkpoint-N/)")
        return folder, None, None
    if which == "best":
        best = best_of(root)
        if best is not None:
            line = (f"checkpoint: {root / BEST}, the best of the run ({best['metric']} {best['value']:.4g} at step "
                    f"{best['step']}); --checkpoint final or a step for another")
            return str(root / BEST), {"which": "best", "step": best["step"], best["metric"]: best["value"]}, line
        _final_model(root)
        line = (f"checkpoint: {root}, the final model (step {info.get('step', '?')}): the run has no best checkpoint, "
                "it stopped before its first quiz (the official SFT: its first evaluation)")
        return folder, {"which": "final", "step": info.get("step")}, line
    if which == "final":
        _final_model(root)
        return folder, {"which": "final", "step": info.get("step")}, f"checkpoint: {root}, the final model (--checkpoint final)"
    if not which.isdigit():
        raise UserError(f"--checkpoint must be best, final or a step number, got {which!r}")
    if int(which) not in steps:
        raise UserError(f"--checkpoint {which}: no {root}/checkpoint-{which} (steps saved: "
                        f"{', '.join(map(str, steps)) or 'none'})")
    path = root / f"checkpoint-{which}"
    return str(path), {"which": "step", "step": int(which)}, f"checkpoint: {path} (--checkpoint {which})"


def _final_model(root: pathlib.Path) -> None:
    if not any((root / f).exists() for f in ("adapter_config.json", "config.json")):
        raise UserError(f"{root}: no final model (the run did not finish); --checkpoint best or a step")


# --- settings not given: the paper's and the trained run's -------------------------------------

def resolve(cfg: EvalConfig, problems: pa.Table) -> tuple[EvalConfig, str]:
    """``cfg`` with every setting left open decided, and why the prompt format is what it is:

    - ``--backend auto``: vllm when installed, else transformers (transformers with ``--adapter``,
      which only it loads), so the checkpoint keys name the engine that really samples;
    - ``--backend openai`` without ``--model``: the first model the server lists (GET /v1/models);
    - ``max_new_tokens``: the benchmark's budget (``builder.problems.benchmarks.default_max_new_tokens``:
      the official 1,024, or the paper's text with ``--paper-budget``);
    - ``prompt_format``: see ``choose_prompt_format``. One line on stderr says which and why.

    The sample block then passes ``SampleConfig.validate`` like a build's."""
    s = cfg.sample
    changes: dict[str, Any] = {}
    if s.backend == AUTO:
        changes["backend"] = "transformers" if cfg.adapter else default_backend()
    if s.backend == "openai" and not s.model:
        changes["model"] = _served_model(cfg)
        print(f"model: {changes['model']} (the first model {s.base_url} lists)", file=sys.stderr)
    if s.max_new_tokens is None:
        sources = set(problems.column("source").to_pylist())
        changes["max_new_tokens"] = default_max_new_tokens(sources.pop() if len(sources) == 1 else cfg.benchmark,
                                                           paper=cfg.paper_budget)
    cfg = dataclasses.replace(cfg, sample=dataclasses.replace(s, **changes))
    fmt, reason = choose_prompt_format(cfg)
    print(f"prompt format: {fmt} ({reason})", file=sys.stderr)
    if reason.endswith(AS_TRAINED):  # a run of the untrained model would choose by its tokenizer, maybe chat
        print(f"      evaluate the model before training with --prompt-format {fmt} as well, so the two compare "
              "(ap2o-eval compare warns when they differ)", file=sys.stderr)
    cfg = dataclasses.replace(cfg, sample=dataclasses.replace(cfg.sample, prompt_format=fmt))
    cfg.sample.validate()
    return cfg, reason


def _served_model(cfg: EvalConfig) -> str:
    if not cfg.sample.base_url:
        raise UserError("--backend openai needs --base-url (e.g. http://127.0.0.1:8080/v1)")
    try:
        with get_backend("openai", base_url=cfg.sample.base_url, model=None, max_retries=2) as backend:
            return backend.model
    except BackendError as e:
        raise UserError(str(e)) from None


def choose_prompt_format(cfg: EvalConfig) -> tuple[str, str]:
    """The prompt format and the reason, first rule that applies:

    1. ``--prompt-format``;
    2. ``prompt_format`` in ``ap2o_train.json`` of the ``--adapter`` folder, then of the ``--model``
       folder (ap2o-train writes it into every folder it saves): evaluate as trained;
    3. the ``prompt_format`` of the ``samples`` rows of ``--dataset`` (the data it was trained on);
    4. the model, as EvalPlus decides: ``chat`` for a tokenizer with a chat template and for the
       openai backend (EvalPlus's openai provider is chat-only), ``completion`` for a base model;
       for the file backend, the file's ``prompt_format`` column, else ``completion``."""
    if cfg.sample.prompt_format:
        return check_format(cfg.sample.prompt_format), "--prompt-format"
    for flag, folder in (("--adapter", cfg.adapter), ("--model", cfg.sample.model)):
        fmt = trained_prompt_format(folder)
        if fmt:
            return fmt, f"{flag} {folder}: {RUN_INFO}{AS_TRAINED}"
    if cfg.dataset:
        return dataset_prompt_format(cfg.dataset), f"the samples of --dataset {cfg.dataset}{AS_TRAINED}"
    return _model_prompt_format(cfg)


def trained_prompt_format(folder: str | None) -> str | None:
    """``prompt_format`` from ``FOLDER/ap2o_train.json``; None when there is no such file or key."""
    if not folder or not pathlib.Path(folder).is_dir():
        return None
    fmt = (read_run_info(folder) or {}).get("prompt_format")
    if fmt is None:
        return None
    try:
        return check_format(fmt)
    except UserError as e:
        raise UserError(f"{pathlib.Path(folder) / RUN_INFO}: {e}") from None


def dataset_prompt_format(spec: str) -> str:
    """The one ``prompt_format`` of a builder dataset's ``samples`` config (local folder: its
    Parquet files, only that column; otherwise ``datasets.load_dataset(spec, "samples")``)."""
    values = _dataset_formats(spec)
    values.discard(None)
    if not values:
        raise UserError(f"--dataset {spec}: its samples carry no prompt_format; pass --prompt-format")
    if len(values) > 1:
        raise UserError(f"--dataset {spec}: samples mix prompt formats {', '.join(sorted(values))}; "
                        "pass --prompt-format")
    try:
        return check_format(values.pop())
    except UserError as e:
        raise UserError(f"--dataset {spec}: {e}") from None


def _dataset_formats(spec: str) -> set[str | None]:
    path = pathlib.Path(spec).expanduser()
    if path.exists():
        files = sorted(path.glob("data/samples/*.parquet")) if path.is_dir() else []
        if files:
            values: set[str | None] = set()
            for f in files:
                if "prompt_format" not in pq.read_schema(f).names:
                    raise UserError(f"--dataset {spec}: {f.name} has no prompt_format column")
                values |= set(pq.read_table(f, columns=["prompt_format"]).column(0).to_pylist())
            return values
    elif spec.startswith((".", "/", "~")):
        raise UserError(f"--dataset {spec}: no such file or directory")
    import datasets

    try:
        ds = datasets.load_dataset(str(path) if path.exists() else spec, "samples")
    except Exception as e:  # noqa: BLE001 - offline, unknown id, no samples config
        raise UserError(f"--dataset {spec}: cannot read its samples config ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    values = set()
    for split in ds.values():
        if "prompt_format" not in split.column_names:
            raise UserError(f"--dataset {spec}: its samples have no prompt_format column")
        values |= set(split.unique("prompt_format"))
    return values


def _model_prompt_format(cfg: EvalConfig) -> tuple[str, str]:
    backend = default_backend() if cfg.sample.backend == AUTO else cfg.sample.backend
    if backend == "openai":
        return CHAT, "the openai backend: a served model is asked through its chat endpoint, as EvalPlus does"
    if backend == "file":
        table = read_rows(cfg.sample.completions)
        if "prompt_format" in table.column_names:
            values = {v for v in table.column("prompt_format").to_pylist() if v is not None}
            if len(values) == 1:
                fmt = values.pop()
                try:
                    return check_format(fmt), f"the prompt_format column of {cfg.sample.completions}"
                except UserError as e:
                    raise UserError(f"{cfg.sample.completions}: {e}") from None
        return COMPLETION, f"{cfg.sample.completions} does not say; answers are taken as continuations"
    source = cfg.sample.model
    if cfg.adapter and any((pathlib.Path(cfg.adapter) / f).exists() for f in ("tokenizer_config.json", "tokenizer.json")):
        source = cfg.adapter

    try:
        tokenizer = load_tokenizer(source)
    except (OSError, ValueError, ImportError) as e:
        raise UserError(f"cannot read the tokenizer of {source!r} to choose the prompt format "
                        f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if getattr(tokenizer, "chat_template", None):
        return CHAT, f"the tokenizer of {source} has a chat template (an instruct model: chat, as EvalPlus)"
    return COMPLETION, f"the tokenizer of {source} has no chat template (a base model: completion, as EvalPlus)"


# --- base and plus tests ---------------------------------------------------------------------------

def combine_plus(base: pa.Table, plus: pa.Table) -> pa.Table:
    """EvalPlus's rule: an answer passes "plus" only if it passes the base AND the plus tests. A
    row that failed the base tests keeps the base verdict (its error is the base one); the others
    take the plus verdict. Rows of both tables are the same answers in the same order."""
    if base.column("problem_id").to_pylist() != plus.column("problem_id").to_pylist():
        raise ValueError("base and plus grades are not the same answers in the same order")
    base_failed = pc.invert(base.column("passed"))
    out = plus
    for name in schemas.VERDICT.names:
        merged = pc.if_else(base_failed, base.column(name), plus.column(name))
        out = out.set_column(out.schema.get_field_index(name), name, merged)
    return out


def _single(table: pa.Table, column: str) -> str | None:
    values = {v for v in table.column(column).to_pylist() if v is not None}
    return values.pop() if len(values) == 1 else None


def load_eval_benchmark(cfg: EvalConfig) -> tuple[pa.Table, pa.Table | None]:
    """The problems with their (base) tests, and the same problems with the plus tests for the
    EvalPlus benchmarks (None otherwise)."""
    if not is_benchmark(cfg.benchmark):
        return load_eval_problems(cfg), None
    if cfg.split and cfg.split != "test":
        raise UserError(f"--split {cfg.split}: {cfg.benchmark} has only a test split")
    bench = load_benchmark(cfg.benchmark, cfg.benchmark_source, limit=cfg.limit)
    tests = "base and plus tests" if bench.plus is not None else "tests"
    _stage(cfg, f"problems: {cfg.benchmark} ({cfg.benchmark_source or 'Hub'}): evaluating "
                f"{bench.problems.num_rows} on {tests}{f', limit {cfg.limit}' if cfg.limit else ''}")
    return bench.problems, bench.plus


def load_eval_problems(cfg: EvalConfig) -> pa.Table:
    """The benchmark's problems: the requested split, or ``test`` when there is one; problems
    the quality report flags are left out unless ``keep_untested`` (then the count matches the
    benchmark's official one)."""
    problems, report = load_problems_with_report(cfg.benchmark, split=cfg.split, quiet=True,
                                                 drop_untested=not cfg.keep_untested)
    splits = problems.column("split").to_pylist()
    if not cfg.split and "test" in splits:
        problems = problems.filter(pa.array([s == "test" for s in splits]))
    if cfg.limit is not None:
        problems = problems.slice(0, cfg.limit)
    if problems.num_rows == 0:
        raise UserError(f"{cfg.benchmark}: no problems to evaluate")
    chosen = ",".join(dict.fromkeys(problems.column("split").to_pylist()))
    _stage(cfg, f"{report.summary(cfg.benchmark, dropped=not cfg.keep_untested)}; "
                f"evaluating {problems.num_rows} ({chosen}{f', limit {cfg.limit}' if cfg.limit else ''})")
    return problems


def _stage(cfg: EvalConfig, line: str) -> None:
    if cfg.progress:
        print(line, file=sys.stderr, flush=True)




__all__ = ["CACHE_DIR", "EvalConfig", "EvalSampleConfig", "GivenAnswers", "choose_prompt_format", "combine_plus",
           "dataset_prompt_format", "eval_backend", "evaluate", "grade_answers", "load_eval_benchmark",
           "load_eval_problems", "resolve", "trained_prompt_format"]
