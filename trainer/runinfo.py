"""``ap2o_train.json``: what a trained folder says about how it was trained.

``ap2o-eval`` reads it from ``--adapter``/``--model`` to ask the model the way it was trained
(its prompt format) without a flag the user must remember, and to find the checkpoint to
evaluate. It is written into the output folder (``kind: run``, with ``best``: the best
checkpoint's step and score, or null when none was chosen), every checkpoint (``kind:
checkpoint``, ``trainer.callbacks.RunInfoCallback``) and ``best/`` (``kind: best``). Kept free of
heavy imports: ``ap2o-eval`` reads it even when no model library is loaded.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

from builder.errors import UserError
from builder.io import atomic_path

RUN_INFO = "ap2o_train.json"
BEST = "best"  # OUTPUT_DIR/best: the checkpoint the official code keeps (save_strategy 'best')


def write_run_info(folder: str | pathlib.Path, info: Mapping[str, Any]) -> pathlib.Path:
    path = pathlib.Path(folder) / RUN_INFO
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(dict(info), indent=2, sort_keys=True) + "\n")
    return path


def read_run_info(folder: str | pathlib.Path) -> dict[str, Any] | None:
    """The record in ``folder``; None when the folder has none. A record that is not a JSON
    object is a UserError naming the file."""
    path = pathlib.Path(folder) / RUN_INFO
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    return record if isinstance(record, dict) else None


def save_best(out: str | pathlib.Path, model: Any, tokenizer: Any, info: Mapping[str, Any]) -> pathlib.Path:
    """``out/best``: the model (the adapter, with PEFT), its tokenizer and its run info (``kind:
    best``, ``best``: its step and score), replaced atomically so a reader never sees half of it."""
    folder = pathlib.Path(out) / BEST
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_run_info(tmp, {**info, "kind": "best"})
    return folder


def best_of(out: str | pathlib.Path) -> dict[str, Any] | None:
    """The ``best`` record of ``out/best`` (step, metric, value), or None when there is none."""
    info = read_run_info(pathlib.Path(out) / BEST) if (pathlib.Path(out) / BEST).is_dir() else None
    return (info or {}).get("best")


def forget_best(out: str | pathlib.Path) -> None:
    """A run that starts from step 0 removes a ``best/`` an earlier run left in its output folder:
    ``ap2o-eval`` evaluates ``best/``, and it must be this run's."""
    import shutil

    if (pathlib.Path(out) / BEST).is_dir():
        shutil.rmtree(pathlib.Path(out) / BEST)
