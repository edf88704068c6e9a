"""``ap2o-train``: preference optimization whose data follows the AP2O schedule, on a dataset made
by ``ap2o-build``.

    ap2o-train --dataset FOLDER_OR_REPO --model PATH_OR_ID --method ap2o-l2h --output-dir OUT \\
               [--max-steps N] [--quiz-every K] [--config recipe.yaml] [any field of trainer.config]

``main`` reads like the recipe: load the samples, build the schedule, wrap it as an
IterableDataset, attach the quiz, train with TRL, save. Every option is a dataclass field
(``trainer.config``, ``trainer.schedule.ScheduleConfig``); a recipe YAML sets them by name.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

from builder.errors import UserError, run_command
from trainer.config import AP2ODPOConfig, AP2OSFTConfig, DataArguments, ModelArguments, QuizConfig
from trainer.schedule import SFT, ScheduleConfig

# columns of schemas.SAMPLES the trainer needs (the schedule reads these; training_text the format)
NEEDED = ("problem_id", "prompt", "completion", "passed", "error_type")


def parse(argv: Sequence[str] | None = None):
    """(data, model, schedule, quiz, training) configs from the command line and ``--config``.
    The training dataclass depends on the method (DPO or SFT), so ``--method`` is read first."""
    from trl import TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    method = _peek_method(argv)
    train_cls = AP2OSFTConfig if method == SFT else AP2ODPOConfig
    parser = TrlParser((DataArguments, ModelArguments, ScheduleConfig, QuizConfig, train_cls), prog="ap2o-train",
                       description=__doc__.splitlines()[0])
    try:
        return parser.parse_args_and_config(argv)
    except UserError:
        raise
    except ValueError as e:  # TrlParser/HfArgumentParser: bad YAML, unknown keys
        raise UserError(str(e)) from None


def _peek_method(argv: list[str]) -> str:
    import yaml

    for flag in ("--method",):
        for i, a in enumerate(argv):
            if a == flag and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(flag + "="):
                return a.split("=", 1)[1]
    if "--config" in argv:
        path = argv[argv.index("--config") + 1]
        try:
            with open(path) as f:
                return (yaml.safe_load(f) or {}).get("method", ScheduleConfig.method)
        except OSError as e:
            raise UserError(f"{path}: cannot read recipe ({e.strerror})") from None
    return ScheduleConfig.method


# --- data ---------------------------------------------------------------------------------------------

def load_samples(data: DataArguments) -> list[dict[str, Any]]:
    """The ``samples`` rows of the training split, as Python dicts of the columns we need."""
    table = _load(data.dataset, data.samples_config, data.train_split, data.revision)
    missing = [c for c in NEEDED if c not in table.column_names]
    if missing:
        raise UserError(f"{data.dataset} [{data.samples_config}/{data.train_split}]: missing column {missing[0]!r}")
    keep = [c for c in (*NEEDED, "prompt_format", "kind") if c in table.column_names]
    return table.select_columns(keep).to_list()


def load_validation(data: DataArguments) -> list[dict[str, Any]]:
    """The quiz's problems; none (quiz off, with a note) when the dataset has no such split."""
    try:
        table = _load(data.dataset, data.problems_config, data.validation_split, data.revision)
    except UserError as e:
        print(f"ap2o-train: no quiz: {e}", file=sys.stderr)
        return []
    return table.to_list()


def _load(path: str, config: str, split: str, revision: str | None):
    from datasets import load_dataset

    try:
        return load_dataset(path, config, split=split, revision=revision)
    except FileNotFoundError as e:
        raise UserError(f"{path}: dataset not found ({e})") from None
    except ValueError as e:  # unknown config or split
        raise UserError(f"{path}: cannot read config {config!r}, split {split!r}: {e}") from None


def derive_max_steps(pairs: int, args) -> int:
    """Optimizer steps that consume the schedule once: pairs / global batch size, rounded up."""
    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
    return max(1, math.ceil(pairs / global_batch))


# --- model ----------------------------------------------------------------------------------------------

def load_model(margs: ModelArguments, targs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = margs.dtype
    if dtype == "auto":
        dtype = "bfloat16" if targs.bf16 else "float32"
    try:
        tokenizer = AutoTokenizer.from_pretrained(margs.model, trust_remote_code=targs.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(margs.model, dtype=dtype, trust_remote_code=targs.trust_remote_code)
    except OSError as e:
        raise UserError(f"{margs.model}: cannot load model ({e})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


# --- the recipe -----------------------------------------------------------------------------------------

def train(data: DataArguments, margs: ModelArguments, sched: ScheduleConfig, quiz: QuizConfig, targs) -> dict:
    """Load, schedule, train, save. Returns a summary (also printed)."""
    from trainer.feed import Feed, make_feed_callback
    from trainer.quiz import make_quiz_callback
    from trainer.schedule import Schedule, build_problems, sft_rows

    if not data.dataset or not margs.model:
        raise UserError("--dataset and --model are required")
    rows = load_samples(data)
    problems = load_validation(data)
    model, tokenizer = load_model(margs, targs)

    feed = None
    if sched.method == SFT:
        from datasets import Dataset
        from trl import SFTTrainer

        kept, _, _ = build_problems(rows, sched)
        if not kept:
            raise UserError("no problem passes the filter: nothing to train on")
        train_set = Dataset.from_list(sft_rows(kept, sched.schedule_seed))
        planned = len(train_set)
        _set_max_steps(targs, planned, "passed answers")
        trainer = SFTTrainer(model=model, args=targs, train_dataset=train_set, processing_class=tokenizer,
                             peft_config=margs.peft_config())
    else:
        from trl import DPOTrainer

        schedule = Schedule.from_rows(rows, sched)
        feed = Feed(schedule)
        planned = len(schedule)
        say(targs, f"{sched.method}: {len(schedule.problems)} problems kept, error types in window order "
                   f"({sched.scope} scope, {sched.order}): {' -> '.join(schedule.error_order)}")
        _set_max_steps(targs, planned, "pairs")
        trainer = DPOTrainer(model=model, args=targs, train_dataset=feed.dataset(), processing_class=tokenizer,
                             peft_config=margs.peft_config())
        # first: rewinding the feed at train begin must happen before the first quiz pushes into it
        trainer.add_callback(make_feed_callback(feed))
    if problems:
        if quiz.quiz_prompt_format is None:  # ask the way the exam asked
            quiz.quiz_prompt_format = next((r["prompt_format"] for r in rows if r.get("prompt_format")), "completion")
        make_quiz_callback(problems, quiz, feed=feed, tokenizer=tokenizer).attach(trainer)

    result = trainer.train(resume_from_checkpoint=targs.resume_from_checkpoint)
    trainer.save_model(targs.output_dir)
    summary = {"method": sched.method, "steps": trainer.state.global_step, "planned_examples": planned,
               "train_loss": result.training_loss, "output_dir": targs.output_dir}
    if feed is not None:
        from trainer.feed import examples_per_step

        summary.update(feed.efficiency(trainer.state.global_step * examples_per_step(targs)))
    say(targs, ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    return summary


def _set_max_steps(targs, examples: int, what: str) -> None:
    derived = derive_max_steps(examples, targs)
    if targs.max_steps is None or targs.max_steps <= 0:
        targs.max_steps = derived
        say(targs, f"max_steps = {derived} ({examples} {what} / global batch)")
    else:
        say(targs, f"max_steps = {targs.max_steps} (given; one pass over the {examples} {what} is {derived})")
        if targs.max_steps > derived and what == "pairs":  # a map-style SFT set just repeats
            say(targs, f"warning: training ends with the data after {derived} steps; raise --rounds for more")


def say(targs, message: str) -> None:
    """One line on stderr, from the main process only (every rank runs this code)."""
    if targs.process_index == 0:
        print(f"ap2o-train: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    def body() -> int:
        train(*parse(argv))  # prints its summary
        return 0

    return run_command("ap2o-train", body)


if __name__ == "__main__":
    sys.exit(main())
