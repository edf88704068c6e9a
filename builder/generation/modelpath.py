"""Where a model's weights are: a folder, a Hub id, or one GGUF file.

transformers loads a GGUF checkpoint as ``from_pretrained(folder, gguf_file=name)`` (dequantized,
tokenizer and config read from the file's metadata), which no user types by hand: every
model-facing command (``ap2o-build sample --backend transformers``, ``ap2o-train``, ``ap2o-eval``)
takes ``--model FILE.gguf`` and splits it here, so the three cannot drift apart.
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Any

from builder.errors import UserError

GGUF_SUFFIX = ".gguf"


def is_gguf(model: str | None) -> bool:
    """True for a path naming a GGUF file (by its suffix, as llama.cpp and transformers name them)."""
    return bool(model) and str(model).lower().endswith(GGUF_SUFFIX)


def looks_local(path: str) -> bool:
    """Whether ``path`` is meant as a local file or folder rather than a Hub id: it exists, starts
    like a path (``.``, ``/``, ``~``), has more than one slash (a Hub id has at most one), or its
    first component is a local folder (``out/typo`` is a typo of a folder, not a repo). The one
    check every command taking "a folder or a Hub id" uses, so that a missing local path fails
    here with its name instead of going to the Hub and failing there as an unknown repo."""
    p = pathlib.Path(os.path.expanduser(path))
    return (p.exists() or path.startswith((".", "/", "~")) or path.count("/") > 1
            or (len(p.parts) > 1 and pathlib.Path(p.parts[0]).is_dir()))


def resolve_model(model: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """``(folder or Hub id, GGUF file name or None)`` for ``from_pretrained``. A ``model`` that
    is a .gguf file becomes its folder and name; otherwise ``gguf_file`` (a file inside the
    folder) passes through. A local-looking path that does not exist is a UserError here, before
    transformers would take it for a Hub id and wait on the network."""
    path = os.path.expanduser(str(model))
    if is_gguf(path):
        if gguf_file:
            raise UserError(f"--model {model} is a GGUF file; drop --gguf-file {gguf_file}")
        if not os.path.isfile(path):
            raise UserError(f"{model}: no such GGUF file")
        return os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    if looks_local(str(model)) and not os.path.exists(path):
        raise UserError(f"{model}: model not found (no such folder)")
    return path, gguf_file


def load_kwargs(model: str, gguf_file: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(path, extra from_pretrained kwargs)``: the same pair for the tokenizer and the model."""
    path, gguf = resolve_model(model, gguf_file)
    return path, ({"gguf_file": gguf} if gguf else {})


def load_tokenizer(model: str, gguf_file: str | None = None, **kwargs: Any):
    """``AutoTokenizer`` of a folder, Hub id or GGUF file (its vocabulary and chat template are
    in the file's metadata)."""
    from transformers import AutoTokenizer

    path, extra = load_kwargs(model, gguf_file)
    return AutoTokenizer.from_pretrained(path, **extra, **kwargs)


def load_causal_lm(model: str, gguf_file: str | None = None, **kwargs: Any):
    """``AutoModelForCausalLM`` of a folder, Hub id or GGUF file; a GGUF is dequantized to the
    ``dtype`` asked (fp32 unless told), so LoRA and generation run on ordinary tensors."""
    from transformers import AutoModelForCausalLM

    path, extra = load_kwargs(model, gguf_file)
    lm = AutoModelForCausalLM.from_pretrained(path, **extra, **kwargs)
    return _plain(lm) if extra else lm


def _plain(lm):
    """The dequantized weights in a plain model of the same config. transformers marks a model
    read from GGUF as quantized and then refuses ``save_pretrained`` ("not serializable"), which
    would break a full fine-tuning run's checkpoints and final save; the tensors themselves are
    ordinary, so they move into a model transformers saves like any other."""
    from transformers import AutoModelForCausalLM

    config = lm.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=lm.dtype)
    plain.load_state_dict(lm.state_dict())
    plain.generation_config = lm.generation_config
    plain.config.name_or_path = lm.config.name_or_path
    return plain


def plain_copy_dir(gguf: str | os.PathLike) -> pathlib.Path:
    """Where ``plain_folder`` keeps the plain copy of ``gguf``: under ``$AP2O_CACHE`` (default
    ``~/.cache/ap2o-coder``), named by the file's stem and the first 12 hex digits of its sha256, so
    a changed file never reuses an old copy and a renamed one does."""
    from builder.keys import file_digest

    root = os.environ.get("AP2O_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ap2o-coder")
    digest = file_digest(gguf) or "missing"
    return pathlib.Path(root) / "gguf" / f"{pathlib.Path(gguf).stem}-{digest[:12]}"


def plain_folder(gguf: str, target: str | os.PathLike | None = None, *, who: str = "model") -> str:
    """A plain Hugging Face folder (safetensors, config, tokenizer with its chat template) holding
    the weights of the GGUF file ``gguf``, dequantized by transformers to fp32, made once.

    For engines that cannot load a GGUF checkpoint as transformers does (vLLM's GGUF path needs a
    separate tokenizer and fails on these files): they load the folder instead. The folder is
    written to a temporary path and renamed (``builder.io.atomic_path``), so an interrupted
    conversion leaves nothing a later run would take for finished; one line on stderr says which
    folder is used and whether it was made now. ``target`` defaults to ``plain_copy_dir``."""
    from builder.io import atomic_path

    if resolve_model(gguf)[1] is None:
        raise UserError(f"{gguf}: not a .gguf file")
    target = pathlib.Path(target) if target is not None else plain_copy_dir(gguf)
    if (target / "config.json").is_file():
        print(f"{who}: {gguf} is GGUF; using its plain copy {target} (made earlier)", file=sys.stderr)
        return str(target)
    print(f"{who}: {gguf} is GGUF; converting it once to the plain folder {target} "
          "(dequantized to fp32 by transformers)", file=sys.stderr)
    import torch

    try:
        tokenizer = load_tokenizer(gguf)
        lm = load_causal_lm(gguf, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - a damaged file fails anywhere in gguf's reader or transformers'
        raise UserError(f"{gguf}: cannot read the GGUF file: {type(e).__name__}: {e}") from None
    with atomic_path(target) as tmp:
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return str(target)
