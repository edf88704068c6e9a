"""Sampling with a transformers causal LM: anywhere torch runs (CPU or one GPU), no server needed.

Two ways in: ``TransformersBackend(model="path-or-id")`` loads a model for the ``sample`` stage and
``ap2o-eval``; ``TransformersBackend.from_model(model, tokenizer)`` wraps a model that is already in
memory -- the trainer's quiz samples from the policy it is training (possibly a PEFT model), so
this path must leave the model and tokenizer exactly as it found them (training mode, padding
side, global RNG state).
"""

from __future__ import annotations

import contextlib
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
from builder.generation.modelpath import auto_dtype, load_causal_lm, load_tokenizer
from builder.progress import bar as progress_bar

# torch is imported in the methods that run a model: the backend registry, ap2o-eval and the
# trainer's command line import this module before any model is wanted, and torch costs seconds.


class TransformersBackend(Backend):
    """Batched ``model.generate`` with left padding, the chat template for chat requests, stop
    strings and a seed per batch (see ``generate``)."""

    name = "transformers"

    def __init__(self, model: str, *, revision: str | None = None, tokenizer: str | None = None,
                 device: str | None = None, dtype: str = "auto", batch_size: int = 16,
                 trust_remote_code: bool = False, gguf_file: str | None = None) -> None:
        """Load ``model`` (a local folder, a Hub id or a .gguf file, ``builder.generation.modelpath``) with
        ``AutoModelForCausalLM``. ``device``
        defaults to CUDA when available; ``batch_size`` counts sequences per ``generate`` call."""
        import torch

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        extra: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        # A separate tokenizer source takes no gguf_file unless it is itself a .gguf file.
        tok_gguf = gguf_file if tokenizer is None else None
        try:
            tok = load_tokenizer(tokenizer or model, tok_gguf, **extra)
            lm = load_causal_lm(model, gguf_file, dtype=auto_dtype(dtype, device), **extra)
        except (OSError, ValueError, ImportError, UserError) as e:  # UserError: no such path or .gguf file
            raise BackendError(f"transformers: cannot load model {model!r}: {e}") from e
        lm.to(device)
        self._init(lm, tok, batch_size=batch_size, model_id=model, revision=revision or _commit_of(lm))

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, batch_size: int = 16, model_id: str | None = None,
                   revision: str | None = None) -> TransformersBackend:
        """Wrap an already loaded model (plain or PEFT) and its tokenizer without copying them."""
        self = cls.__new__(cls)
        name = model_id or getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
        self._init(model, tokenizer, batch_size=batch_size, model_id=name, revision=revision)
        return self

    def _init(self, model: Any, tokenizer: Any, *, batch_size: int, model_id: str, revision: str | None) -> None:
        if batch_size < 1:
            raise BackendError(f"transformers: batch_size must be >= 1, got {batch_size}")
        self.lm, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.model, self.model_revision = model_id, revision

    # --- prompts --------------------------------------------------------------------------------
    def prompt_text(self, request: Request) -> str:
        """The text fed to the model: the raw prompt, or the chat template applied to the messages
        with the assistant turn opened."""
        if request.messages is None:
            if request.text is None:
                raise BackendError(f"request {request.key!r} has neither text nor messages")
            return request.text
        if not getattr(self.tokenizer, "chat_template", None):
            raise BackendError(f"transformers: {self.model!r} has no chat template; use the completion prompt format")
        return self.tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)

    # --- generation -----------------------------------------------------------------------------
    def generate(self, requests: list[Request], params: SamplingParams, *, progress: bool = True) -> list[list[str]]:
        """``params.n`` answers per request. Sequences (each prompt repeated n times) are generated
        ``batch_size`` at a time; batch ``b`` is seeded with ``derive_seed(params.seed, b)`` inside
        a forked RNG, so a rerun with the same requests and batch size gives the same answers and
        the caller's RNG stream (a training run's dropout, data order) is untouched."""
        import torch

        texts = [self.prompt_text(r) for r in requests]
        jobs = [(i, texts[i]) for i in range(len(requests)) for _ in range(params.n)]
        out: list[list[str]] = [[] for _ in requests]
        device = _device_of(self.lm)
        devices = [device] if device.type == "cuda" else []
        bar = progress_bar(total=len(jobs), desc=f"sampling ({self.name})", unit="answer", disable=not progress)
        with self._generation_mode(), torch.random.fork_rng(devices=devices), bar:
            for b, start in enumerate(range(0, len(jobs), self.batch_size)):
                batch = jobs[start:start + self.batch_size]
                torch.manual_seed(derive_seed(params.seed, "batch", b))
                for (i, _), answer in zip(batch, self._generate_batch([t for _, t in batch], params, device)):
                    out[i].append(answer)
                bar.update(len(batch))
        return out

    def _generate_batch(self, texts: list[str], params: SamplingParams, device: Any) -> list[str]:
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=params.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            # Neutralise sampling knobs a checkpoint's generation_config may carry (Qwen instruct
            # ships top_k=20, repetition_penalty=1.1): answers must follow SamplingParams alone,
            # as they do on the vLLM and OpenAI backends.
            top_k=0, repetition_penalty=1.0, min_p=0.0,
        )
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        try:
            with torch.no_grad():
                seqs = self.lm.generate(**enc, **kwargs)
        except (RuntimeError, ValueError) as e:
            raise BackendError(f"transformers: generate failed for {self.model!r}: {e}") from e
        new = seqs[:, enc["input_ids"].shape[1]:]
        answers = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [truncate_at_stop(a, params.stop) for a in answers]

    @contextlib.contextmanager
    def _generation_mode(self):
        """Left padding and eval mode for the duration of a call, then the caller's settings back:
        the quiz runs between training steps, on the trainer's own model and tokenizer."""
        tok, lm = self.tokenizer, self.lm
        side, pad, training = tok.padding_side, tok.pad_token, lm.training
        tok.padding_side = "left"  # decoder-only: the new tokens must follow each prompt directly
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        lm.eval()
        try:
            yield
        finally:
            tok.padding_side = side
            if pad is None:
                tok.pad_token = None
            lm.train(training)

    def close(self) -> None:
        self.lm = None


def _device_of(model: Any):
    import torch

    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _commit_of(model: Any) -> str | None:
    """The Hub commit the weights were loaded from (transformers records it when loading from the
    Hub cache); None for a local folder."""
    return getattr(getattr(model, "config", None), "_commit_hash", None)
