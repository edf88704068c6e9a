"""One interface for every way of getting answers from a model.

The builder's ``sample`` stage, the trainer's quiz and ``ap2o-eval`` all ask the same question:
"give me ``n`` answers to each of these prompts". A backend answers it; which one (vLLM on a GPU,
transformers anywhere, an OpenAI-compatible server, or a file of completions) is a flag, not a
code path. Each backend's module imports its engine (torch, vLLM) inside the methods that run a
model, so that ``ap2o-build grade``, which imports every backend's module, never pays for torch.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. Defaults are the paper's exam settings (n=100 at temperature 1.0, 1024 tokens)."""

    n: int = field(default=100, metadata={"help": "answers per prompt"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (paper: 1.0 exam, 0.6 eval)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    max_new_tokens: int = field(default=1024, metadata={"help": "new tokens per answer"})
    stop: tuple[str, ...] = field(default=(), metadata={"help": "stop strings (not included in the answer)"})
    seed: int = field(default=0, metadata={"help": "base seed; backends derive per-request seeds from it"})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass(frozen=True)
class Request:
    """One prompt to answer. ``text`` is the raw prompt for completion models; ``messages`` the
    chat form for instruct models (one of the two is set). ``key`` identifies it (the problem id)."""

    key: str
    text: str | None = None
    messages: tuple[dict[str, str], ...] | None = None


def truncate_at_stop(text: str, stop: Iterable[str]) -> str:
    """Cut ``text`` at the earliest occurrence of any stop string.

    Every backend applies this to what it gets back, even when the engine was given the stop
    strings too: engines differ (a token may run past the stop string, a server may cap the
    number of stop strings it honours), and the same answer must come out of every backend."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 31-bit seed for one request, from the run's seed and what identifies the request.

    Engines that take a seed per request (vLLM, llama.cpp) return the *same* answer for the same
    prompt and seed, so separate requests for one prompt need distinct seeds; hashing keeps them
    independent of request order and concurrency, so a rerun reproduces each answer."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


class BackendError(RuntimeError):
    """The model or server could not produce answers (bad path, unreachable server, HTTP error...)."""


class Backend(abc.ABC):
    """A source of answers. Subclasses set ``name`` and implement ``generate``."""

    name: str = "?"

    #: what the rows record as ``model`` / ``model_revision``
    model: str | None = None
    model_revision: str | None = None
    #: generation columns the backend knows better than the caller's parameters (a file of
    #: recorded answers knows how they were really sampled); they win over the request's values
    provenance: Mapping[str, Any] = MappingProxyType({})

    @abc.abstractmethod
    def generate(self, requests: list[Request], params: SamplingParams, *, progress: bool = True) -> list[list[str]]:
        """Return, for each request in order, ``params.n`` answer texts (the continuation only,
        stop strings removed). Raise ``BackendError`` with a clear message on failure."""

    def close(self) -> None:  # pragma: no cover - trivial
        """Release the model or connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
