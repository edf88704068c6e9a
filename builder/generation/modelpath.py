"""Where a model's weights are: a folder, a Hub id, or one GGUF file.

transformers loads a GGUF checkpoint as ``from_pretrained(folder, gguf_file=name)`` (dequantized,
tokenizer and config read from the file's metadata), which no user types by hand: every
model-facing command (``ap2o-build sample --backend transformers``, ``ap2o-train``, ``ap2o-eval``)
takes ``--model FILE.gguf`` and splits it here, so the three cannot drift apart.
"""

from __future__ import annotations

import os
import pathlib
import re
import struct
import sys
from typing import Any

from builder.errors import UserError
from builder.io import atomic_path
from builder.keys import file_digest

# torch, transformers and huggingface_hub are imported in the functions that load or look up a
# model: ap2o-train checks its command line with this module before TRL loads (tests/test_train_cli.py).

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


def auto_dtype(dtype: str, device: str):
    """The torch dtype to load a model in for sampling: ``auto`` is bf16 on a GPU that supports it
    (the paper's precision) and fp32 on CPU, where half-precision matmuls are slow or missing;
    any other name is torch's. The transformers backend and ``ap2o-eval --adapter`` load the same."""
    import torch  # heavy: only where a model is loaded

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


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


# --- a Hub id that cannot be had now ------------------------------------------------------------------

def check_reachable(model: str | None, revision: str | None = None, *, gguf_file: str | None = None,
                    what: str = "--model") -> None:
    """Fail at once, in one line, for a Hub id the libraries could not get: not in the local
    Hugging Face cache while offline (``HF_HUB_OFFLINE``), unknown to the Hub, or the Hub not
    reachable. transformers would find out only after its own retries (about 50 s without a network)
    and then say it in a paragraph. A local path, a GGUF file or a cached id (its ``config.json``, or
    ``gguf_file`` for a GGUF repo) passes without a request; otherwise one request (``model_info``, no
    retries) decides."""
    if not model or looks_local(str(model)) or is_gguf(model):
        return
    from huggingface_hub import constants, errors, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, gguf_file or "config.json", revision=revision)
    except errors.HFValidationError as e:
        raise UserError(f"{what} {model}: not a local folder, and not a Hub id ({str(e).splitlines()[0]})") from None
    if isinstance(cached, str):
        return
    if constants.HF_HUB_OFFLINE:
        raise UserError(f"{what} {model}: no such folder, and not in the Hugging Face cache while HF_HUB_OFFLINE "
                        f"is set (download it first, `hf download {model}`, or pass a local folder)")
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(model, revision=revision, timeout=10)
    except errors.RevisionNotFoundError:
        raise UserError(f"{what} {model}: the Hub has no revision {revision!r} of it") from None
    except (errors.RepositoryNotFoundError, errors.GatedRepoError) as e:
        gated = isinstance(e, errors.GatedRepoError)
        raise UserError(f"{what} {model}: " + ("gated on the Hub: accept its terms there and log in (`hf auth login`)"
                                               if gated else "no such folder, nor a model on the Hub (or a private "
                                               "one: `hf auth login`)")) from None
    except errors.HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        raise UserError(f"{what} {model}: the Hub answered HTTP {status} ({str(e).splitlines()[0]})") from None
    except (OSError, ValueError) as e:  # httpx's ConnectError and timeouts are OSErrors; no network at all
        raise UserError(f"{what} {model}: cannot reach {constants.ENDPOINT} ({type(e).__name__}"
                        f"{': ' + str(e).splitlines()[0] if str(e) else ''}); check the network, or pass a local "
                        "folder") from None
    except Exception as e:
        if type(e).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
            raise UserError(f"{what} {model}: cannot reach {constants.ENDPOINT} ({type(e).__name__}); check the "
                            "network, or pass a local folder") from None
        raise


# --- where a model came from, for a model card ------------------------------------------------------------

_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_metadata(path: str | os.PathLike, prefix: str = "general.") -> dict[str, Any]:
    """The metadata of a GGUF file under ``prefix`` (``general.``: its name, license, the repository
    it was converted from...), read from the file's header alone (GGUF v2/v3: its key-value section;
    arrays are skipped, a tokenizer's included, without reading the tensors); {} for a file that
    is not such a GGUF."""
    def read(f, fmt):
        size = struct.calcsize(fmt)
        data = f.read(size)
        if len(data) != size:
            raise EOFError
        return struct.unpack(fmt, data)[0]

    def string(f, keep=True):
        n = read(f, "<Q")
        if not keep:
            f.seek(n, 1)
            return None
        return f.read(n).decode("utf-8", errors="replace")

    def value(f, kind, keep):
        if kind == _GGUF_STRING:
            return string(f, keep)
        if kind == _GGUF_ARRAY:
            item, count = read(f, "<I"), read(f, "<Q")
            if item in _GGUF_SCALARS:
                f.seek(struct.calcsize(_GGUF_SCALARS[item]) * count, 1)
            else:
                for _ in range(count):
                    value(f, item, False)
            return None
        return read(f, _GGUF_SCALARS[kind])

    out: dict[str, Any] = {}
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF" or read(f, "<I") < 2:
                return {}
            read(f, "<Q")  # tensors
            for _ in range(read(f, "<Q")):
                key = string(f)
                kind = read(f, "<I")
                if kind not in _GGUF_SCALARS and kind not in (_GGUF_STRING, _GGUF_ARRAY):
                    return out
                got = value(f, kind, key.startswith(prefix))
                if key.startswith(prefix) and got is not None:
                    out[key] = got
    except (OSError, EOFError, struct.error):
        return out
    return out


def _hub_id_of_url(url: str) -> str | None:
    """``https://huggingface.co/ORG/NAME`` -> ``ORG/NAME``."""
    match = re.match(r"^https?://(?:www\.)?huggingface\.co/([\w.-]+/[\w.-]+)/?$", str(url or "").strip())
    return match.group(1) if match else None


def source_model(model: str, gguf_file: str | None = None) -> str | None:
    """The Hub id of the model a ``--model`` is, where that can be known: a Hub id itself; a folder
    in the Hugging Face cache (``models--ORG--NAME/snapshots/...``); a GGUF file whose metadata records
    the repository it was converted from (``general.source.huggingface.repository``,
    ``general.base_model.0.repo_url``); None otherwise (a local folder or file of unknown origin)."""
    path = os.path.expanduser(str(model))
    if not looks_local(str(model)) and not is_gguf(path):
        return str(model)
    cached = re.search(r"models--([\w.-]+?)--([\w.-]+)/snapshots/", os.path.abspath(path))
    if cached:
        return f"{cached.group(1)}/{cached.group(2)}"
    folder, gguf = (os.path.dirname(os.path.abspath(path)), os.path.basename(path)) if is_gguf(path) else (path, gguf_file)
    if not gguf:
        return None
    meta = gguf_metadata(os.path.join(folder, gguf))
    repo = meta.get("general.source.huggingface.repository")
    if isinstance(repo, str) and re.match(r"^[\w.-]+/[\w.-]+$", repo):
        return repo
    return _hub_id_of_url(meta.get("general.base_model.0.repo_url") or meta.get("general.source.url") or "")
