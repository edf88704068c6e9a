"""The training configuration: TRL-style dataclasses, one ``help`` per field, paper defaults.

``ap2o-train`` parses these with TRL's ``TrlParser`` so a recipe YAML (``--config``) sets any
field and the command line overrides it. The schedule's own options live in
``trainer.schedule.ScheduleConfig`` (one place); here are the data, the model (+ LoRA), the quiz,
and the DPO/SFT trainer arguments with the paper's defaults: beta 0.1, learning rate 5e-7, linear
schedule with 10% warm-up, bf16 where the hardware has it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig, SFTConfig


def hardware_has_bf16() -> bool:
    """bf16 only where it is fast: a CUDA device that supports it (CPU bf16 is emulated and slow)."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


@dataclass
class DataArguments:
    """Where the builder's dataset is and which parts of it to read."""

    dataset: str = field(default=None, metadata={
        "help": "the builder's dataset: a local folder or a Hub repo id (read with datasets.load_dataset)"})
    samples_config: str = field(default="samples", metadata={"help": "config with one row per sampled answer"})
    train_split: str = field(default="train", metadata={"help": "split of the samples config to train on"})
    problems_config: str = field(default="problems", metadata={"help": "config with the problems and their tests"})
    validation_split: str = field(default="validation", metadata={
        "help": "split of the problems config the quiz answers (none there: the quiz is off)"})
    revision: str | None = field(default=None, metadata={"help": "dataset revision (Hub branch, tag or commit)"})


@dataclass
class ModelArguments:
    """The policy to train and its LoRA adapters."""

    model: str = field(default=None, metadata={"help": "model to train: a local folder or a Hub id"})
    dtype: str = field(default="auto", metadata={"help": "weights dtype: auto, bfloat16, float16 or float32"})
    use_peft: bool = field(default=True, metadata={
        "help": "train LoRA adapters (the DPO reference is then the base model with adapters disabled)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    lora_target_modules: list[str] = field(default_factory=lambda: ["all-linear"], metadata={
        "help": "modules that get adapters ('all-linear' = every linear layer but the output head)"})

    def peft_config(self):
        """A ``peft.LoraConfig``, or None for full fine-tuning."""
        if not self.use_peft:
            return None
        from peft import LoraConfig

        targets = self.lora_target_modules
        return LoraConfig(task_type="CAUSAL_LM", r=self.lora_r, lora_alpha=self.lora_alpha,
                          lora_dropout=self.lora_dropout,
                          target_modules=targets[0] if targets == ["all-linear"] else list(targets))


@dataclass
class QuizConfig:
    """The quiz (adaptive error replay, DESIGN step 5): every K steps one answer per validation
    problem from the current policy, graded in the sandbox; its error counts steer the replay and
    its pass@1 picks the best adapter."""

    quiz_every: int = field(default=50, metadata={"help": "K: quiz every K optimizer steps (0 = never)"})
    quiz_at_start: bool = field(default=True, metadata={
        "help": "also quiz before the first step: the initial error counts seed the replay and the curve"})
    quiz_max_problems: int | None = field(default=None, metadata={
        "help": "answer only the first N validation problems (None = all)"})
    quiz_prompt_format: str | None = field(default=None, metadata={
        "help": "'completion' or 'chat' (builder.prompts); default: the samples' own prompt_format"})
    quiz_temperature: float = field(default=0.0, metadata={"help": "sampling temperature; 0 = greedy"})
    quiz_max_new_tokens: int = field(default=512, metadata={"help": "new tokens per quiz answer"})
    quiz_batch_size: int = field(default=16, metadata={"help": "sequences per generate call"})
    quiz_timeout_s: float = field(default=3.0, metadata={"help": "sandbox time limit per answer (seconds)"})
    quiz_memory_mb: int = field(default=2048, metadata={"help": "sandbox memory limit per answer (MiB)"})
    quiz_workers: int | None = field(default=None, metadata={"help": "sandbox processes (None: one per core)"})
    keep_best: bool = field(default=True, metadata={
        "help": "save the adapter with the best quiz pass@1 to OUTPUT_DIR/best"})


@dataclass
class AP2ODPOConfig(DPOConfig):
    """``trl.DPOConfig`` with the paper's defaults and the settings the schedule needs."""

    beta: float = field(default=0.1, metadata={"help": "DPO beta (paper: 0.1)"})
    learning_rate: float = field(default=5e-7, metadata={"help": "peak learning rate (paper: 5e-7)"})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "learning-rate schedule (paper: linear)"})
    warmup_steps: float = field(default=0.1, metadata={
        "help": "warm-up: steps if >= 1, else a fraction of the training steps (paper: 0.1, i.e. 10 percent)"})
    bf16: bool | None = field(default=None, metadata={
        "help": "bf16 mixed precision; default: on where the hardware supports it (a CUDA GPU), off on CPU"})
    max_length: int | None = field(default=1024, metadata={"help": "prompt + answer tokens kept per sequence"})
    dataloader_num_workers: int = field(default=0, metadata={
        "help": "must stay 0: the schedule lives in this process, where the quiz updates it"})
    ignore_data_skip: bool = field(default=True, metadata={
        "help": "on resume, continue the pair stream from the checkpoint's saved schedule state "
                "instead of re-reading and skipping batches (which would lose the quiz updates)"})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={
        "help": "loggers for losses and quiz metrics (tensorboard, wandb, none, ...)"})
    save_strategy: str = field(default="steps", metadata={"help": "when to checkpoint (schedule state included)"})

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = hardware_has_bf16()
        super().__post_init__()


@dataclass
class AP2OSFTConfig(SFTConfig):
    """``trl.SFTConfig`` for the SFT baseline, with the same schedule-independent defaults."""

    learning_rate: float = field(default=5e-7, metadata={"help": "peak learning rate (same as the DPO runs)"})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "learning-rate schedule"})
    warmup_steps: float = field(default=0.1, metadata={"help": "warm-up steps, or fraction of steps if < 1"})
    bf16: bool | None = field(default=None, metadata={"help": "bf16 where the hardware supports it"})
    max_length: int | None = field(default=1024, metadata={"help": "tokens kept per sequence"})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={"help": "loggers"})

    def __post_init__(self):
        if self.bf16 is None:
            self.bf16 = hardware_has_bf16()
        super().__post_init__()
