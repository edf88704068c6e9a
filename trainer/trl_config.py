"""The training arguments TRL's trainers take: ``DPOConfig``/``SFTConfig`` with this trainer's
defaults (``trainer.config.DPOSettings``/``SFTSettings``, where they are stated and documented).

A module of its own because defining a subclass of TRL's configs imports TRL, transformers and
torch (seconds); ``trainer.config`` stays free of them so that the command line answers at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from trl import DPOConfig, SFTConfig

from trainer.config import DPOSettings, SFTSettings, hardware_has_bf16

# torch is imported only to ask the hardware whether it has bf16.


def _decide_hardware_defaults(args) -> None:
    """The defaults that depend on the machine: bf16 autocast and pinned memory where a CUDA GPU is."""
    if args.bf16 is None:
        args.bf16 = hardware_has_bf16()
    if args.dataloader_pin_memory is None:
        import torch

        args.dataloader_pin_memory = torch.cuda.is_available()


# DPOSettings first: its fields override TRL's of the same name (dataclasses take the last definition
# along the MRO read from object up), so the paper's defaults and help win and every other field is TRL's.
@dataclass
class AP2ODPOConfig(DPOSettings, DPOConfig):
    """``trl.DPOConfig`` with the paper's defaults and the settings the schedule needs."""

    def __post_init__(self):
        _decide_hardware_defaults(self)
        super().__post_init__()


@dataclass
class AP2OSFTConfig(SFTSettings, SFTConfig):
    """``trl.SFTConfig`` for the SFT baseline, with the same schedule-independent defaults."""

    def __post_init__(self):
        _decide_hardware_defaults(self)
        super().__post_init__()
