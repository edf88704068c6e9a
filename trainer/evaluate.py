"""``ap2o-eval``: pass@k and error counts per type, for one checkpoint or side by side for several.

The paper judges training by two things (DESIGN step 7): pass@k with the unbiased estimator of
Chen et al. (k = 1, 5, 10 at temperature 0.6) and how many answers fail with each error type
before and after training (its Figure 2). This module produces both from the same pieces the
builder uses -- problems (``builder.problems.sources``), sampling backends (``builder.generation.backends``),
prompts and the grader -- so an evaluation grades answers exactly like the exam that built the
training data.

    ap2o-eval --model PATH --benchmark humaneval --n 10 --k 1,5,10 --output runs/init
    ap2o-eval --model BASE --adapter runs/ap2o/checkpoint-400 --benchmark mbpp_copy --output runs/ap2o
    ap2o-eval --model BASE --adapter runs/ap2o/best --benchmark mbpp+ --output runs/ap2o-mbppplus
    ap2o-eval compare runs/init runs/dpo runs/ap2o --labels Init,DPO,AP2O --output runs/compare

The paper's benchmarks (``humaneval+``, ``mbpp+``, ``livecodebench``) come from
``builder.problems.benchmarks``; for EvalPlus the answers are graded twice, on the base tests and on the
plus tests, and ``metrics.json`` carries the base numbers at its top level and the plus numbers
(pass = base AND plus, EvalPlus's rule) under ``"plus"``. Settings not given follow the paper and
the trained run: see ``resolve``.

A run writes ``metrics.json``, ``samples.parquet`` (``schemas.ANSWERS``; ``samples_plus.parquet``
for the plus grades) and ``evalplus_samples.jsonl`` (``task_id``, ``solution``: the official
EvalPlus evaluator re-scores it). Sampled answers and grades are checkpointed per chunk of problems under ``DIR/.ap2o-cache``,
keyed by the content that determines them, so a rerun (after a crash, or with more problems)
redoes only what changed. ``pass_at_k``, ``error_counts`` and ``grade_answers`` are the pieces
the trainer's quiz reuses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

import schemas
from builder.grading import taxonomy
from builder.engine import content_key, file_digest, grading_settings
from builder.errors import UserError, run_command
from builder.flags import add_dataclass_arguments, add_quiet, dataclass_from_args, first_paragraph
from builder.generation.prompts import PROMPT_FORMATS
from builder.generation.backends.base import Backend  # the interface only: no torch behind it
from trainer.runinfo import RUN_INFO, read_run_info

DEFAULT_KS = (1, 5, 10)
CACHE_DIR = ".ap2o-cache"
METRICS_FILE = "metrics.json"
SAMPLES_FILE = "samples.parquet"
PLUS_SAMPLES_FILE = "samples_plus.parquet"
EVALPLUS_FILE = "evalplus_samples.jsonl"
# EvalPlus spells its task ids "HumanEval/0" and "Mbpp/2"; ours are "<source>/<id>".
EVALPLUS_PREFIX = {"humaneval": "HumanEval", "mbpp": "Mbpp"}


# --- the numbers ---------------------------------------------------------------------------------

def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator of Chen et al. (2021): ``1 - C(n-c, k) / C(n, k)``, the chance that
    at least one of ``k`` answers drawn without replacement from ``n`` (``c`` of them correct)
    passes. Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``, which never forms the huge
    binomials (n = 100, k = 50 overflows a float ratio of them)."""
    if not (0 <= c <= n) or k < 1 or k > n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    if k == 1:  # the pass rate, exactly (the product below telescopes to it with rounding error)
        return c / n
    prob_all_fail = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_fail *= 1.0 - k / i
    return 1.0 - prob_all_fail


def per_problem_counts(samples: pa.Table) -> dict[str, tuple[int, int]]:
    """problem id -> (answers, passed answers), in first-seen order."""
    counts: dict[str, list[int]] = {}
    for pid, passed in zip(samples.column("problem_id").to_pylist(), samples.column("passed").to_pylist()):
        entry = counts.setdefault(pid, [0, 0])
        entry[0] += 1
        entry[1] += bool(passed)
    return {pid: (n, c) for pid, (n, c) in counts.items()}


def pass_at_ks(samples: pa.Table, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float | None]:
    """``{"pass@k": mean over problems}`` for each k. A k larger than some problem's number of
    answers has no unbiased estimate; it is reported as None rather than a biased number."""
    counts = list(per_problem_counts(samples).values())
    out: dict[str, float | None] = {}
    for k in ks:
        if not counts or any(n < k for n, _ in counts):
            out[f"pass@{k}"] = None
        else:
            out[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
    return out


def _failed_types(samples: pa.Table) -> list[str]:
    return [t for t, passed in zip(samples.column("error_type").to_pylist(),
                                   samples.column("passed").to_pylist()) if not passed and t]


def error_counts(samples: pa.Table) -> dict[str, int]:
    """Failed answers per error type (``builder.grading.taxonomy`` names), most frequent first."""
    counts = Counter(_failed_types(samples))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def error_category_counts(samples: pa.Table) -> dict[str, int]:
    """Failed answers per category (compile, runtime, wrong_result, ...), in taxonomy order."""
    counts = Counter(taxonomy.category_of(t) for t in _failed_types(samples))
    return {c: counts[c] for c in taxonomy.CATEGORIES if counts[c]}


def metrics_of(samples: pa.Table, ks: Iterable[int] = DEFAULT_KS) -> dict[str, Any]:
    """Every number of one evaluation: pass@k, pass rate, error counts per type and category."""
    counts = per_problem_counts(samples)
    passed = sum(c for _, c in counts.values())
    return {
        **pass_at_ks(samples, ks),
        "problems": len(counts),
        "samples": samples.num_rows,
        "passed": passed,
        "pass_rate": passed / samples.num_rows if samples.num_rows else None,
        "error_counts": error_counts(samples),
        "error_category_counts": error_category_counts(samples),
    }


# --- grading answers (the quiz's entry point) -----------------------------------------------------

def grade_answers(problems: pa.Table, answers: Mapping[str, Sequence[str]] | Sequence[Sequence[str]], *,
                  prompt_format: str = "completion", grader_config: Any = None, progress: bool = False,
                  model: str | None = None, backend: str = "given", params: Any = None) -> pa.Table:
    """Grade given answers to ``problems`` and return a ``schemas.ANSWERS`` table.

    ``answers`` maps problem id -> answer texts (or is a list aligned with the problems' rows);
    an answer is what a model produced (continuation or chat reply), turned into the program
    that runs by ``builder.generation.prompts.to_program`` exactly as when sampling. Problems without
    answers are skipped. ``model``, ``backend`` and ``params`` (the ``SamplingParams`` the answers
    were drawn with) are recorded in the rows. The rows are built by
    ``builder.generation.sample.sample_problems`` itself, so a quiz's rows cannot drift from a build's."""
    from builder.generation.sample import sample_problems
    from builder.generation.backends import SamplingParams

    if not isinstance(answers, Mapping):
        ids = problems.column("problem_id").to_pylist()
        if len(ids) != len(answers):
            raise ValueError(f"grade_answers: {len(answers)} answer lists for {len(ids)} problems")
        answers = dict(zip(ids, answers))
    keep = [pid in answers and len(answers[pid]) > 0 for pid in problems.column("problem_id").to_pylist()]
    problems = problems.filter(pa.array(keep, pa.bool_()))
    n = max((len(a) for a in answers.values()), default=1)
    given = _GivenAnswers({k: list(v) for k, v in answers.items()}, name=backend, model=model)
    params = dataclasses.replace(params, n=n) if params is not None else SamplingParams(n=n)
    sampled = sample_problems(problems, given, params, prompt_format,
                              progress=False, default_stop=False)
    return grade_sampled(sampled, grader_config, progress=progress)


def grade_sampled(sampled: pa.Table, grader_config: Any = None, *, progress: bool = False) -> pa.Table:
    """Run sampled rows through the builder's grader; a ``schemas.ANSWERS`` table comes back."""
    from builder.grading.grader import GraderConfig, grade_table

    if sampled.num_rows == 0:
        return schemas.ANSWERS.empty_table()
    graded = grade_table(sampled, grader_config or GraderConfig(), progress=progress)
    return schemas.conform(graded, schemas.ANSWERS, keep_extra=False)


class _GivenAnswers(Backend):
    """Answers already in memory, served through the backend interface so that their rows are
    built by the one function that builds rows for real sampling."""

    def __init__(self, answers: dict[str, list[str]], *, name: str, model: str | None) -> None:
        self.answers, self.name, self.model = answers, name, model

    def generate(self, requests: list[Any], params: Any, *, progress: bool = True) -> list[list[str]]:
        return [self.answers[r.key][:params.n] for r in requests]


# --- one evaluation run ------------------------------------------------------------------------

@dataclass
class EvalConfig:
    """One ``ap2o-eval`` run. Defaults follow the paper's evaluation (temperature 0.6, k = 1, 5, 10)."""

    output: str = field(metadata={"help": "run folder: metrics.json, samples.parquet, evalplus_samples.jsonl"})
    model: str | None = field(default=None, metadata={
        "help": "model path or Hub id (the base model with --adapter; the served name for openai)"})
    adapter: str | None = field(default=None, metadata={
        "help": "PEFT adapter folder loaded on top of --model (transformers backend)"})
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
    n: int = field(default=10, metadata={"help": "answers per problem"})
    k: tuple[int, ...] = field(default=DEFAULT_KS, metadata={"help": "the k of pass@k"})
    temperature: float = field(default=0.6, metadata={"help": "sampling temperature (paper: 0.6)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "new tokens per answer; default per benchmark: MBPP/MBPP+ 512 (the paper: 'the 512-token "
                "budget constraint on the MBPP benchmark set by EvalPlus'), HumanEval(+) and other sets 768 (EvalPlus DecoderBase's "
                "max_new_tokens), LiveCodeBench 1200 (lcb_runner/runner/parser.py --max_tokens)"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    backend: str = field(default="auto", metadata={
        "help": "vllm, transformers, openai, file, or auto (vllm when installed, else transformers)",
        "choices": ("auto", "vllm", "transformers", "openai", "file")})
    completions: str | None = field(default=None, metadata={
        "help": "file backend: JSONL/Parquet with problem_id and completion"})
    base_url: str | None = field(default=None, metadata={"help": "openai backend: server URL"})
    prompt_format: str | None = field(default=None, metadata={
        "help": "completion, chat, ... (builder.generation.prompts.PROMPT_FORMATS); default: the trained run's "
                "(ap2o_train.json in --adapter/--model), else --dataset's, else as EvalPlus: chat for "
                "a model with a chat template or the openai backend, completion for a base model",
        "choices": PROMPT_FORMATS})
    batch_size: int = field(default=16, metadata={"help": "transformers: sequences per generate call"})
    device: str | None = field(default=None, metadata={"help": "transformers: torch device"})
    timeout_s: float = field(default=3.0, metadata={"help": "grader: seconds per answer"})
    workers: int | None = field(default=None, metadata={"help": "grader: parallel workers (default: one per core)"})
    keep_untested: bool = field(default=False, metadata={
        "help": "keep problems whose tests cannot fail an answer (builder.problems.quality.quality_report)"})
    chunk_size: int = field(default=16, metadata={
        "help": "problems per checkpointed chunk (a crash loses at most one chunk of work)"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def validate(self) -> None:
        from builder.generation.prompts import check_format

        if self.prompt_format is not None:
            check_format(self.prompt_format)
        if self.n < 1 or self.chunk_size < 1 or (self.max_new_tokens is not None and self.max_new_tokens < 1):
            raise UserError("--n, --chunk-size and --max-new-tokens must be >= 1")
        if not self.k or any(k < 1 for k in self.k):
            raise UserError(f"--k must list positive integers, got {','.join(map(str, self.k))}")
        if self.backend == "file" and not self.completions:
            raise UserError("--backend file needs --completions FILE")
        if self.backend not in ("file", "openai") and not self.model:
            raise UserError(f"--backend {self.backend} needs --model")
        if self.adapter and self.backend not in ("transformers", "auto"):
            raise UserError(f"--adapter is loaded with transformers; --backend {self.backend} cannot apply it "
                            "(merge the adapter into the model first)")


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Sample, grade, and write one run folder; return the metrics. Resumable (see module doc)."""
    cfg.validate()
    out = pathlib.Path(cfg.output)
    problems, plus = load_eval_benchmark(cfg)
    cfg, format_reason = resolve(cfg, problems)
    _stage(cfg, f"[1/3] sampling {cfg.n} answers to each of {problems.num_rows} problems ({cfg.benchmark})")
    sampled, source_model = _sample(cfg, problems, out / CACHE_DIR)
    _stage(cfg, f"[2/3] grading {sampled.num_rows} answers" + (" on the base tests, then the plus tests" if plus else ""))
    samples = _grade(cfg, sampled, out / CACHE_DIR)
    plus_samples = None if plus is None else combine_plus(samples, _grade(cfg, with_tests(sampled, plus), out / CACHE_DIR))
    _stage(cfg, f"[3/3] writing {out}")
    counted = answers_per_problem(samples, cfg.n)
    if counted["n"] != cfg.n:
        print(f"note: {_n_text(counted)} answers per problem, not the --n {cfg.n} asked for "
              "(the backend returned fewer); pass@k uses the real counts", file=sys.stderr)
    metrics = {
        "benchmark": cfg.benchmark, "split": ",".join(sorted(set(problems.column("split").to_pylist()))),
        "model": source_model, "adapter": cfg.adapter, "backend": _single(sampled, "backend") or cfg.backend,
        "prompt_format": cfg.prompt_format, "prompt_format_from": format_reason,
        **counted, "k": list(cfg.k), "temperature": cfg.temperature, "top_p": cfg.top_p,
        "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed,
        **metrics_of(samples, cfg.k),
    }
    if plus_samples is not None:
        metrics["plus"] = metrics_of(plus_samples, cfg.k)
    write_run(out, samples, metrics, plus_samples)
    plus_file = f", {PLUS_SAMPLES_FILE}" if plus_samples is not None else ""
    _stage(cfg, f"      wrote {out / METRICS_FILE}, {SAMPLES_FILE}{plus_file}, {EVALPLUS_FILE}")
    return metrics


def answers_per_problem(samples: pa.Table, requested: int) -> dict[str, Any]:
    """What was really sampled: ``n`` is the answers per problem (None when problems differ, then
    ``n_range`` gives the least and most), ``n_requested`` what --n asked for. A backend may
    return fewer (a completions file with 4 answers, --n 9): the record says 4, not 9."""
    counts = [n for n, _ in per_problem_counts(samples).values()] or [0]
    low, high = min(counts), max(counts)
    record: dict[str, Any] = {"n": low if low == high else None, "n_requested": requested}
    if low != high:
        record["n_range"] = [low, high]
    return record


def _n_text(record: Mapping[str, Any]) -> str:
    if record.get("n") is not None:
        return str(record["n"])
    low, high = record.get("n_range", [None, None])
    return f"{low}-{high}"


# --- settings not given: the paper's and the trained run's -------------------------------------

def resolve(cfg: EvalConfig, problems: pa.Table) -> tuple[EvalConfig, str]:
    """``cfg`` with every setting left open decided, and why the prompt format is what it is:

    - ``--backend openai`` without ``--model``: the first model the server lists (GET /v1/models);
    - ``max_new_tokens``: the benchmark's budget (``builder.problems.benchmarks.default_max_new_tokens``);
    - ``prompt_format``: see ``choose_prompt_format``. One line on stderr says which and why."""
    from builder.problems.benchmarks import default_max_new_tokens

    changes: dict[str, Any] = {}
    if cfg.backend == "openai" and not cfg.model:
        changes["model"] = _served_model(cfg)
        print(f"model: {changes['model']} (the first model {cfg.base_url} lists)", file=sys.stderr)
    if cfg.max_new_tokens is None:
        sources = set(problems.column("source").to_pylist())
        changes["max_new_tokens"] = default_max_new_tokens(sources.pop() if len(sources) == 1 else cfg.benchmark)
    cfg = dataclasses.replace(cfg, **changes)
    fmt, reason = choose_prompt_format(cfg)
    print(f"prompt format: {fmt} ({reason})", file=sys.stderr)
    return dataclasses.replace(cfg, prompt_format=fmt), reason


def _served_model(cfg: EvalConfig) -> str:
    from builder.generation.backends import BackendError, get_backend

    if not cfg.base_url:
        raise UserError("--backend openai needs --base-url (e.g. http://127.0.0.1:8080/v1)")
    try:
        with get_backend("openai", base_url=cfg.base_url, model=None, max_retries=2) as backend:
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
    from builder.generation.prompts import check_format

    if cfg.prompt_format:
        return check_format(cfg.prompt_format), "--prompt-format"
    for flag, folder in (("--adapter", cfg.adapter), ("--model", cfg.model)):
        fmt = trained_prompt_format(folder)
        if fmt:
            return fmt, f"{flag} {folder}: {RUN_INFO}, as trained"
    if cfg.dataset:
        return dataset_prompt_format(cfg.dataset), f"the samples of --dataset {cfg.dataset}, as trained"
    return _model_prompt_format(cfg)


def trained_prompt_format(folder: str | None) -> str | None:
    """``prompt_format`` from ``FOLDER/ap2o_train.json``; None when there is no such file or key."""
    from builder.generation.prompts import check_format

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
    from builder.generation.prompts import check_format

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
    import pyarrow.parquet as pq

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
    from builder.generation.prompts import CHAT, COMPLETION, check_format
    from builder.generation.backends import AUTO, default_backend

    backend = default_backend() if cfg.backend == AUTO else cfg.backend
    if backend == "openai":
        return CHAT, "the openai backend: a served model is asked through its chat endpoint, as EvalPlus does"
    if backend == "file":
        from builder.io import read_rows

        table = read_rows(cfg.completions)
        if "prompt_format" in table.column_names:
            values = {v for v in table.column("prompt_format").to_pylist() if v is not None}
            if len(values) == 1:
                fmt = values.pop()
                try:
                    return check_format(fmt), f"the prompt_format column of {cfg.completions}"
                except UserError as e:
                    raise UserError(f"{cfg.completions}: {e}") from None
        return COMPLETION, f"{cfg.completions} does not say; answers are taken as continuations"
    source = cfg.model
    if cfg.adapter and any((pathlib.Path(cfg.adapter) / f).exists() for f in ("tokenizer_config.json", "tokenizer.json")):
        source = cfg.adapter
    from builder.generation.modelpath import load_tokenizer

    try:
        tokenizer = load_tokenizer(source)
    except (OSError, ValueError, ImportError) as e:
        raise UserError(f"cannot read the tokenizer of {source!r} to choose the prompt format ({e}); "
                        "pass --prompt-format") from None
    if getattr(tokenizer, "chat_template", None):
        return CHAT, f"the tokenizer of {source} has a chat template (an instruct model: chat, as EvalPlus)"
    return COMPLETION, f"the tokenizer of {source} has no chat template (a base model: completion, as EvalPlus)"


# --- base and plus tests ---------------------------------------------------------------------------

def with_tests(sampled: pa.Table, problems: pa.Table) -> pa.Table:
    """``sampled`` with each row's ``test`` replaced by its problem's in ``problems`` (the plus
    tests): the same answers, graded again."""
    tests = dict(zip(problems.column("problem_id").to_pylist(), problems.column("test").to_pylist()))
    column = pa.array([tests[pid] for pid in sampled.column("problem_id").to_pylist()], pa.string())
    return sampled.set_column(sampled.schema.get_field_index("test"), "test", column)


def combine_plus(base: pa.Table, plus: pa.Table) -> pa.Table:
    """EvalPlus's rule: an answer passes "plus" only if it passes the base AND the plus tests. A
    row that failed the base tests keeps the base verdict (its error is the base one); the others
    take the plus verdict. Rows of both tables are the same answers in the same order."""
    import pyarrow.compute as pc

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
    from builder.problems.benchmarks import is_benchmark, load_benchmark

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
    from builder.problems.sources import load_problems_with_report

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


def _chunks(table: pa.Table, size: int) -> list[pa.Table]:
    return [table.slice(i, size) for i in range(0, table.num_rows, size)]


class _Checkpoints:
    """Tables stored under their content key; written atomically, so a killed run leaves either a
    complete chunk or none."""

    def __init__(self, root: pathlib.Path, stage: str) -> None:
        self.dir = root / stage

    def get(self, key: str) -> pa.Table | None:
        import pyarrow.parquet as pq

        path = self.dir / f"{key}.parquet"
        return pq.read_table(path) if path.exists() else None

    def put(self, key: str, table: pa.Table) -> pa.Table:
        from builder.io import write_parquet

        write_parquet(table, self.dir / f"{key}.parquet")
        return table


def _sample(cfg: EvalConfig, problems: pa.Table, cache: pathlib.Path) -> tuple[pa.Table, str | None]:
    """Sampled rows for every problem, chunk by chunk; the model is loaded only if some chunk is
    not already checkpointed."""
    from tqdm.auto import tqdm

    from builder.generation.sample import sample_problems

    params = _sample_config(cfg).params()
    if cfg.backend == "file":
        # Reading a file is no work to save; grading is checkpointed by the answers' content,
        # so an edited or grown completions file still reuses every unchanged chunk's grades.
        with _build_backend(cfg) as backend:
            _stage(cfg, f"      answers from {cfg.completions}")
            sampled = _sampled_or_error(sample_problems, problems, backend, params, cfg)
        return sampled, backend.model or cfg.model
    store = _Checkpoints(cache, "sample")
    identity = _model_identity(cfg)
    backend, done = None, []
    try:
        with tqdm(total=problems.num_rows, desc="sample", unit="problem", disable=not cfg.progress) as bar:
            for chunk in _chunks(problems, cfg.chunk_size):
                key = content_key("sample", identity, params.to_dict(), cfg.prompt_format,
                           chunk.select(["problem_id", "kind", "prompt"]).to_pylist())
                table = store.get(key)
                if table is None:
                    backend = backend or _build_backend(cfg)
                    table = store.put(key, _sampled_or_error(sample_problems, chunk, backend, params, cfg))
                done.append(table)
                bar.update(chunk.num_rows)
    finally:
        if backend is not None:
            backend.close()
    sampled = pa.concat_tables(done, promote_options="permissive") if done else None
    if sampled is None or sampled.num_rows == 0:
        raise UserError(f"{cfg.benchmark}: no answers were sampled")
    return sampled, _single(sampled, "model") or cfg.model


def _sampled_or_error(sample_problems, chunk, backend, params, cfg) -> pa.Table:
    from builder.generation.backends import BackendError

    try:
        return sample_problems(chunk, backend, params, cfg.prompt_format, progress=False)
    except BackendError as e:
        raise UserError(str(e)) from None


def _sample_config(cfg: EvalConfig):
    from builder.generation.sample import SampleConfig

    return SampleConfig(problems=cfg.benchmark, backend=cfg.backend, model=cfg.model, base_url=cfg.base_url,
                        completions=cfg.completions, prompt_format=cfg.prompt_format, n=cfg.n,
                        temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                        seed=cfg.seed, batch_size=cfg.batch_size, device=cfg.device)


def _build_backend(cfg: EvalConfig):
    if cfg.adapter:
        return _adapter_backend(cfg)
    from builder.generation.sample import build_backend

    return build_backend(_sample_config(cfg))


def _adapter_backend(cfg: EvalConfig):
    """Base model + PEFT adapter, wrapped without merging: the weights evaluated are exactly the
    ones training saved."""
    import torch

    from builder.generation.modelpath import load_causal_lm, load_tokenizer
    from builder.generation.backends.transformers import TransformersBackend, _dtype

    try:
        from peft import PeftModel
    except ImportError:
        raise UserError("--adapter needs peft (pip install -e '.[train]')") from None
    adapter = pathlib.Path(cfg.adapter)
    if not (adapter / "adapter_config.json").exists():
        raise UserError(f"--adapter {cfg.adapter}: no adapter_config.json (not a PEFT adapter folder)")
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        tok_source = cfg.adapter if (adapter / "tokenizer_config.json").exists() else cfg.model
        tokenizer = load_tokenizer(tok_source)
        # The precision the plain transformers backend picks (fp32 on CPU), so base and adapter
        # runs of the same model differ only by the adapter.
        base = load_causal_lm(cfg.model, dtype=_dtype("auto", device))
        model = PeftModel.from_pretrained(base, cfg.adapter).to(device).eval()
    except (OSError, ValueError, ImportError) as e:
        raise UserError(f"cannot load {cfg.model!r} with adapter {cfg.adapter!r}: {e}") from None
    return TransformersBackend.from_model(model, tokenizer, batch_size=cfg.batch_size,
                                          model_id=f"{cfg.model}+{cfg.adapter}")


def _model_identity(cfg: EvalConfig) -> dict[str, Any]:
    """What decides the answers besides prompts and sampling parameters: the backend and model,
    with a fingerprint of local weights and completion files so a retrained checkpoint saved to
    the same path is not mistaken for the old one."""
    from builder.generation.backends import AUTO, default_backend

    backend = default_backend() if cfg.backend == AUTO else cfg.backend
    return {"backend": backend, "model": cfg.model, "adapter": cfg.adapter, "base_url": cfg.base_url,
            "batch_size": cfg.batch_size if backend == "transformers" else None,
            "files": [_fingerprint(p) for p in (cfg.model, cfg.adapter, cfg.completions) if p]}


def _fingerprint(path: str) -> Any:
    p = pathlib.Path(path)
    if p.is_file():
        return file_digest(p)
    if p.is_dir():
        return sorted((str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns)
                      for f in p.rglob("*") if f.is_file())
    return None


def _grade(cfg: EvalConfig, sampled: pa.Table, cache: pathlib.Path) -> pa.Table:
    from tqdm.auto import tqdm

    from builder.grading.grader import GraderConfig

    grader_config = GraderConfig(timeout_s=cfg.timeout_s, workers=cfg.workers)
    store = _Checkpoints(cache, "grade")
    done = []
    rows_per_chunk = cfg.chunk_size * cfg.n
    with tqdm(total=sampled.num_rows, desc="grade", unit="answer", disable=not cfg.progress) as bar:
        for chunk in _chunks(sampled, rows_per_chunk):
            key = content_key("grade", grading_settings(grader_config), chunk.select(
                ["problem_id", "kind", "completion", "prompt", "test", "entry_point", "inputs", "outputs"]).to_pylist())
            table = store.get(key)
            if table is None:
                table = store.put(key, grade_sampled(chunk, grader_config, progress=False))
            done.append(table)
            bar.update(chunk.num_rows)
    return schemas.conform(pa.concat_tables(done, promote_options="permissive"), schemas.ANSWERS, keep_extra=False)


# --- writing and showing a run ----------------------------------------------------------------

def write_run(out: pathlib.Path, samples: pa.Table, metrics: Mapping[str, Any],
              plus_samples: pa.Table | None = None) -> None:
    """The run folder's files, each written atomically (metrics last: its presence means the run
    is complete)."""
    from builder.io import atomic_path, write_parquet

    write_parquet(samples, out / SAMPLES_FILE)
    if plus_samples is not None:
        write_parquet(plus_samples, out / PLUS_SAMPLES_FILE)
    with atomic_path(out / EVALPLUS_FILE) as tmp, open(tmp, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in evalplus_rows(samples))
    with atomic_path(out / METRICS_FILE) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")


def evalplus_rows(samples: pa.Table) -> Iterable[dict[str, str]]:
    """EvalPlus's sample format: ``task_id`` in its spelling and ``solution``, the self-contained
    program (chat replies reduced to their code, as EvalPlus's sanitizer would)."""
    extract = _extractor()
    cols = samples.select(["problem_id", "source", "completion", "prompt_format"]).to_pylist()
    for row in cols:
        solution = row["completion"]
        if row["prompt_format"] == "chat" and extract is not None:
            solution = extract(solution) or solution
        yield {"task_id": evalplus_task_id(row["problem_id"], row["source"]), "solution": solution}


def evalplus_task_id(problem_id: str, source: str | None) -> str:
    prefix = EVALPLUS_PREFIX.get((source or "").lower())
    if prefix and "/" in problem_id:
        return f"{prefix}/{problem_id.split('/', 1)[1]}"
    return problem_id


def _extractor():
    try:
        from builder.generation.extract import extract_code
    except ImportError:
        return None
    return extract_code


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """The run's numbers as a Markdown table: pass@k, then failed answers per error type."""
    lines = ["| metric | value |", "| --- | --- |"]
    plus = metrics.get("plus")
    for key in (k for k in metrics if k.startswith("pass@")):
        lines.append(f"| {key} | {_fmt(metrics[key])} |")
    for key in (k for k in (plus or {}) if k.startswith("pass@")):
        lines.append(f"| plus {key} | {_fmt(plus[key])} |")
    lines.append(f"| problems x answers | {metrics['problems']} x {_n_text(metrics)} = {metrics['samples']} |")
    lines.append(f"| passed answers | {metrics['passed']} ({_fmt(metrics['pass_rate'])}) |")
    for error_type, count in metrics["error_counts"].items():
        lines.append(f"| {error_type} | {count} |")
    for error_type, count in (plus or {}).get("error_counts", {}).items():
        lines.append(f"| plus {error_type} | {count} |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


# --- comparing runs ----------------------------------------------------------------------------

def load_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = pathlib.Path(run_dir) / METRICS_FILE
    if not path.exists():
        raise UserError(f"{run_dir}: no {METRICS_FILE} (not a finished ap2o-eval run folder)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def compare(run_dirs: Sequence[str], labels: Sequence[str] | None = None,
            output: str | os.PathLike | None = None) -> dict[str, Any]:
    """Side by side: pass@k and failed answers per error type for each run (the paper's Table 1
    and Figure 2). Writes ``compare.md``, ``compare.json`` and ``error_counts.png`` into
    ``output`` when given; returns every number."""
    if not run_dirs:
        raise UserError("compare: name at least one run folder")
    labels = list(labels) if labels else [pathlib.Path(d).name for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise UserError(f"compare: {len(labels)} labels for {len(run_dirs)} runs")
    runs = [load_run(d) for d in run_dirs]
    ks = sorted({key for r in runs for key in r if key.startswith("pass@")}, key=lambda s: int(s[5:]))
    types = _error_type_order(runs)
    result = {
        "labels": labels, "runs": [str(d) for d in run_dirs],
        "pass_at_k": {k: [r.get(k) for r in runs] for k in ks},
        # EvalPlus runs: pass@k on base AND plus tests, n/a for runs without plus tests
        "plus_pass_at_k": {k: [(r.get("plus") or {}).get(k) for r in runs] for k in ks}
        if any(r.get("plus") for r in runs) else {},
        "error_counts": {t: [r["error_counts"].get(t, 0) for r in runs] for t in types},
        "total_errors": [sum(r["error_counts"].values()) for r in runs],
        "metrics": runs,
    }
    result["markdown"] = format_comparison(result)
    if output is not None:
        from builder.io import atomic_path

        out = pathlib.Path(output)
        with atomic_path(out / "compare.md") as tmp:
            tmp.write_text(result["markdown"] + "\n")
        plot_error_counts(result, out / "error_counts.png")
        with atomic_path(out / "compare.json") as tmp:
            tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _error_type_order(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Types by their count in the first run (the baseline), then the rest by total count."""
    total: Counter[str] = Counter()
    for r in runs:
        total.update(r["error_counts"])
    first = runs[0]["error_counts"]
    return sorted(total, key=lambda t: (-first.get(t, 0), -total[t], t))


def format_comparison(result: Mapping[str, Any]) -> str:
    labels = result["labels"]
    lines = ["| | " + " | ".join(labels) + " |", "| --- |" + " ---: |" * len(labels)]
    for k, values in result["pass_at_k"].items():
        lines.append(f"| {k} | " + " | ".join(_fmt(v) for v in values) + " |")
    for k, values in result.get("plus_pass_at_k", {}).items():
        lines.append(f"| plus {k} | " + " | ".join(_fmt(v) for v in values) + " |")
    for t, values in result["error_counts"].items():
        lines.append(f"| {t} | " + " | ".join(str(v) for v in values) + " |")
    lines.append("| **all errors** | " + " | ".join(str(v) for v in result["total_errors"]) + " |")
    return "\n".join(lines)


def plot_error_counts(result: Mapping[str, Any], target: pathlib.Path) -> pathlib.Path:
    """Grouped bars: failed answers per error type, one bar per run (the paper's Figure 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from builder.io import atomic_path

    types, labels = list(result["error_counts"]), result["labels"]
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(types) + 2), 4))
    for i, label in enumerate(labels):
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(types))]
        bars = ax.bar(xs, [result["error_counts"][t][i] for t in types], width, label=label)
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(range(len(types)), types, rotation=30, ha="right")
    ax.set_ylabel("failed answers")
    benchmarks = sorted({str(m.get("benchmark")) for m in result["metrics"]})
    ax.set_title(f"Failed answers per error type ({', '.join(benchmarks)})")
    ax.legend()
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return target


# --- command line ------------------------------------------------------------------------------

def run_parser() -> argparse.ArgumentParser:
    """Every flag from ``EvalConfig``'s fields (help, defaults and choices there), spelt as on the
    builder's commands: ``--timeout``/``--timeout-s``, ``--quiet``/``--no-progress``, ``-`` or ``_``."""
    from builder.grading.grader import COMMAND_LINE

    p = argparse.ArgumentParser(prog="ap2o-eval", description=(
        "Sample, grade and report pass@k and error counts per type. "
        "'ap2o-eval compare RUN_DIR...' puts finished runs side by side."))
    add_dataclass_arguments(p, EvalConfig, exclude=("progress",), rename=COMMAND_LINE["rename"],
                            aliases={**COMMAND_LINE["aliases"], "output": ("-o",)})
    add_quiet(p)
    return p


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ap2o-eval compare", description=first_paragraph(compare.__doc__))
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders written by ap2o-eval")
    p.add_argument("--labels", help="comma-separated names for the runs (default: folder names)")
    p.add_argument("--output", "-o", help="folder for compare.md, compare.json and error_counts.png")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command("ap2o-eval", lambda: _main(argv), on_interrupt="interrupted (rerun the same command to resume)")


def _main(argv: list[str]) -> int:
    if argv[:1] == ["compare"]:
        args = compare_parser().parse_args(argv[1:])
        result = compare(args.runs, args.labels.split(",") if args.labels else None, args.output)
        print(result["markdown"])
        if args.output:
            print(f"wrote {args.output}/compare.md, compare.json, error_counts.png", file=sys.stderr)
        return 0
    args = run_parser().parse_args(argv[1:] if argv[:1] == ["run"] else argv)
    cfg = dataclass_from_args(EvalConfig, args, base={"progress": not args.quiet})
    print(format_metrics(evaluate(cfg)))
    return 0

if __name__ == "__main__":
    sys.exit(main())
