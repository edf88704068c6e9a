"""Shared fixtures. Everything is built offline: no test downloads a model or a dataset."""

from __future__ import annotations

import atexit
import os
import pathlib
import shutil
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A datasets cache of this run's own: two folders written at the same tmp path (ds0, card0, ...) by two
# runs, or a user's earlier cache, must never hand one test another's rows.
_HF_CACHE = tempfile.mkdtemp(prefix="ap2o-tests-hf-")
atexit.register(shutil.rmtree, _HF_CACHE, ignore_errors=True)
os.environ.setdefault("HF_DATASETS_CACHE", _HF_CACHE)
import builder  # noqa: E402,F401 - its OpenMP setting must precede the first torch import of any test

REPO = pathlib.Path(__file__).resolve().parents[1]
# MBPP as a save_to_disk folder (train/validation/test), for the tests that read a real copy; they skip
# without it. Nothing outside the repository is read unless named here.
MBPP_COPY = os.environ.get("AP2O_MBPP")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# Qwen's ChatML (without its default system message): what a Qwen-style model's template writes
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tiny_model(out: pathlib.Path, *, chatml: bool = False, hidden_size: int = 64, num_attention_heads: int = 4,
                    num_key_value_heads: int = 2) -> pathlib.Path:
    """A 2-layer Qwen2 with a BPE tokenizer trained on a little Python source, saved with
    ``save_pretrained``: a real causal LM that loads through ``AutoModelForCausalLM`` in seconds.
    ``chatml``: Qwen's chat markup (``<|im_start|>``/``<|im_end|>`` tokens and template). vLLM's CPU
    attention needs a head size of at least 64 (``VLLM_TINY_MODEL``)."""
    import inspect
    import json

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    import schemas

    corpus = [inspect.getsource(schemas), json.__doc__ or "", "def f(x):\n    return x + 1\n" * 20]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] if chatml else [
        "<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>"]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=512, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML_TEMPLATE if chatml else CHAT_TEMPLATE
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(fast), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=2, num_attention_heads=num_attention_heads,
                         num_key_value_heads=num_key_value_heads, max_position_embeddings=1024,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


# head size 128 / 2 = 64: the smallest vLLM's CPU attention takes
VLLM_TINY_MODEL = {"hidden_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> pathlib.Path:
    pytest.importorskip("transformers")
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def chatml_model_dir(tmp_path_factory) -> pathlib.Path:
    pytest.importorskip("transformers")
    return make_tiny_model(tmp_path_factory.mktemp("tiny-chatml-model"), chatml=True)


@pytest.fixture(scope="session")
def mbpp_path() -> pathlib.Path:
    if not MBPP_COPY or not pathlib.Path(MBPP_COPY).exists():
        pytest.skip(f"no MBPP copy: set AP2O_MBPP to MBPP's save_to_disk folder (now: {MBPP_COPY or 'unset'})")
    return pathlib.Path(MBPP_COPY)
