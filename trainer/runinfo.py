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
import shutil
from collections.abc import Mapping
from typing import Any

from builder.errors import UserError
from builder.io import atomic_path
from trainer.card import ERROR_CURVE, QUIZ_LOG, read_quiz, write_model_card

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
    """``out/best``: the model (the adapter, with PEFT), its tokenizer, its run info (``kind: best``,
    ``best``: its step and score), the error curve so far and its model card (``trainer.card``),
    replaced atomically so a reader never sees half of it."""
    folder = pathlib.Path(out) / BEST
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        record = {**info, "kind": "best"}
        write_run_info(tmp, record)
        if (pathlib.Path(out) / ERROR_CURVE).is_file():
            shutil.copyfile(pathlib.Path(out) / ERROR_CURVE, tmp / ERROR_CURVE)
        write_model_card(tmp, record, read_quiz(out), path=folder)  # after save_pretrained: PEFT writes a template card
    return folder


def best_of(out: str | pathlib.Path) -> dict[str, Any] | None:
    """The ``best`` record of ``out/best`` (step, metric, value), or None when there is none."""
    info = read_run_info(pathlib.Path(out) / BEST) if (pathlib.Path(out) / BEST).is_dir() else None
    return (info or {}).get("best")


def forget_best(out: str | pathlib.Path) -> None:
    """A run that starts from step 0 removes a ``best/`` an earlier run left in its output folder:
    ``ap2o-eval`` evaluates ``best/``, and it must be this run's."""
    if (pathlib.Path(out) / BEST).is_dir():
        shutil.rmtree(pathlib.Path(out) / BEST)


# --- the output folder: one run in it -------------------------------------------------------------------

def is_run_folder(out: str | pathlib.Path) -> bool:
    """Whether ``out`` holds (part of) an ``ap2o-train`` run: its record (written when a run starts),
    a checkpoint, ``best/`` or the quiz log."""
    out = pathlib.Path(out)
    return any((out / name).exists() for name in (RUN_INFO, BEST, QUIZ_LOG)) or any(out.glob("checkpoint-*"))


def check_output_dir(out: str | pathlib.Path, *, overwrite: bool, resume: str | None) -> bool:
    """Refuse, in one line, an ``--output-dir`` whose files would mix with this run's: a folder holding
    an earlier run is taken only to continue it (``--resume-from-checkpoint``) or to replace it
    (``--overwrite-output-dir``); a folder holding other files is never written into, since a run
    would scatter its files among them and replacing would delete what ap2o-train did not write.
    Returns True when an earlier run is there to be removed (overwrite)."""
    out = pathlib.Path(out)
    if resume is not None:
        ckpt = pathlib.Path(resume)
        if not (ckpt / "trainer_state.json").is_file():
            saved = sorted((c.name for c in out.glob("checkpoint-*")), key=lambda n: int(n.split("-")[-1])
                           if n.split("-")[-1].isdigit() else -1)
            raise UserError(f"--resume-from-checkpoint {resume}: not a checkpoint folder (no trainer_state.json); "
                            f"saved in {out}: {', '.join(saved) or 'none'}")
        return False
    if not out.is_dir() or not any(out.iterdir()):
        return False
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())
    shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
    if not is_run_folder(out):
        raise UserError(f"--output-dir {out}: not empty ({shown}) and not an ap2o-train run; choose a new or empty "
                        "folder (ap2o-train neither mixes its files with others nor deletes what it did not write)")
    if overwrite:
        return True
    last = max((int(c.name.split("-")[-1]) for c in out.glob("checkpoint-*") if c.name.split("-")[-1].isdigit()),
               default=None)
    resume_hint = (f", --resume-from-checkpoint {out / f'checkpoint-{last}'} continues it" if last is not None else "")
    raise UserError(f"--output-dir {out}: holds an earlier run ({shown}); --overwrite-output-dir replaces it"
                    + resume_hint)


def clear_run(out: str | pathlib.Path) -> None:
    """Remove the earlier run in ``out`` (``check_output_dir`` said it is one), keeping the folder."""
    for p in pathlib.Path(out).iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
