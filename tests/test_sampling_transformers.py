"""The transformers backend on the tiny real Qwen2 from conftest: batching, padding, seeds, stops,
chat template, and wrapping a live (PEFT) model without disturbing it."""

from __future__ import annotations

import pytest

from builder.generation.backends import BackendError, Request, SamplingParams, get_backend

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

PROMPTS = [Request("short", text="def f(x):\n"), Request("long", text="def add(a, b):\n    \"\"\"Sum.\"\"\"\n    return")]


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return get_backend("transformers", model=str(tiny_model_dir), batch_size=4, device="cpu")


def test_n_answers_per_request_in_order(backend):
    out = backend.generate(PROMPTS, SamplingParams(n=3, max_new_tokens=6, seed=0), progress=False)
    assert [len(a) for a in out] == [3, 3]
    assert all(isinstance(t, str) for a in out for t in a)
    assert backend.name == "transformers" and backend.model.endswith("tiny-model0")


def test_same_seed_same_answers_other_seed_other_answers(backend):
    p = SamplingParams(n=4, max_new_tokens=8, seed=7)
    a = backend.generate(PROMPTS, p, progress=False)
    assert backend.generate(PROMPTS, p, progress=False) == a
    assert backend.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=8, seed=8), progress=False) != a
    assert len(set(a[0])) > 1  # sampling, not n copies of one answer


def test_greedy_answers_do_not_depend_on_batch_padding(backend):
    # Left padding + attention mask: the short prompt padded next to a longer one must decode
    # exactly as it does alone. Right padding would put pad tokens between prompt and answer.
    greedy = SamplingParams(n=2, temperature=0.0, max_new_tokens=10)
    together = backend.generate(PROMPTS, greedy, progress=False)
    alone = backend.generate(PROMPTS[:1], greedy, progress=False)
    assert together[0] == alone[0]
    assert len(set(together[0])) == 1


def test_stop_strings_end_answers(backend):
    free = backend.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=24, seed=3), progress=False)
    stop = max({c for a in free for t in a for c in t}, key=lambda c: sum(c in t for a in free for t in a))
    stopped = backend.generate(PROMPTS, SamplingParams(n=4, max_new_tokens=24, seed=3, stop=(stop,)), progress=False)
    assert all(stop not in t for a in stopped for t in a)
    assert sum(map(len, (t for a in stopped for t in a))) < sum(map(len, (t for a in free for t in a)))


def test_chat_requests_use_the_chat_template(backend):
    req = Request("c", messages=({"role": "user", "content": "write f"},))
    assert backend.prompt_text(req).endswith("<|user|>\nwrite f\n<|assistant|>\n")
    assert len(backend.generate([req], SamplingParams(n=2, max_new_tokens=4), progress=False)[0]) == 2


def test_no_chat_template_is_a_backend_error(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from builder.generation.backends.transformers import TransformersBackend

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    b = TransformersBackend.from_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tok)
    with pytest.raises(BackendError, match="no chat template"):
        b.generate([Request("c", messages=({"role": "user", "content": "x"},))], SamplingParams(n=1), progress=False)


def test_from_model_leaves_a_training_peft_model_as_it_was(tiny_model_dir):
    """The quiz samples from the policy mid-training: mode, padding side and RNG must survive."""
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from builder.generation.backends.transformers import TransformersBackend

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.padding_side = "right"
    model = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                                peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    model.train()
    b = TransformersBackend.from_model(model, tok, batch_size=2, model_id="policy")
    rng = torch.get_rng_state()
    out = b.generate(PROMPTS, SamplingParams(n=3, max_new_tokens=5, seed=1), progress=False)
    assert [len(a) for a in out] == [3, 3] and b.model == "policy"
    assert model.training and tok.padding_side == "right"
    assert torch.equal(torch.get_rng_state(), rng)


def test_unloadable_model_is_a_backend_error(tmp_path):
    with pytest.raises(BackendError, match="cannot load model"):
        get_backend("transformers", model=str(tmp_path / "nowhere"))
