"""``ap2o_train.json``: what a trained folder says about how it was trained.

``ap2o-eval`` reads it from ``--adapter``/``--model`` to ask the model the way it was trained
(its prompt format) without a flag the user must remember. It is written into the output folder,
every checkpoint and ``best/``.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

from transformers import TrainerCallback

from builder.io import atomic_path

RUN_INFO = "ap2o_train.json"


def write_run_info(folder: str | pathlib.Path, info: Mapping[str, Any]) -> pathlib.Path:
    path = pathlib.Path(folder) / RUN_INFO
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(dict(info), indent=2, sort_keys=True) + "\n")
    return path


def read_run_info(folder: str | pathlib.Path) -> dict[str, Any] | None:
    path = pathlib.Path(folder) / RUN_INFO
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None


class RunInfoCallback(TrainerCallback):
    """Writes ``ap2o_train.json`` into every checkpoint as it is saved."""

    def __init__(self, info: Mapping[str, Any]) -> None:
        self.info = dict(info)

    def on_save(self, args, state, control, **kwargs):
        ckpt = pathlib.Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir() and state.is_world_process_zero:
            write_run_info(ckpt, {**self.info, "step": state.global_step})
