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

from trainer.runinfo import write_run_info


class RunInfoCallback(TrainerCallback):
    """Writes ``ap2o_train.json`` (``trainer.runinfo``) into every checkpoint as it is saved."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        self.info = dict(info)

    def on_save(self, args, state, control, **kwargs):
        ckpt = pathlib.Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir() and state.is_world_process_zero:
            write_run_info(ckpt, {**self.info, "step": state.global_step})
