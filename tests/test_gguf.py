"""A GGUF file as ``--model`` for every model-facing command (builder.generation.modelpath).

The GGUF is real: the tiny Qwen2 of conftest written with the ``gguf`` package's ``GGUFWriter``
under the tensor names and metadata keys transformers' GGUF loader reads for qwen2
(``integrations/ggml.py``, ``modeling_gguf_pytorch_utils.py``), then loaded back by transformers.
"""

from __future__ import annotations

import pathlib

import pytest
from tiny_models import write_gguf

from builder.errors import UserError
from builder.generation.modelpath import resolve_model

pytest.importorskip("gguf")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir, tmp_path_factory) -> pathlib.Path:
    return write_gguf(tiny_model_dir, tmp_path_factory.mktemp("gguf") / "tiny-qwen2-f32.gguf")


def test_a_gguf_path_splits_into_folder_and_file(tiny_gguf):
    assert resolve_model(str(tiny_gguf)) == (str(tiny_gguf.parent), tiny_gguf.name)


def test_a_missing_gguf_file_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match="no such GGUF file"):
        resolve_model(str(tmp_path / "absent.gguf"))


def test_a_gguf_path_with_gguf_file_too_is_refused(tiny_gguf):
    with pytest.raises(UserError, match="drop --gguf-file"):
        resolve_model(str(tiny_gguf), "other.gguf")


def test_the_gguf_loads_with_the_weights_of_the_model_it_was_written_from(tiny_model_dir, tiny_gguf):
    import torch
    from transformers import AutoModelForCausalLM

    from builder.generation.modelpath import load_causal_lm

    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    got = load_causal_lm(str(tiny_gguf), dtype=torch.float32)
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        assert torch.allclose(ref(ids).logits, got(ids).logits, atol=1e-4)


def test_the_gguf_tokenizer_encodes_as_the_original(tiny_model_dir, tiny_gguf):
    from transformers import AutoTokenizer

    from builder.generation.modelpath import load_tokenizer

    text = "def f(x):\n    return x + 1\n"
    assert load_tokenizer(str(tiny_gguf))(text)["input_ids"] == AutoTokenizer.from_pretrained(tiny_model_dir)(text)["input_ids"]


def test_the_transformers_backend_samples_from_a_gguf(tiny_model_dir, tiny_gguf):
    """The ``sample`` stage's backend: greedy answers from the GGUF equal those from the folder."""
    from builder.generation.backends import Request, SamplingParams, get_backend

    req = [Request(key="p", text="def f(x):\n")]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=8)
    from_gguf = get_backend("transformers", model=str(tiny_gguf), device="cpu").generate(req, params, progress=False)
    from_dir = get_backend("transformers", model=str(tiny_model_dir), device="cpu").generate(req, params, progress=False)
    assert from_gguf == from_dir


def test_ap2o_eval_loads_a_gguf_with_an_adapter(tiny_model_dir, tiny_gguf, tmp_path):
    """``ap2o-eval --model FILE.gguf --adapter DIR``: the base comes from the GGUF, the adapter on top."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from trainer.evaluation.run import EvalConfig, _adapter_backend

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(tmp_path / "adapter")
    backend = _adapter_backend(EvalConfig.from_flat(model=str(tiny_gguf), adapter=str(tmp_path / "adapter"),
                                          backend="transformers", device="cpu", output=str(tmp_path / "out")))
    lora = [n for n, _ in backend.lm.named_parameters() if "lora_A" in n]
    assert lora and backend.lm.peft_config["default"].r == 4


def test_ap2o_train_loads_its_policy_from_a_gguf(tiny_gguf, tmp_path):
    """``ap2o-train --model FILE.gguf``: the policy is dequantized to fp32, gets a pad token, and
    saves (full fine-tuning saves every checkpoint from it)."""
    import types

    import torch

    from trainer.config import ModelArguments
    from trainer.train import load_model

    model, tokenizer = load_model(ModelArguments(model_name_or_path=str(tiny_gguf)),
                                  types.SimpleNamespace(bf16=False, trust_remote_code=False))
    assert next(model.parameters()).dtype == torch.float32 and tokenizer.pad_token is not None
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "config.json").exists()


def test_a_model_read_from_a_gguf_saves_and_reloads(tiny_gguf, tmp_path):
    """A full fine-tuning run from a GGUF must be able to save its checkpoints; transformers
    refuses save_pretrained on a model it marked GGUF-quantized."""
    import torch
    from transformers import AutoModelForCausalLM

    from builder.generation.modelpath import load_causal_lm

    lm = load_causal_lm(str(tiny_gguf), dtype=torch.float32)
    lm.save_pretrained(tmp_path / "saved")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "saved", dtype=torch.float32)
    ids = torch.tensor([[5, 17, 42]])
    with torch.no_grad():
        assert torch.equal(lm(ids).logits, again(ids).logits)
