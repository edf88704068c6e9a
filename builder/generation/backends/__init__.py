"""Sampling backends behind one interface: ``get_backend(name, **kwargs).generate(requests, params)``.

Each backend lives in its own module. The modules are light (standard library and pyarrow): each
imports its heavy engine (torch and transformers, vLLM) inside the methods that use
it, so importing ``builder.generation.backends`` (as ``ap2o-build grade`` and the trainer's data
feed do) loads none of them; they load when a backend that needs them is built.
"""

from __future__ import annotations

import importlib.util

from builder.generation.backends.base import (
    Backend,
    BackendError,
    Request,
    SamplingParams,
    derive_seed,
    truncate_at_stop,
)
from builder.generation.backends.file import FileBackend
from builder.generation.backends.openai import OpenAIBackend
from builder.generation.backends.transformers import TransformersBackend
from builder.generation.backends.vllm import VLLMBackend

# name -> class. One place that knows which backends exist.
BACKENDS: dict[str, type[Backend]] = {
    "vllm": VLLMBackend,
    "transformers": TransformersBackend,
    "openai": OpenAIBackend,
    "file": FileBackend,
}

AUTO = "auto"


def default_backend() -> str:
    """The backend ``auto`` stands for: vLLM when it is installed (the GPU path), else transformers."""
    return "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"


def backend_class(name: str) -> type[Backend]:
    """The class registered under ``name`` (``auto`` resolved)."""
    if name == AUTO:
        name = default_backend()
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r} (choose from: {', '.join([AUTO, *BACKENDS])})")
    return BACKENDS[name]


def get_backend(name: str = AUTO, **kwargs) -> Backend:
    """Build the backend ``name`` (``vllm``, ``transformers``, ``openai``, ``file`` or ``auto``)
    with its own keyword arguments, e.g. ``get_backend("openai", base_url=..., model=...)``."""
    return backend_class(name)(**kwargs)


__all__ = [
    "AUTO", "BACKENDS", "Backend", "BackendError", "Request", "SamplingParams", "backend_class",
    "default_backend", "derive_seed", "get_backend", "truncate_at_stop",
]
