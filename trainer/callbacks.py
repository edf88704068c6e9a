"""Trainer callbacks that belong to no other module: importable and subclassable, like TRL's.

Every callback of ours is a module-level class taking plain constructor arguments (no factory
builds one inside a function, where it could be neither imported nor subclassed). Those that drive
another module's object live beside it: ``trainer.feed.FeedCallback`` (the data feed) and
``trainer.quiz.QuizCallback`` (the quiz); ``tests/test_callbacks.py`` subclasses all three.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

from transformers import TrainerCallback

from trainer.runinfo import save_best, write_run_info


class RunInfoCallback(TrainerCallback):
    """Writes ``ap2o_train.json`` (``trainer.runinfo``) into every checkpoint as it is saved."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        self.info = dict(info)

    def on_save(self, args, state, control, **kwargs):
        ckpt = pathlib.Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir() and state.is_world_process_zero:
            write_run_info(ckpt, {**self.info, "kind": "checkpoint", "step": state.global_step})


class EvalLossBestCallback(TrainerCallback):
    """The official SFT baseline's checkpoint choice (``train.py`` L165-167: ``metric_for_best_model
    'eval_loss'``, lower is better, ``save_strategy 'best'``): after each evaluation, a strictly
    lower ``eval_loss`` than every earlier one saves the model to ``OUTPUT_DIR/best``
    (``trainer.runinfo.save_best``), where ``ap2o-eval`` finds it as it finds the quiz's best."""

    def __init__(self, info: Mapping[str, Any], tokenizer: Any = None) -> None:
        self.info, self.tokenizer = dict(info), tokenizer
        self.best: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        from trainer.runinfo import best_of

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
