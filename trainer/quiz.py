"""The quiz (docs/method.md, step 5): once per epoch (or every K steps) the policy answers each validation problem once, the
builder's sandbox grades the answers, and the error counts per type steer the replay.

It is a ``TrainerCallback`` so that it runs between optimizer steps on the very model being
trained (PEFT adapters active) through the sampling interface every part shares
(``TransformersBackend.from_model``; with ``quiz_backend='vllm'``, a vLLM process over the policy
written out, ``trainer.quiz_vllm``), and grades with the same ``builder.grading.grader.Grader`` as the
dataset builder, so "NameError" means the same thing in the notebook and in the quiz.

Per quiz it logs pass@1 and the count of every error type to the trainer's loggers (TensorBoard
by default) and one JSON line to ``OUTPUT_DIR/quiz.jsonl``; it keeps the adapter with the best
pass@1 in ``OUTPUT_DIR/best`` (the official ``save_strategy='best'``: a later quiz must do strictly
better), which ``ap2o-eval --adapter OUTPUT_DIR`` evaluates. At the end it draws the error counts per type over steps
(``error_curve.png``, the paper's Figure 3); ``trainer.feed`` writes the sample efficiency.

Under ``accelerate launch`` only the main process generates and grades; the counts are
broadcast so that every rank pushes the same update into its (identical) schedule.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from transformers import TrainerCallback

from builder import COMPLETION, Grader, SampleConfig, TransformersBackend, engine
from builder.io import atomic_path
from trainer.callbacks import say_line
from trainer.card import ERROR_CURVE, QUIZ_LOG
from trainer.config import QuizConfig
from trainer.evaluation.metrics import error_counts
from trainer.feed import broadcast
from trainer.quiz_vllm import vllm_answers
from trainer.runinfo import best_of, save_best

# matplotlib is imported only to draw the curve, and transformers.Trainer (which loads accelerate)
# only where a run's trainer is read.


@dataclass
class QuizResult:
    """One quiz: which step, how many passed, and the failures per error type."""

    step: int
    passed: int
    total: int
    error_counts: dict[str, int]
    seconds: float = 0.0
    answers: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def pass_at_1(self) -> float:
        return self.passed / self.total if self.total else 0.0

    def record(self) -> dict[str, Any]:
        return {"step": self.step, "pass@1": self.pass_at_1, "error_counts": self.error_counts,
                "passed": self.passed, "total": self.total, "seconds": round(self.seconds, 3)}


def run_quiz(model: Any, tokenizer: Any, problems: Sequence[Mapping[str, Any]], config: QuizConfig,
             grader: Any, *, step: int = 0, seed: int = 0) -> QuizResult:
    """One answer per problem from ``model`` (as it is now), graded by ``grader``."""
    start = time.perf_counter()
    if config.quiz_backend == "vllm":  # sampled in a vLLM process; graded from its answers like the rest
        backend = vllm_answers(model, tokenizer, problems, config, step=step, seed=seed)
    else:
        backend = TransformersBackend.from_model(model, tokenizer, batch_size=config.quiz_batch_size)
    table = quiz_table(backend, problems, config, grader, step=step, seed=seed)
    passed_col, types = table.column("passed").to_pylist(), table.column("error_type").to_pylist()
    errors = error_counts(table)  # as ap2o-eval counts them (trainer.evaluation.metrics)
    detail = [{"problem_id": pid, "passed": bool(ok), "error_type": t}
              for pid, ok, t in zip(table.column("problem_id").to_pylist(), passed_col, types)]
    return QuizResult(step, sum(map(bool, passed_col)), table.num_rows, dict(sorted(errors.items())),
                      time.perf_counter() - start, detail)


def quiz_table(backend: Any, problems: Sequence[Mapping[str, Any]], config: QuizConfig, grader: Any, *,
               step: int = 0, seed: int = 0) -> Any:
    """The quiz's graded rows (``schemas.ANSWERS``, one per problem) from ``backend``: made by
    ``builder.engine`` like a build's rows (the same prompts, per-problem stop strings, program
    extraction and grading), in memory, with the caller's long-lived ``grader``."""
    sample_cfg = SampleConfig(backend="transformers", model=backend.model, n=1,
                              prompt_format=config.quiz_prompt_format or COMPLETION,  # the CLI fills it from the samples
                              temperature=config.quiz_temperature, max_new_tokens=config.quiz_max_new_tokens,
                              seed=seed + step, batch_size=config.quiz_batch_size)
    done = engine.sample_and_grade(pa.Table.from_pylist(list(problems)), sample_cfg, grader.config,
                                   backend=backend, grader=grader, progress=False)
    return done.table()


def error_curve_figure(records: Sequence[Mapping[str, Any]], title: str = ""):
    """Error counts per type over training steps, pass@1 on a second axis (cf. paper, Figure 3): whole
    steps on the x-axis, the legend beside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    steps = [r["step"] for r in records]
    types = sorted({e for r in records for e in r["error_counts"]},
                   key=lambda e: -sum(r["error_counts"].get(e, 0) for r in records))
    fig, ax = plt.subplots(figsize=(8, 4))
    for e in types:
        ax.plot(steps, [r["error_counts"].get(e, 0) for r in records], marker="o", label=e)
    ax.set_xlabel("training step")
    ax.set_ylabel("failed quiz answers")
    most = max([c for r in records for c in r["error_counts"].values()] or [1])
    ax.set_ylim(-0.03 * most, 1.05 * most)  # a line at 0 or at the top stays inside the frame
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # steps are whole numbers
    if len(set(steps)) == 1:  # one quiz: a window around its step, not a zero-width axis
        ax.set_xlim(steps[0] - 1, steps[0] + 1)
    ax.set_title(title or "Quiz errors per type over training")
    ax2 = ax.twinx()
    ax2.plot(steps, [r["pass@1"] for r in records], color="black", linestyle="--", marker="s", label="pass@1")
    ax2.set_ylabel("pass@1")
    ax2.set_ylim(-0.03, 1.05)
    lines, labels = ax.get_legend_handles_labels()
    l2, lab2 = ax2.get_legend_handles_labels()
    # beside the axes, never over the lines (inside, it hid the only line of a one-type run)
    ax.legend(lines + l2, labels + lab2, fontsize=8, loc="upper left", bbox_to_anchor=(1.12, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def plot_error_curve(records: Sequence[Mapping[str, Any]], path: str | pathlib.Path, title: str = "") -> pathlib.Path:
    """``error_curve_figure`` as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig = error_curve_figure(records, title)
    path = pathlib.Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


class QuizCallback(TrainerCallback):
    """Runs a quiz after each optimizer step for which ``due(step)`` holds (``QuizConfig.due``: the
    end of every epoch by default);
    ``feed`` (a ``trainer.feed.Feed``) receives the error counts, None for SFT. Call
    ``attach(trainer)`` so quiz metrics reach its loggers. ``run_info`` (what ``ap2o-eval`` needs to
    know about the run, e.g. its prompt format) is written beside every best adapter."""

    def __init__(self, problems: Sequence[Mapping[str, Any]], config: QuizConfig, *, due, feed=None,
                 grader_config=None, tokenizer=None, run_info: Mapping[str, Any] | None = None) -> None:
        self.problems = list(problems)[: config.quiz_max_problems]
        self.config, self.due, self.feed = config, due, feed
        self.grader_config, self.tokenizer, self.run_info = grader_config, tokenizer, dict(run_info or {})
        self.records: list[dict[str, Any]] = []
        self.best: float | None = None
        self.seconds = 0.0
        self.trainer = None
        self._grader = None
        self._last_step: int | None = None

    def attach(self, trainer) -> QuizCallback:
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    # -- when
    def on_train_begin(self, args, state, control, **kw):
        self.out = pathlib.Path(args.output_dir)
        if state.global_step > 0:
            self.resume(state.global_step, state.is_world_process_zero)
        elif self.problems and self.config.quiz_at_start:
            self.quiz(args, state, control, kw)

    def resume(self, step: int, main: bool) -> None:
        """Continue the quiz history of a resumed run: earlier quizzes stay in the curve, the
        best pass@1 so far stays the bar, and quizzes past the checkpoint (the interrupted run
        may have got further) are dropped since they will be taken again."""
        log = self.out / QUIZ_LOG
        if log.exists():
            self.records = [r for r in map(json.loads, log.read_text().splitlines()) if r["step"] <= step]
            if main:
                with atomic_path(log) as tmp:
                    tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))
        best = best_of(self.out)
        if best is not None and best["step"] <= step:
            self.best = best["value"]

    def on_step_end(self, args, state, control, **kw):
        if self.problems and self.due(state.global_step):
            self.quiz(args, state, control, kw)

    def on_train_end(self, args, state, control, **kw):
        if self._grader is not None:
            self._grader.close()
            self._grader = None
        if not state.is_world_process_zero:
            return
        if self.records:
            self.plot()

    def plot(self) -> None:
        method = self.feed.schedule.config.method if self.feed else "sft"
        plot_error_curve(self.records, self.out / ERROR_CURVE, f"Quiz errors per type ({method})")

    # -- what
    def quiz(self, args, state, control, kw) -> QuizResult | None:
        if self._last_step == state.global_step:
            return None
        self._last_step = state.global_step
        result = None
        if state.is_world_process_zero:
            result = run_quiz(kw["model"], self.tokenizer or kw.get("processing_class"), self.problems, self.config,
                              self.grader(), step=state.global_step, seed=args.seed)
        result = broadcast(result)
        self.seconds += result.seconds
        if self.feed is not None:
            self.feed.push_quiz(result.error_counts)
        self.records.append(result.record())
        self.log(result, control)
        if state.is_world_process_zero:
            self.report(result, kw["model"], args)
        return result

    def grader(self):
        if self._grader is None:
            cfg = self.grader_config or self.config.grader_config()
            self._grader = Grader(cfg)
            self._grader.start()
        return self._grader

    def log(self, result: QuizResult, control) -> None:
        """To the trainer's loggers, on every rank (they write on the main one). ``Trainer.log``
        clears ``control.should_log``; it is put back so that the step's own loss logging, a
        collective under DDP, still happens on every rank alike. The base class's ``log`` is
        used so that TRL's override does not fold its pending training metrics into it."""
        if self.trainer is None:
            return
        from transformers import Trainer

        metrics = {"quiz/pass@1": result.pass_at_1, "quiz/failed": result.total - result.passed,
                   "quiz/seconds": result.seconds}
        metrics.update({f"quiz/errors/{e}": c for e, c in result.error_counts.items()})
        should_log = control.should_log
        Trainer.log(self.trainer, metrics)
        control.should_log = should_log

    def report(self, result: QuizResult, model, args) -> None:
        """The quiz said in one line, logged to ``quiz.jsonl``, drawn in the error curve (so the curve is
        there after every quiz, for the best checkpoint's card and for a run that stops), and the best
        model kept."""
        errors = ", ".join(f"{t} {c}" for t, c in sorted(result.error_counts.items(), key=lambda x: -x[1]))
        say_line(f"ap2o-train: quiz at step {result.step}: pass@1 {result.pass_at_1:.3g} ({result.passed} of "
                 f"{result.total} passed)" + (f"; failed: {errors}" if errors else "") + f" ({result.seconds:.1f} s)")
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / QUIZ_LOG, "a") as f:
            f.write(json.dumps(result.record()) + "\n")
        self.plot()
        if self.config.keep_best and (self.best is None or result.pass_at_1 > self.best) and result.step > 0:
            self.best = result.pass_at_1
            self.save_best(result, model)

    def save_best(self, result: QuizResult, model) -> None:
        """The best adapter so far (or model, without PEFT) in ``OUT/best``, its run info naming
        the step and the quiz's pass@1."""
        tok = self.tokenizer or getattr(self.trainer, "processing_class", None)
        save_best(self.out, model, tok, {**self.run_info, "step": result.step,
                                         "best": {"step": result.step, "metric": "quiz pass@1", "value": result.pass_at_1,
                                                  "quiz": result.record()}})
