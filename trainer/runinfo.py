"""``ap2o_train.json``: what a trained folder says about how it was trained.

``ap2o-eval`` reads it from ``--adapter``/``--model`` to ask the model the way it was trained
(its prompt format) without a flag the user must remember. It is written into the output folder,
every checkpoint (``trainer.callbacks.RunInfoCallback``) and ``best/``. Kept free of heavy
imports: ``ap2o-eval`` reads it even when no model library is loaded.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

from builder.errors import UserError
from builder.io import atomic_path

RUN_INFO = "ap2o_train.json"


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
