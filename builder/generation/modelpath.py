"""Where a model's weights are: a folder, a Hub id, or one GGUF file.

transformers loads a GGUF checkpoint as ``from_pretrained(folder, gguf_file=name)`` (dequantized,
tokenizer and config read from the file's metadata), which no user types by hand: every
model-facing command (``ap2o-build sample --backend transformers``, ``ap2o-train``, ``ap2o-eval``)
takes ``--model FILE.gguf`` and splits it here, so the three cannot drift apart.
"""

from __future__ import annotations

import os
import pathlib
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
