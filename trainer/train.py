"""``ap2o-train``: preference optimization whose data follows the AP2O schedule, on a dataset made
by ``ap2o-build``.

    ap2o-train --dataset_name FOLDER_OR_REPO --model_name_or_path PATH_OR_ID --method ap2o-l2h --output_dir OUT \\
               [--num-train-epochs T] [--max-steps N] [--config recipe.yaml] [any field of trainer.config]

``train`` reads like the recipe: read the dataset (the contract: ``trainer.data``), build the
schedule for T epochs, wrap it as an IterableDataset, attach the quiz, train with TRL, save. Every
option is a dataclass field (``trainer.config``, ``trainer.schedule.ScheduleConfig``); a recipe
YAML sets them by name, and a setting that would not be honoured is an error naming it.
"""

from __future__ import annotations

import os
import pathlib
import random
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from builder import (
    check_reachable,
    explain_hub_error,
    is_gguf,
    load_causal_lm,
    load_tokenizer,
    looks_local,
    resolve_model,
    source_model,
)
from builder.errors import UserError, run_command
from builder.io import check_writable
from builder.progress import wanted
from trainer.arguments import parse_command_line, training_arguments
from trainer.card import base_license, dataset_id, read_quiz, write_model_card
from trainer.config import DataArguments, ModelArguments, QuizConfig
from trainer.data import dataset_location, load_training_data
from trainer.runinfo import best_of, check_output_dir, clear_run, forget_best, write_run_info
from trainer.schedule import (
    DEFAULT_EPOCHS,
    SFT,
    Batching,
    Schedule,
    ScheduleConfig,
    check_epochs,
    sft_example,
)

# The trainer's callbacks, feed, quiz and trainers, and torch, transformers, datasets and
# huggingface_hub, are imported inside the functions that train: ap2o-train reads and checks its
# command line (parse, preflight) before any of them loads (tests/test_train_cli.py).


def parse(argv: Sequence[str] | None = None):
    """(data, model, schedule, quiz, training) configs from the command line and ``--config``
    (``trainer.arguments``: our settings read and checked before TRL is imported, then the training
    arguments by TRL's own parser)."""
    line = parse_command_line(argv)
    return line.data, line.model, line.schedule, line.quiz, training_arguments(line)


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


# --- before any work ------------------------------------------------------------------------------------

def main_process() -> bool:
    """Whether this is the main process of a launch (``RANK`` 0, or no launcher): the one that checks
    and prepares the output folder, before the processes know of each other."""
    return os.environ.get("RANK", "0") == "0"


def preflight(line) -> None:
    """Everything that can be wrong with a command line, checked before TRL, transformers and torch are
    imported (seconds): the output folder (writable; an earlier run in it only with
    --overwrite-output-dir or --resume-from-checkpoint), the dataset's and the model's paths, a Hub
    model that cannot be had now (offline, unknown, no network: one line at once instead of the
    libraries' retries) and a push to an offline Hub."""
    out = line.value("output_dir")
    check_writable(out, "--output-dir", kind="into")
    if main_process():
        check_output_dir(out, overwrite=bool(line.value("overwrite_output_dir")),
                         resume=line.value("resume_from_checkpoint"))
    dataset_location(line.data.dataset_name)
    resolve_model(line.model.model_name_or_path, line.model.gguf_file)
    check_reachable(line.model.model_name_or_path, line.model.model_revision, gguf_file=line.model.gguf_file)
    if line.value("push_to_hub"):
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            raise UserError("--push-to-hub: the Hub is in offline mode (HF_HUB_OFFLINE is set): unset it to push")


def check_output(targs) -> bool:
    """The output folder, checked before any work: writable, and an earlier run in it refused unless
    continued (--resume-from-checkpoint) or replaced (--overwrite-output-dir). Returns whether an
    earlier run is to be removed (``begin_run`` removes it, once everything else has loaded)."""
    check_writable(targs.output_dir, "--output-dir", kind="into")
    if targs.process_index != 0 or not main_process():
        return False
    return check_output_dir(targs.output_dir, overwrite=targs.overwrite_output_dir, resume=targs.resume_from_checkpoint)


def begin_run(targs, run_info: dict[str, Any], replace: bool) -> None:
    """Right before the first step (a failure while loading leaves the folder as it was): the earlier
    run removed (--overwrite-output-dir, said in one line), and this run's record written
    (``ap2o_train.json``, ``status: started``), so that a run interrupted before its first checkpoint
    is still recognized as one."""
    if targs.process_index != 0 or not main_process():
        return
    out = pathlib.Path(targs.output_dir)
    if replace:
        say(targs, f"--overwrite-output-dir: removing the earlier run in {out}")
        clear_run(out)
    if targs.resume_from_checkpoint is None:
        forget_best(out)
        out.mkdir(parents=True, exist_ok=True)
        write_run_info(out, {**run_info, "kind": "run", "status": "started", "step": 0, "best": None})


def recorded_model(model: str) -> str:
    """The model as ``ap2o_train.json`` records it: a Hub id as given, a local path absolute, so that
    ``ap2o-eval --adapter RUN`` finds the base model from any folder."""
    return os.path.abspath(os.path.expanduser(model)) if looks_local(model) else model


# --- model ----------------------------------------------------------------------------------------------

def load_model(margs: ModelArguments, targs):
    """The policy and its tokenizer, in the precision of the official code (``trainer.config``),
    from a folder, a Hub id or a GGUF file (``builder.generation.modelpath``, shared with sampling and
    ap2o-eval)."""
    import torch

    dtype = margs.dtype
    if dtype == "auto":
        dtype = "bfloat16" if (margs.use_peft and targs.bf16) else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise UserError(f"dtype must be auto, float32, bfloat16 or float16, got {margs.dtype!r}")
    if not margs.use_peft and dtype != "float32":
        raise UserError(f"dtype {dtype} with full fine-tuning: the weights themselves would learn in {dtype}, where "
                        "updates at lr 5e-7 vanish; keep float32 (bf16 compute is --bf16, autocast)")
    extra: dict[str, Any] = {"trust_remote_code": targs.trust_remote_code}
    if margs.model_revision:
        extra["revision"] = margs.model_revision
    try:
        tokenizer = load_tokenizer(margs.model_name_or_path, margs.gguf_file, **extra)
        model = load_causal_lm(margs.model_name_or_path, margs.gguf_file, dtype=getattr(torch, dtype), **extra)
    except (OSError, ValueError, ImportError) as e:
        raise UserError(f"{margs.model_name_or_path}: cannot load model ({str(e).splitlines()[0]})") from None
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
    from trainer.callbacks import RunInfoCallback
    from trainer.feed import Feed, consumed_pairs
    from trainer.quiz import QuizCallback

    if not margs.model_name_or_path:
        raise UserError("--model_name_or_path is required")
    check_settings(targs)

    if not wanted():  # no bar off a terminal (builder.progress): the Trainer's own switch
        targs.disable_tqdm = True
    replace = check_output(targs)
    if targs.push_to_hub:
        hub_repo(targs)  # the repo made (or found) now: a refused token fails before any work
    epochs = check_epochs(targs.num_train_epochs or DEFAULT_EPOCHS[sched.method])
    targs.num_train_epochs = epochs
    if margs.use_peft:
        say(targs, f"training LoRA adapters (r {margs.lora_r}): the default, so that a run fits one GPU or a CPU "
                   "and ap2o-eval --adapter reads it; the paper and the recipes fine-tune every weight (--use-peft false)")
    td = load_training_data(data, sched)
    for note in td.notes:
        say(targs, note)
    model, tokenizer = load_model(margs, targs)
    td.problems = drop_long_prompts(td.problems, tokenizer, targs.max_length, targs)
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
    quizzed = bool(td.quiz_problems) and not official_sft
    if quizzed:
        if quiz.quiz_prompt_format is None:  # ask the way the exam asked
            quiz.quiz_prompt_format = td.prompt_format
        say_first_quiz(targs, quiz, schedule)
    run_info = describe_run(data, margs, sched, quiz if quizzed else None, targs, td, schedule)
    if sched.method == SFT:
        trainer = sft_trainer(model, tokenizer, targs, margs, feed, td.validation if official_sft else [], run_info)
    else:
        from trainer.trainers import AP2ODPOTrainer

        trainer = AP2ODPOTrainer(model=model, args=targs, train_dataset=feed.dataset(), processing_class=tokenizer,
                                 peft_config=margs.peft_config())
    trainer.ap2o_run_info = run_info
    plain_logs(trainer)
    # first: the feed must be rewound at train begin before the first quiz pushes into it
    feed.attach(trainer)
    trainer.add_callback(RunInfoCallback(run_info))
    if quizzed:
        QuizCallback(td.quiz_problems, quiz, due=quiz.due(schedule.steps_per_epoch), feed=feed,
                     tokenizer=tokenizer, run_info=run_info).attach(trainer)

    out = pathlib.Path(targs.output_dir)
    begin_run(targs, run_info, replace)
    result = trainer.train(resume_from_checkpoint=targs.resume_from_checkpoint)
    trainer.save_model(targs.output_dir)
    best = best_of(out)
    if targs.process_index == 0:
        final = {**run_info, "kind": "run", "step": trainer.state.global_step, "best": best}
        write_run_info(out, final)
        write_model_card(out, final, read_quiz(out))  # after save_model: TRL and PEFT leave their drafts
    if targs.push_to_hub:
        push(trainer, targs)
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


def say_first_quiz(targs, quiz: QuizConfig, schedule) -> None:
    """Say at the start, not only at the end, that a run stopping before its first quiz keeps no
    best checkpoint (ap2o-eval then evaluates its final model)."""
    due = quiz.due(schedule.steps_per_epoch)
    first = next((step for step in range(1, targs.max_steps + 1) if due(step)), None)
    if first is None and not quiz.quiz_at_start:
        say(targs, f"note: no quiz falls within the {targs.max_steps} steps (the first would come after step "
                   f"{schedule.steps_per_epoch if quiz.quiz_strategy == 'epoch' else quiz.quiz_steps}): this run "
                   "keeps no best checkpoint, and ap2o-eval will evaluate its final model")


def describe_run(data: DataArguments, margs: ModelArguments, sched: ScheduleConfig, quiz: QuizConfig | None, targs,
                 td, schedule) -> dict[str, Any]:
    """What ``ap2o_train.json`` records about the run, in every folder it saves: what ``ap2o-eval``
    reads (the prompt format, the model) and what the model card says (``trainer.card``)."""
    model = margs.model_name_or_path
    gguf = os.path.basename(model) if is_gguf(model) else margs.gguf_file
    versions = {}
    for package in ("ap2o-coder", "trl", "transformers", "peft", "torch"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    training = {name: getattr(getattr(targs, name, None), "value", getattr(targs, name, None)) for name in (
        "learning_rate", "lr_scheduler_type", "warmup_steps", "per_device_train_batch_size",
        "gradient_accumulation_steps", "max_length", "max_steps", "bf16")}
    training.update(steps_per_epoch=schedule.steps_per_epoch, processes=schedule.batching.processes,
                    beta=getattr(targs, "beta", None) if sched.method != SFT else None)
    return {
        "dataset": data.dataset_name, "dataset_id": dataset_id(data.dataset_name), "train_split": td.train_split,
        "method": sched.method, "prompt_format": td.prompt_format, "model": recorded_model(model),
        "base_model": source_model(model, margs.gguf_file), "gguf_file": gguf,
        "license": base_license(model, margs.gguf_file), "epochs": schedule.epochs,
        "schedule": {"scope": sched.scope, "order": sched.order, "replay": sched.replay,
                     "problems": len(schedule.problems),
                     "pairs": schedule.available_pairs if sched.method != SFT else None},
        "quiz": None if quiz is None else {
            "problems": len(td.quiz_problems[: quiz.quiz_max_problems]), "temperature": quiz.quiz_temperature,
            "max_new_tokens": quiz.quiz_max_new_tokens,
            "when": "each epoch" if quiz.quiz_strategy == "epoch" else f"every {quiz.quiz_steps} steps"},
        "peft": None if not margs.use_peft else {
            "r": margs.lora_r, "alpha": margs.lora_alpha, "dropout": margs.lora_dropout,
            "target_modules": list(margs.lora_target_modules)},
        "training": training, "hub_model_id": targs.hub_model_id, "versions": versions,
    }


def hub_repo(targs) -> str:
    """Create (or find) the Hub repo of ``--push-to-hub`` before any work, so that a missing or refused
    token, an offline Hub or a bad ``--hub-model-id`` is one line now, not a traceback after training;
    the Trainer pushes into it at every save and at the end. Returns the repo id."""
    from huggingface_hub import HfApi, constants

    repo = targs.hub_model_id or pathlib.Path(targs.output_dir).absolute().name
    try:
        made = HfApi().create_repo(repo, token=targs.hub_token, private=targs.hub_private_repo, exist_ok=True)
    except Exception as e:  # noqa: BLE001 - every Hub failure becomes one line (explain_hub_error)
        raise explain_hub_error(e, repo, constants.ENDPOINT, flag="--hub-model-id", token_flag="--hub-token") from None
    if targs.hub_model_id is None:
        targs.hub_model_id = made.repo_id
    return made.repo_id


def push(trainer, targs) -> None:
    """The end of a ``--push-to-hub`` run: the output folder (the final model, ``best/``, the card, the
    quiz log and curve; not the checkpoints) uploaded by the Trainer's own ``push_to_hub``, its card
    ours (``trainer.trainers``)."""
    from huggingface_hub import constants

    try:
        done = trainer.push_to_hub(commit_message=f"ap2o-train: {trainer.ap2o_run_info['method']}, "
                                                  f"step {trainer.state.global_step}")
    except Exception as e:  # noqa: BLE001 - one line, as at the start (hub_repo)
        raise explain_hub_error(e, targs.hub_model_id, constants.ENDPOINT, flag="--hub-model-id",
                                token_flag="--hub-token") from None
    say(targs, f"pushed {targs.output_dir} to {constants.ENDPOINT}/{targs.hub_model_id}"
               + (f" ({getattr(done, 'commit_url', '')})" if getattr(done, "commit_url", None) else ""))


def plain_logs(trainer) -> None:
    """The Trainer's logs as our plain stderr lines (``trainer.callbacks.LogLinesCallback``) instead of
    the dicts it prints on stdout; its progress bar stays, drawn only on a terminal (``builder.progress``)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from trainer.callbacks import BarOnlyCallback, LogLinesCallback

    had_bar = trainer.pop_callback(ProgressCallback) is not None
    trainer.remove_callback(PrinterCallback)
    if had_bar:
        trainer.add_callback(BarOnlyCallback())
    trainer.add_callback(LogLinesCallback())


def sft_trainer(model, tokenizer, targs, margs, feed, validation, run_info):
    """TRL's ``SFTTrainer`` on the feed's SFT rows. With ``validation`` (the official baseline,
    ``train.py`` L148-176): evaluated every epoch on one passed answer of each validation problem
    (one seeded draw kept for every evaluation), the best checkpoint by ``eval_loss``."""
    from datasets import Dataset
    from transformers.trainer_utils import IntervalStrategy

    from trainer.callbacks import EvalLossBestCallback

    eval_set = None
    if validation:
        rng = random.Random(feed.schedule.config.schedule_seed)
        eval_set = Dataset.from_list([sft_example(p, p.passed[rng.randrange(len(p.passed))]) for p in validation])
        targs.eval_strategy = IntervalStrategy.EPOCH
        targs.prediction_loss_only = True
    elif feed.schedule.config.sft_official:
        say(targs, "sft: no validation answers (no validation samples, nothing held out) for the official eval_loss: "
                   "no best checkpoint, the final model is the result")
    from trainer.trainers import AP2OSFTTrainer

    trainer = AP2OSFTTrainer(model=model, args=targs, train_dataset=feed.dataset(), eval_dataset=eval_set,
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
        line = parse_command_line(argv)
        preflight(line)  # before TRL is imported: every mistake a user can make in seconds
        train(line.data, line.model, line.schedule, line.quiz, training_arguments(line))  # prints its summary
        return 0

    return run_command("ap2o-train", body)


if __name__ == "__main__":
    sys.exit(main())
