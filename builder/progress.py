"""What a command shows while it works: progress bars only where someone watches them.

A progress bar redrawn into a log file or a CI transcript is noise (hundreds of carriage-return
lines), so a bar draws only when stderr is a terminal, as ``pip`` and ``git`` decide. ``--quiet``
(``--no-progress``) turns bars off on a terminal too; ``AP2O_PROGRESS=1`` forces them on where
stderr is not a terminal (a CI log someone wants them in), ``AP2O_PROGRESS=0`` off everywhere.
``bar`` is the one way the builder and ``ap2o-eval`` make a bar; ``quiet_libraries`` gives
``datasets``', ``huggingface_hub``'s and every other tqdm bar (transformers, TRL) the same rule.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from tqdm.auto import tqdm

ENV = "AP2O_PROGRESS"  # 1: bars even off a terminal; 0: never


def _forced() -> bool | None:
    value = os.environ.get(ENV, "").strip().lower()
    if not value:
        return None
    return value not in ("0", "false", "no", "off")


def wanted(requested: bool = True) -> bool:
    """Whether to draw progress: asked for (no ``--quiet``), and stderr a terminal or forced."""
    forced = _forced()
    if not requested or forced is False:
        return False
    return True if forced else sys.stderr.isatty()


def bar(*, disable: bool = False, **kwargs: Any):
    """A ``tqdm`` bar that draws only when ``wanted`` (``disable=True``: the caller's ``--quiet``)."""
    return tqdm(disable=not wanted(not disable), **kwargs)


# the libraries' own switches, read when they are imported
_LIBRARY_SWITCHES = ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")


def quiet_libraries() -> None:
    """Give the libraries' own bars the same rule: off when no bar is ``wanted`` (their switches
    set unless the user set them), before they are imported. Called by ``builder.errors.run_command``,
    which every console script runs its body through."""
    if wanted():
        return
    for name in _LIBRARY_SWITCHES:
        os.environ.setdefault(name, "1")


# Library warnings no user of ours can act on, each about a call inside a library: PEFT's PeftModel and
# TRL 1.x's DPOTrainer read ``model.is_gradient_checkpointing`` (transformers 5.2x deprecated the name for
# ``is_activation_checkpointing``), printed by every ap2o-train run and every ap2o-eval --adapter; and
# huggingface_hub, asked by the Trainer's push for the bars quiet_libraries turned off. Our own calls use
# no deprecated name (tests/test_train_cli.py turns FutureWarnings into errors around them).
LIBRARY_WARNINGS = ((FutureWarning, r"`(is_)?gradient_checkpointing\w*` is deprecated"),
                    (UserWarning, "Cannot enable progress bars"))


def quiet_library_warnings() -> None:
    """Hide ``LIBRARY_WARNINGS``; called by ``builder.errors.run_command`` for every console script."""
    for category, message in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 answer``, ``2 answers``: a count in words."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


__all__ = ["ENV", "LIBRARY_WARNINGS", "bar", "plural", "quiet_libraries", "quiet_library_warnings", "wanted"]
