"""TRL's trainers as ``ap2o-train`` runs them: the same classes, with this project's model card.

TRL writes its draft card into the output folder at every checkpoint and on ``push_to_hub``
(``create_model_card``: "fine-tuned version of [None]", ``licence: license``, no dataset). These
subclasses write ``trainer.card``'s instead, from the run's facts (``ap2o_run_info``, set by
``ap2o-train``), so what a checkpoint push or the final push puts on the Hub is the real card.
Importable and subclassable like TRL's (imports TRL: only ``ap2o-train``'s training path loads it).
"""

from __future__ import annotations

import pathlib
from typing import Any

from trl import DPOTrainer, SFTTrainer

from trainer.card import read_quiz, write_model_card
from trainer.runinfo import best_of, read_run_info


class ModelCardMixin:
    """``create_model_card`` writing ``trainer.card``'s card into the output folder."""

    ap2o_run_info: dict[str, Any] | None = None

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None,
                          tags: Any = None, **kwargs: Any) -> None:
        if not self.is_world_process_zero() or self.ap2o_run_info is None:
            return
        out = pathlib.Path(self.args.output_dir)
        recorded = read_run_info(out) or {}
        if recorded.get("kind") == "run" and recorded.get("status") is None:  # the run is over: its final record
            info = recorded
        else:  # a checkpoint's push while training: the run so far
            info = {**self.ap2o_run_info, "kind": "run", "status": "started", "step": self.state.global_step,
                    "best": best_of(out)}
        write_model_card(out, info, read_quiz(out), repo_id=self.args.hub_model_id)


class AP2ODPOTrainer(ModelCardMixin, DPOTrainer):
    """``trl.DPOTrainer`` with the model card of ``trainer.card``."""


class AP2OSFTTrainer(ModelCardMixin, SFTTrainer):
    """``trl.SFTTrainer`` with the model card of ``trainer.card``."""
