"""Sampling with vLLM's offline engine (``LLM.generate``): the fast path on a GPU.

vLLM is an optional extra (``pip install -e ".[vllm]"``, GPU machines only: it pins its own
torch) and is imported only when this backend is built. One ``generate`` call takes every prompt
with ``SamplingParams(n=...)``; vLLM batches and schedules them itself, which is why this is the
default whenever vLLM is installed. Chat requests are rendered with the tokenizer's chat template
and sent as plain prompts, so one call serves both prompt formats.
"""

from __future__ import annotations

from typing import Any

from builder.generation.backends.base import Backend, BackendError, Request, SamplingParams, truncate_at_stop

INSTALL_HINT = 'vLLM is not installed: pip install -e ".[vllm]" (a GPU machine), or pick --backend transformers'


class VLLMBackend(Backend):
    """``vllm.LLM`` around one model; extra keyword arguments go to ``vllm.LLM`` as they are."""

    name = "vllm"

    def __init__(self, model: str, *, revision: str | None = None, dtype: str = "auto",
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, seed: int = 0, **llm_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError as e:
            raise BackendError(f"{INSTALL_HINT} ({e})") from None
        kwargs = dict(model=model, revision=revision, dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                      gpu_memory_utilization=gpu_memory_utilization, seed=seed, **llm_kwargs)
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        try:
            self.llm = vllm.LLM(**kwargs)
        except (OSError, ValueError, RuntimeError) as e:
            raise BackendError(f"vllm: cannot load model {model!r}: {e}") from e
        self._vllm = vllm
        self.model, self.model_revision = model, revision

    def prompt_text(self, request: Request) -> str:
        if request.messages is None:
            if request.text is None:
                raise BackendError(f"request {request.key!r} has neither text nor messages")
            return request.text
        tokenizer = self.llm.get_tokenizer()
        if not getattr(tokenizer, "chat_template", None):
            raise BackendError(f"vllm: {self.model!r} has no chat template; use the completion prompt format")
        return tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)

    def sampling_params(self, params: SamplingParams) -> Any:
        """Ours -> vLLM's. ``seed`` makes the whole call reproducible; vLLM still draws the ``n``
        answers of a prompt independently."""
        return self._vllm.SamplingParams(n=params.n, temperature=params.temperature, top_p=params.top_p,
                                         max_tokens=params.max_new_tokens, stop=list(params.stop) or None,
                                         seed=params.seed)

    def generate(self, requests: list[Request], params: SamplingParams, *, progress: bool = True) -> list[list[str]]:
        from builder.progress import wanted

        prompts = [self.prompt_text(r) for r in requests]
        try:
            outputs = self.llm.generate(prompts, self.sampling_params(params), use_tqdm=wanted(progress))
        except (ValueError, RuntimeError) as e:
            raise BackendError(f"vllm: generate failed for {self.model!r}: {e}") from e
        return [[truncate_at_stop(c.text, params.stop) for c in sorted(o.outputs, key=lambda c: c.index)]
                for o in outputs]

    def close(self) -> None:
        self.llm = None
