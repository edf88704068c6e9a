"""The model card: the ``README.md`` of every folder ``ap2o-train`` saves (the output folder, ``best/``
and each ``checkpoint-N/``), in place of TRL's draft ("fine-tuned version of [None]", ``licence:
license``) and PEFT's template.

A card is what connects a model on the Hub to the rest: its YAML names the base model
(``base_model``: the Hub id, or the one a GGUF file's metadata records), the dataset (``datasets``:
its Hub id), ``library_name`` (``peft`` for an adapter, which the Hub then loads on its base) and the
licence; its text says how the model was trained (method, T, the schedule's and the optimizer's
settings), which checkpoint the folder holds (the best quiz pass@1, or eval_loss for the official
SFT, and at which step), the quiz history and its error curve, how to load and evaluate it, and
the AP2O citation. Everything in it comes from the folder's ``ap2o_train.json`` (``trainer.runinfo``,
which ``ap2o-train`` fills with these facts) and the run's ``quiz.jsonl``, so a card can be written
again from the folder alone (``write_model_card``).

The template is ``cards/model_card.md`` (``string.Template``, like the dataset card's); the
citation is ``cards/citation.bib``, the one both cards cite. No torch is imported here.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

import cards
from builder import card_options, gguf_metadata, is_gguf, looks_local
from builder.io import atomic_path

# huggingface_hub is imported only to read a Hub model's card from the local cache.

TEMPLATE = "model_card.md"  # in the `cards` package
CARD = "README.md"
ERROR_CURVE = "error_curve.png"  # trainer.quiz draws it; a card shows it when the folder has it
QUIZ_LOG = "quiz.jsonl"
HUB = "https://huggingface.co"
METHODS = {  # the paper's Table 2, one line each
    "ap2o-l2h": "AP2O-Coder (L2H): DPO pairs ordered by an error sliding window from the rarest error type to the "
                "most frequent, with quiz-driven adaptive error replay",
    "ap2o-h2l": "AP2O-Coder (H2L): DPO pairs ordered by an error sliding window from the most frequent error type to "
                "the rarest, with quiz-driven adaptive error replay",
    "dyn-dpo": "Dyn-DPO: a fresh random passed x failed pair per problem per epoch (the paper's baseline)",
    "dpo": "DPO on every passed x failed pair (the paper's baseline)",
    "curri-dpo": "Curri-DPO: the DPO pairs listed problem by problem, rare errors first (the paper's baseline)",
    "sft": "SFT on passed answers (the paper's baseline)",
}
BASE_TAGS = ("ap2o", "code", "trl")


def _hub_id(text: str | None) -> bool:
    return bool(text) and re.match(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", str(text)) is not None \
        and not pathlib.Path(os.path.expanduser(str(text))).exists()


def dataset_id(dataset: str | None) -> str | None:
    """The dataset's Hub id: itself when it is one, else the id its folder's card names (``ap2o-build
    card --repo-id``, ``push``); None for a folder whose card names none (the placeholder)."""
    if not dataset:
        return None
    if _hub_id(dataset):
        return dataset
    folder = pathlib.Path(os.path.expanduser(dataset))
    if not (folder / CARD).is_file():
        return None

    try:
        return card_options(folder).repo_id
    except Exception:  # noqa: BLE001 - a card we cannot read names no repo
        return None


def base_license(model: str | None, gguf_file: str | None = None) -> str | None:
    """The base model's licence id where it is written down without a request: a GGUF file's
    ``general.license``, a local folder's card, the card of a Hub id in the local cache."""
    if not model:
        return None
    path = pathlib.Path(os.path.expanduser(str(model)))
    if is_gguf(str(model)) or gguf_file:
        meta = gguf_metadata(path if is_gguf(str(model)) else path / gguf_file)
        if isinstance(meta.get("general.license"), str):
            return meta["general.license"]
    card = path / CARD if path.is_dir() else None
    if card is None and not looks_local(str(model)):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(str(model), CARD)
            card = pathlib.Path(cached) if isinstance(cached, str) else None
        except Exception:  # noqa: BLE001 - not an id the cache knows
            card = None
    if card is None or not card.is_file():
        return None
    match = re.match(r"^---\n(.*?)\n---\n", card.read_text(encoding="utf-8", errors="replace"), flags=re.DOTALL)
    try:
        data = yaml.safe_load(match.group(1)) if match else None
    except yaml.YAMLError:
        return None
    value = data.get("license") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


# --- the card's parts ---------------------------------------------------------------------------------

def _link(repo: str | None, fallback: str | None, kind: str = "") -> str:
    if repo:
        return f"[`{repo}`]({HUB}/{kind}{repo})"
    return f"`{fallback}`" if fallback else "an unrecorded one"


def _is_adapter(folder: pathlib.Path, info: Mapping[str, Any]) -> bool:
    """LoRA adapters (the run info says so; a folder saved mid-run may not hold them yet), else full weights."""
    return bool(info.get("peft")) if "peft" in info else (folder / "adapter_config.json").is_file()


def _yaml_header(info: Mapping[str, Any], adapter: bool, name: str) -> str:
    license_id = info.get("license") or "other"
    data: dict[str, Any] = {}
    if info.get("base_model"):
        data["base_model"] = info["base_model"]
        data["base_model_relation"] = "adapter" if adapter else "finetune"
    if info.get("dataset_id"):
        data["datasets"] = [info["dataset_id"]]
    data["library_name"] = "peft" if adapter else "transformers"
    data["license"] = license_id
    if license_id == "other":
        data["license_name"] = "same-as-base-model"
        if info.get("base_model"):
            data["license_link"] = f"{HUB}/{info['base_model']}"
    data["model_name"] = name
    data["pipeline_tag"] = "text-generation"
    method = str(info.get("method") or "")
    data["tags"] = list(dict.fromkeys([*BASE_TAGS, method, "sft" if method == "sft" else "dpo",
                                       *(["lora", "peft"] if adapter else [])]))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).strip()


def _best_text(best: Mapping[str, Any] | None) -> str:
    if not best:
        return ""
    value = best["value"]
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{best['metric']} {shown} at step {best['step']}"


def _checkpoint_section(info: Mapping[str, Any], folder: pathlib.Path, adapter: bool) -> str:
    what = "LoRA adapter" if adapter else "model"
    kind, best = info.get("kind"), info.get("best")
    steps = (info.get("training") or {}).get("max_steps")
    of = f" of {steps}" if steps else ""
    if kind == "best":
        return (f"The **best checkpoint** of the run: the {what} at step {info.get('step')}{of}, with the best "
                f"{_best_text(best)} (a later one had to be strictly better, the official `save_strategy='best'`). "
                "This is the checkpoint the official code evaluates, and the one `ap2o-eval --adapter RUN` loads.")
    if kind == "checkpoint":
        return (f"A checkpoint of the run at step {info.get('step')}{of}, to resume from "
                f"(`ap2o-train ... --resume-from-checkpoint {folder}`) or evaluate (`--checkpoint {info.get('step')}`).")
    if info.get("status") == "started" or info.get("step") is None:
        return f"Training in progress (the {what} here is written at the end)."
    if best:
        return (f"The **final** {what} of the run, after step {info.get('step')}{of}. The run's best checkpoint, "
                f"{_best_text(best)}, is in [`best/`](best) (`ap2o-eval --adapter RUN` evaluates that one, as the "
                "official code does; `--checkpoint final` this one).")
    first = "evaluation" if info.get("method") == "sft" else "quiz"
    return (f"The **final** {what} of the run, after step {info.get('step')}{of}. The run kept no best checkpoint: it "
            f"ended before its first {first}, so this is the result.")


def _quiz_section(info: Mapping[str, Any], quiz: Sequence[Mapping[str, Any]], folder: pathlib.Path) -> str:
    q = info.get("quiz") or {}
    if not q:
        if info.get("method") == "sft" and (info.get("best") or {}).get("metric") == "eval_loss":
            return ("No quiz: as the official SFT baseline, checkpoints were chosen by `eval_loss` on the validation "
                    "problems' passed answers.")
        return "No quiz in this run (no validation problems, or the quiz turned off)."
    lines = [(f"After {q.get('when', 'each epoch')}, the policy answered {q.get('problems', '?')} held-out problems "
             f"once (temperature {q.get('temperature')}, {q.get('max_new_tokens')} new tokens, "
             f"{info.get('prompt_format')} prompts); the sandbox graded the answers, and their error counts per type "
             "steered the replay.")]
    if quiz:
        lines += ["", "| step | pass@1 | failed answers per error type |", "| ---: | ---: | --- |"]
        for r in quiz:
            errors = ", ".join(f"{t} {c}" for t, c in sorted(r["error_counts"].items(), key=lambda x: -x[1])) or "none"
            lines.append(f"| {r['step']} | {r['pass@1']:.3f} ({r.get('passed', '?')}/{r.get('total', '?')}) | {errors} |")
    else:
        lines += ["", "No quiz had run yet when this folder was saved."]
    if (folder / ERROR_CURVE).is_file():
        lines += ["", f"![Quiz errors per type over training]({ERROR_CURVE})"]
    return "\n".join(lines)


def _training_section(info: Mapping[str, Any], dataset_link: str) -> str:
    t, s, peft = info.get("training") or {}, info.get("schedule") or {}, info.get("peft")
    method = info.get("method")
    rows = [("method", f"`{method}`: {METHODS.get(method, method)}"),
            ("data", f"{dataset_link}, split `{info.get('train_split')}`, {info.get('prompt_format')} prompts")]
    if s:
        rows.append(("kept problems", f"{s.get('problems')}" + (f", {s['pairs']} distinct pairs" if s.get("pairs") else "")
                     + (f"; error order {s.get('scope')}-scope, {s.get('order')}" if method != "sft" else "")
                     + ("; replay on" if s.get("replay") and str(method).startswith("ap2o") else "")))
    rows.append(("T (epochs)", str(info.get("epochs"))))
    if t:
        processes, accumulation = t.get("processes") or 1, t.get("gradient_accumulation_steps") or 1
        rows += [("steps", f"{t.get('max_steps')} ({t.get('steps_per_epoch')} per epoch)"),
                 ("batch", f"{t.get('per_device_train_batch_size')} per device"
                           + (f" x {processes} processes" if processes > 1 else "")
                           + (f" x {accumulation} accumulated" if accumulation > 1 else "")),
                 ("optimizer", (f"AdamW, learning rate {t.get('learning_rate')}, {t.get('lr_scheduler_type')} schedule, "
                               f"warm-up {t.get('warmup_steps')}")),
                 ("sequence length", f"{t.get('max_length')} tokens"),
                 ("precision", "bf16 autocast over fp32 weights" if t.get("bf16") else "fp32")]
        if t.get("beta") is not None:
            rows.append(("DPO beta", str(t["beta"])))
    rows.append(("weights trained", f"LoRA r {peft['r']}, alpha {peft['alpha']}, dropout {peft['dropout']}, "
                                    f"{', '.join(peft['target_modules'])}" if peft else "every weight"))
    versions = info.get("versions") or {}
    if versions:
        rows.append(("software", ", ".join(f"{k} {v}" for k, v in versions.items())))
    lines = ["| | |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines)


def _usage_section(info: Mapping[str, Any], where: str, adapter: bool, subfolder: str | None) -> str:
    base, gguf = info.get("base_model") or info.get("model"), info.get("gguf_file")
    load_base = (f'AutoModelForCausalLM.from_pretrained("{os.path.dirname(base) if str(base).endswith(".gguf") else base}", '
                 f'gguf_file="{gguf}")' if gguf and not info.get("base_model")
                 else f'AutoModelForCausalLM.from_pretrained("{base}")')
    at = f'"{where}"' + (f', subfolder="{subfolder}"' if subfolder else "")
    if adapter:
        code = ["from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                f"base = {load_base}", f"model = PeftModel.from_pretrained(base, {at})",
                f"tokenizer = AutoTokenizer.from_pretrained({at})"]
    else:
        code = ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                f"model = AutoModelForCausalLM.from_pretrained({at})", f"tokenizer = AutoTokenizer.from_pretrained({at})"]
    fmt = info.get("prompt_format")
    ask = ("Ask it as it was trained: " + ("through the chat template (`tokenizer.apply_chat_template`)."
                                           if fmt == "chat" else f"in the `{fmt}` prompt format of ap2o-coder's "
                                           "`builder.generation.prompts`."))
    commands = []
    if _hub_id(where):  # ap2o-eval reads a local folder: the repo is an ap2o-train output folder once downloaded
        local = where.split("/")[-1]
        commands.append(f"hf download {where} --local-dir {local}")
        where = local
    where = f"{where}/{subfolder}" if subfolder else where
    commands.append(f"ap2o-eval --model {base} --adapter {where} --benchmark humaneval+ --output runs/eval"
                    if adapter else f"ap2o-eval --model {where} --benchmark humaneval+ --output runs/eval")
    return "\n".join(["```python", *code, "```", "", ask, "", ("Evaluate it as the paper does (pass@k and failed "
                      "answers per error type, in the prompt format it was trained with):"), "", "```bash", *commands,
                      "```"])


def _license_section(info: Mapping[str, Any]) -> str:
    base = info.get("base_model") or info.get("model")
    if info.get("license") and info["license"] != "other":
        return (f"`{info['license']}`, the licence of the base model `{base}`, whose terms this "
                f"{'adapter' if info.get('peft') else 'model'} carries; the training data's own terms are on its card.")
    return (f"No licence of its own: the terms of the base model `{base}` apply (its card states them), and those of "
            "the training data (its card states them).")


# --- the card --------------------------------------------------------------------------------------------

def read_quiz(run: str | os.PathLike) -> list[dict[str, Any]]:
    """The run's quiz history (``quiz.jsonl``), [] when there is none."""
    path = pathlib.Path(run) / QUIZ_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def render_model_card(folder: str | os.PathLike, info: Mapping[str, Any], quiz: Sequence[Mapping[str, Any]] = (),
                      *, repo_id: str | None = None, path: str | os.PathLike | None = None) -> str:
    """The card of ``folder`` (LoRA adapters when the run info says so) from its run info and the
    quiz history so far; ``repo_id``: the Hub repo it is (or will be) in, for the snippets; ``path``:
    where the folder will be when ``folder`` is a temporary one (``best/`` is written beside and renamed)."""
    image_folder = pathlib.Path(folder)
    folder = pathlib.Path(path) if path is not None else image_folder
    adapter = _is_adapter(image_folder, info)
    repo_id = repo_id or info.get("hub_model_id")
    name = (repo_id or "").split("/")[-1] or (folder.parent.name + "-" + folder.name if folder.name == "best"
                                               or folder.name.startswith("checkpoint-") else folder.name)
    dataset_link = _link(info.get("dataset_id"), info.get("dataset"), "datasets/")
    base_link = _link(info.get("base_model"), info.get("model"))
    method = info.get("method")
    summary = (f"{'A LoRA adapter for' if adapter else 'A fine-tuned version of'} {base_link}, trained on "
               f"{dataset_link} with **{METHODS.get(method, method)}**: the method of *AP2O-Coder: Adaptively "
               "Progressive Preference Optimization for Reducing Compilation and Runtime Errors in LLM-Generated "
               "Code* (AAAI'26), run by ap2o-coder's `ap2o-train` "
               f"(TRL's {'SFTTrainer' if method == 'sft' else 'DPOTrainer'}{', PEFT' if adapter else ''}).")
    # on the Hub the best checkpoint is the repo's best/ folder
    usage = _usage_section(info, repo_id or str(folder), adapter, "best" if repo_id and folder.name == "best" else None)
    return string.Template(cards.read(TEMPLATE)).substitute(
        yaml_header=_yaml_header(info, adapter, name), title=name, summary=summary,
        checkpoint_section=_checkpoint_section(info, folder, adapter),
        quiz_section=_quiz_section(info, quiz, image_folder), training_section=_training_section(info, dataset_link),
        usage_section=usage, license_section=_license_section(info), ap2o_citation=cards.ap2o_citation())


def write_model_card(folder: str | os.PathLike, info: Mapping[str, Any], quiz: Sequence[Mapping[str, Any]] = (),
                     *, repo_id: str | None = None, path: str | os.PathLike | None = None) -> pathlib.Path:
    """Write ``folder/README.md`` (atomically) from ``render_model_card``."""
    target = pathlib.Path(folder) / CARD
    with atomic_path(target) as tmp:
        tmp.write_text(render_model_card(folder, info, quiz, repo_id=repo_id, path=path), encoding="utf-8")
    return target


__all__ = ["base_license", "dataset_id", "read_quiz", "render_model_card", "write_model_card"]
