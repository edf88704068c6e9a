"""``ap2o-train``: preference optimization whose data follows the AP2O schedule, on a dataset made
by ``ap2o-build``.

    ap2o-train --dataset FOLDER_OR_REPO --model PATH_OR_ID --method ap2o-l2h --output-dir OUT \\
               [--num-train-epochs T] [--max-steps N] [--config recipe.yaml] [any field of trainer.config]

``train`` reads like the recipe: read the dataset (the contract: ``trainer.data``), build the
schedule for T epochs, wrap it as an IterableDataset, attach the quiz, train with TRL, save. Every
option is a dataclass field (``trainer.config``, ``trainer.schedule.ScheduleConfig``); a recipe
YAML sets them by name, and a setting that would not be honoured is an error naming it.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

from builder.errors import UserError, run_command
from builder.flags import add_version, first_paragraph
from trainer.config import AP2ODPOConfig, AP2OSFTConfig, DataArguments, ModelArguments, QuizConfig
from trainer.schedule import DEFAULT_EPOCHS, SFT, ScheduleConfig, check_epochs


def parse(argv: Sequence[str] | None = None):
    """(data, model, schedule, quiz, training) configs from the command line and ``--config``.
    The training dataclass depends on the method (DPO or SFT), so ``--method`` is read first."""
    from trl import TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    method = _peek_method(argv)
    train_cls = AP2OSFTConfig if method == SFT else AP2ODPOConfig
    parser = TrlParser((DataArguments, ModelArguments, ScheduleConfig, QuizConfig, train_cls), prog="ap2o-train",
                       description=first_paragraph(__doc__))
    add_version(parser)
    # TrlParser reads --config itself (before parsing); declared here so that --help shows it
    parser.add_argument("--config", metavar="RECIPE.yaml", default=argparse.SUPPRESS,
                        help="a YAML recipe (trainer/recipes/) setting any option below by name; flags override it")
    try:
        return parser.parse_args_and_config(argv)
    except UserError:
        raise
    except ValueError as e:  # TrlParser/HfArgumentParser: bad YAML, unknown keys
        raise UserError(str(e).splitlines()[0]) from None


def _peek_method(argv: list[str]) -> str:
    import yaml

    for i, a in enumerate(argv):
        if a == "--method" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--method="):
            return a.split("=", 1)[1]
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise UserError("--config needs a recipe path")
        path = argv[i + 1]
        try:
            with open(path) as f:
                recipe = yaml.safe_load(f) or {}
        except OSError as e:
            raise UserError(f"{path}: cannot read recipe ({e.strerror})") from None
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not a YAML recipe ({str(e).splitlines()[0]})") from None
        if not isinstance(recipe, dict):
            raise UserError(f"{path}: a recipe is a YAML mapping of option names to values")
        return recipe.get("method", ScheduleConfig.method)
    return ScheduleConfig.method


# --- settings we do not silently replace ----------------------------------------------------------------

def check_settings(targs) -> None:
    """Refuse settings this trainer cannot honour, naming them, rather than override them."""
    if targs.dataloader_num_workers != 0:
        raise UserError("dataloader_num_workers must be 0: the schedule lives in the training process, "
                        "where the quiz updates it (a worker would hold a copy no quiz reaches)")
    if getattr(targs.eval_strategy, "value", targs.eval_strategy) not in ("no", None):  # an enum after __post_init__
        raise UserError("eval_strategy is not used: the quiz (quiz_strategy, quiz_steps) evaluates the policy "
                        "(the official SFT baseline's eval_loss is evaluated every epoch without it)")
    if targs.ignore_data_skip:
        raise UserError("ignore_data_skip must stay false: a resumed run makes the interrupted epoch again from "
                        "its start and the Trainer skips the batches it already trained")


def set_max_steps(targs, schedule) -> None:
    """max_steps follows the schedule: T epochs of the steps the Trainer makes of each (the last
    batch of an epoch short on one process). A smaller --max-steps stops early; a larger one ends
    at the schedule's end (there is nothing more to train on), said in one line."""
    derived = schedule.max_steps
    b = schedule.batching
    how = (f"{schedule.epochs} epochs x {schedule.steps_per_epoch} steps: {schedule.items_per_epoch} "
           f"{'pairs' if schedule.config.method != SFT else 'answers'} per epoch in batches of {b.per_device}"
           + (f" x {b.processes} processes" if b.processes > 1 else "")
           + (f" x {b.accumulation} accumulated" if b.accumulation > 1 else ""))
    if targs.max_steps is None or targs.max_steps <= 0:
        targs.max_steps = derived
        say(targs, f"max_steps = {derived} ({how})")
    elif targs.max_steps > derived:
        say(targs, f"max_steps = {derived}: --max-steps {targs.max_steps} is past the end of the schedule "
                   f"({how}); raise --num-train-epochs for more")
        targs.max_steps = derived
    else:
        say(targs, f"max_steps = {targs.max_steps} (given; the whole schedule is {derived}: {how})")


# --- model ----------------------------------------------------------------------------------------------

def load_model(margs: ModelArguments, targs):
    """The policy and its tokenizer, in the precision of the official code (``trainer.config``),
    from a folder, a Hub id or a GGUF file (``builder.generation.modelpath``, shared with sampling and
    ap2o-eval)."""
    import torch

    from builder.generation.modelpath import load_causal_lm, load_tokenizer

    dtype = margs.dtype
    if dtype == "auto":
        dtype = "bfloat16" if (margs.use_peft and targs.bf16) else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(f"dtype must be auto, float32, bfloat16 or float16, got {margs.dtype!r}")
    if not margs.use_peft and dtype != "float32":
        raise UserError(f"dtype {dtype} with full fine-tuning: the weights themselves would learn in {dtype}, where "
                        "updates at lr 5e-7 vanish; keep float32 (bf16 compute is --bf16, autocast)")
    remote = {"trust_remote_code": targs.trust_remote_code}
    try:
        tokenizer = load_tokenizer(margs.model, margs.gguf_file, **remote)
        model = load_causal_lm(margs.model, margs.gguf_file, dtype=getattr(torch, dtype), **remote)
    except (OSError, ValueError, ImportError) as e:
        raise UserError(f"{margs.model}: cannot load model ({str(e).splitlines()[0]})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def prompt_tokens(prompt: Any, tokenizer) -> int:
    """Tokens of a prompt as TRL counts them: the text, or the chat template with the generation prompt."""
    if isinstance(prompt, str):
        return len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
    return len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def drop_long_prompts(problems: list, tokenizer, max_length: int | None, targs) -> list:
    """TRL silently drops an example whose prompt alone fills ``max_length``. Dropped inside the
    stream, such pairs would shift every count (pairs consumed, the window's epoch), so their
    problems leave the schedule here, said in one line."""
    if not max_length:
        return problems
    long = [p.problem_id for p in problems if prompt_tokens(p.prompt, tokenizer) >= max_length]
    if long:
        if len(long) == len(problems):
            raise UserError(f"every prompt has >= max_length={max_length} tokens: raise --max-length")
        say(targs, f"{len(long)} problems left out: their prompts alone fill max_length={max_length} tokens "
                   f"({', '.join(long[:5])}{', ...' if len(long) > 5 else ''}); raise --max-length to keep them")
    return [p for p in problems if p.problem_id not in set(long)]


# --- the recipe -----------------------------------------------------------------------------------------

def train(data: DataArguments, margs: ModelArguments, sched: ScheduleConfig, quiz: QuizConfig, targs) -> dict:
    """Read the dataset, schedule T epochs, train, save. Returns a summary (also printed)."""
    from builder.io import check_writable
    from trainer.callbacks import RunInfoCallback
    from trainer.data import load_training_data
    from trainer.feed import Feed, consumed_pairs
    from trainer.quiz import QuizCallback
    from trainer.runinfo import best_of, forget_best, write_run_info
    from trainer.schedule import Batching, Schedule

    if not margs.model:
        raise UserError("--model is required")
    check_settings(targs)
    check_writable(targs.output_dir, "--output-dir", kind="into")  # before any work (builder.io)
    epochs = check_epochs(targs.num_train_epochs or DEFAULT_EPOCHS[sched.method])
    targs.num_train_epochs = epochs
    if margs.use_peft:
        say(targs, f"training LoRA adapters (r {margs.lora_r}): the default, so that a run fits one GPU or a CPU "
                   "and ap2o-eval --adapter reads it; the paper and the recipes fine-tune every weight (--use-peft false)")
    td = load_training_data(data.dataset, sched, train_split=data.train_split, validation_split=data.validation_split,
                            holdout_fraction=data.holdout_fraction, revision=data.revision,
                            samples_config=data.samples_config, problems_config=data.problems_config,
                            notebook_config=data.notebook_config)
    for note in td.notes:
        say(targs, note)
    model, tokenizer = load_model(margs, targs)
    td.problems = drop_long_prompts(td.problems, tokenizer, targs.max_length, targs)
    run_info = {"dataset": data.dataset, "train_split": td.train_split, "method": sched.method,
                "prompt_format": td.prompt_format, "model": margs.model, "epochs": epochs}

    schedule = Schedule(td.problems, sched, epochs, Batching.of(targs))
    feed = Feed(schedule)
    official_sft = sched.method == SFT and sched.sft_official
    if sched.method == SFT:
        say(targs, f"sft: {len(schedule.problems)} problems kept, one passed answer of each per epoch; "
                   + ("the official text ('### Question: ...\\n ### Answer: ...'), the best checkpoint by eval_loss on "
                      f"{len(td.validation)} validation problems' passed answers, no quiz (--no-sft-official: the quiz's)"
                      if official_sft else "the dataset's prompts; the quiz picks the best checkpoint"))
    else:
        say(targs, f"{sched.method}: {len(schedule.problems)} problems kept, {schedule.available_pairs} distinct pairs"
                   + (f" (the dataset's pairs config: {td.published_pairs})" if td.published_pairs is not None else "")
                   + f"; {epochs} epochs x {schedule.items_per_epoch} pairs; {sched.scope}-scope error order, "
                   f"{sched.order}")
    set_max_steps(targs, schedule)
    if sched.method == SFT:
        trainer = sft_trainer(model, tokenizer, targs, margs, feed, td.validation if official_sft else [], run_info)
    else:
        from trl import DPOTrainer

        trainer = DPOTrainer(model=model, args=targs, train_dataset=feed.dataset(), processing_class=tokenizer,
                             peft_config=margs.peft_config())
    # first: the feed must be rewound at train begin before the first quiz pushes into it
    feed.attach(trainer)
    trainer.add_callback(RunInfoCallback(run_info))
    if td.quiz_problems and not official_sft:
        if quiz.quiz_prompt_format is None:  # ask the way the exam asked
            quiz.quiz_prompt_format = td.prompt_format
        QuizCallback(td.quiz_problems, quiz, due=quiz.due(schedule.steps_per_epoch), feed=feed,
                     tokenizer=tokenizer, run_info=run_info).attach(trainer)

    out = pathlib.Path(targs.output_dir)
    if targs.resume_from_checkpoint is None and targs.process_index == 0:
        forget_best(out)
    result = trainer.train(resume_from_checkpoint=targs.resume_from_checkpoint)
    trainer.save_model(targs.output_dir)
    best = best_of(out)
    if targs.process_index == 0:
        write_run_info(out, {**run_info, "kind": "run", "step": trainer.state.global_step, "best": best})
    summary = {"method": sched.method, "epochs": epochs, "steps": trainer.state.global_step,
               "train_loss": result.training_loss, "output_dir": targs.output_dir}
    if sched.method != SFT:
        summary.update(feed.efficiency(consumed_pairs(feed, targs, trainer.state.global_step)))
    say(targs, ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))
    say(targs, f"best checkpoint: {out / 'best'} (step {best['step']}, {best['metric']} {best['value']:.4g}); "
               f"ap2o-eval --adapter {out} evaluates it" if best else
               f"no best checkpoint (no {'evaluation' if official_sft else 'quiz'} before the run ended): "
               f"ap2o-eval evaluates the final model in {out}")
    return summary


def sft_trainer(model, tokenizer, targs, margs, feed, validation, run_info):
    """TRL's ``SFTTrainer`` on the feed's SFT rows. With ``validation`` (the official baseline,
    ``train.py`` L148-176): evaluated every epoch on one passed answer of each validation problem
    (one seeded draw kept for every evaluation), the best checkpoint by ``eval_loss``."""
    import random

    from datasets import Dataset
    from transformers.trainer_utils import IntervalStrategy
    from trl import SFTTrainer

    from trainer.callbacks import EvalLossBestCallback
    from trainer.schedule import sft_example

    eval_set = None
    if validation:
        rng = random.Random(feed.schedule.config.schedule_seed)
        eval_set = Dataset.from_list([sft_example(p, p.passed[rng.randrange(len(p.passed))]) for p in validation])
        targs.eval_strategy = IntervalStrategy.EPOCH
        targs.prediction_loss_only = True
    elif feed.schedule.config.sft_official:
        say(targs, "sft: no validation answers (no validation samples, nothing held out) for the official eval_loss: "
                   "no best checkpoint, the final model is the result")
    trainer = SFTTrainer(model=model, args=targs, train_dataset=feed.dataset(), eval_dataset=eval_set,
                         processing_class=tokenizer, peft_config=margs.peft_config())
    if validation:
        trainer.add_callback(EvalLossBestCallback(run_info, tokenizer))
    return trainer


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
