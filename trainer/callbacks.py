"""Trainer callbacks that belong to no other module: importable and subclassable, like TRL's.

Every callback of ours is a module-level class taking plain constructor arguments (no factory
builds one inside a function, where it could be neither imported nor subclassed). Those that drive
another module's object live beside it: ``trainer.feed.FeedCallback`` (the data feed) and
``trainer.quiz.QuizCallback`` (the quiz); ``tests/test_callbacks.py`` subclasses all three.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Mapping
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from trainer.card import read_quiz, write_model_card
from trainer.runinfo import best_of, save_best, write_run_info


class RunInfoCallback(TrainerCallback):
    """Writes ``ap2o_train.json`` (``trainer.runinfo``) and the model card (``trainer.card``, over the
    template PEFT writes) into every checkpoint as it is saved."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        self.info = dict(info)

    def on_save(self, args, state, control, **kwargs):
        ckpt = pathlib.Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir() and state.is_world_process_zero:
            record = {**self.info, "kind": "checkpoint", "step": state.global_step}
            write_run_info(ckpt, record)
            write_model_card(ckpt, record, read_quiz(args.output_dir))


class EvalLossBestCallback(TrainerCallback):
    """The official SFT baseline's checkpoint choice (``train.py`` L165-167: ``metric_for_best_model
    'eval_loss'``, lower is better, ``save_strategy 'best'``): after each evaluation, a strictly
    lower ``eval_loss`` than every earlier one saves the model to ``OUTPUT_DIR/best``
    (``trainer.runinfo.save_best``), where ``ap2o-eval`` finds it as it finds the quiz's best."""

    def __init__(self, info: Mapping[str, Any], tokenizer: Any = None) -> None:
        self.info, self.tokenizer = dict(info), tokenizer
        self.best: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        best = best_of(args.output_dir) if state.global_step > 0 else None
        if best is not None and best["step"] <= state.global_step:
            self.best = best["value"]

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is None or (self.best is not None and loss >= self.best):
            return
        self.best = loss
        if state.is_world_process_zero:
            save_best(args.output_dir, model, self.tokenizer or kwargs.get("processing_class"),
                      {**self.info, "step": state.global_step,
                       "best": {"step": state.global_step, "metric": "eval_loss", "value": loss}})


class BarOnlyCallback(ProgressCallback):
    """transformers' progress bar without its log printing (``LogLinesCallback`` says the logs)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


class LogLinesCallback(TrainerCallback):
    """The Trainer's logs as plain lines on stderr (``ap2o-train: step 10/24 (epoch 2.0): loss 0.6931,
    ...``), in place of the dicts of strings transformers prints on stdout: stdout stays for what a
    command returns, and the line shows the few numbers one watches (every number still goes to the
    loggers, ``--report-to``). Quiz results are said by ``trainer.quiz.QuizCallback`` itself; the
    end-of-training numbers by ``ap2o-train``'s summary line."""

    SHOWN = ("loss", "rewards/accuracies", "rewards/margins", "mean_token_accuracy", "eval_loss", "learning_rate",
             "grad_norm")

    def __init__(self, prefix: str = "ap2o-train: ") -> None:
        self.prefix = prefix

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if not state.is_world_process_zero or not any(k in logs for k in ("loss", "eval_loss")):
            return
        shown = [k for k in self.SHOWN if k in logs and not (k == "mean_token_accuracy" and "rewards/accuracies" in logs)]
        values = ", ".join(f"{k} {logs[k]:.4g}" if isinstance(logs[k], float) else f"{k} {logs[k]}" for k in shown)
        where = f"step {state.global_step}/{state.max_steps}" + (
            f" (epoch {state.epoch:.2f})" if state.epoch is not None else "")
        say_line(f"{self.prefix}{where}: {values}")


def say_line(line: str) -> None:
    """One line on stderr that does not break a progress bar drawn there (tqdm's ``write``)."""
    tqdm.write(line, file=sys.stderr)
