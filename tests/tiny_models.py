"""Tiny real models for the tests, built offline in seconds: a 2-layer Qwen2 with a BPE tokenizer
trained on a little Python source (``make_tiny_model``; conftest's ``tiny_model_dir`` and
``chatml_model_dir``), the head size vLLM's CPU attention takes (``VLLM_TINY_MODEL``), and the same
model as a GGUF file (``write_gguf``). ``benchmarks/trainer_feed.py`` builds its models here too.

torch, transformers, tokenizers and gguf are imported inside the functions: the suite collects
(and its other tests run) without the ``train`` extra.
"""

from __future__ import annotations

import json
import pathlib

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


def write_gguf(model_dir: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """The tiny HF model as an F32 GGUF, as llama.cpp's converter lays out a qwen2 model."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = model.config
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    vocab = {**tok["model"]["vocab"], **{t["content"]: t["id"] for t in tok["added_tokens"]}}
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = {t["content"] for t in tok["added_tokens"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]

    w = gguf.GGUFWriter(str(target), "qwen2")
    w.add_name("tiny-qwen2")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]) if getattr(cfg, "rope_parameters", None)
                         else float(cfg.rope_theta))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(merges)
    w.add_eos_token_id(vocab["<|endoftext|>"])
    w.add_bos_token_id(vocab["<|endoftext|>"])
    w.add_pad_token_id(vocab["<|endoftext|>"])
    w.add_chat_template(tok_cfg.get("chat_template") or (model_dir / "chat_template.jinja").read_text())
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, cfg.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # tied: llama.cpp's converter writes token_embd only
        base, suffix = hf_name.rsplit(".", 1)
        w.add_tensor(f"{names.get_name(base)}.{suffix}", tensor.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return target
