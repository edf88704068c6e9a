"""The vLLM backend. Its real tests need vLLM and a GPU and skip cleanly without them; what must
hold on every machine (the choice of default, the message when vLLM is missing) is tested here too."""

from __future__ import annotations

import importlib.util

import pytest

from builder.generation.backends import (
    BackendError,
    Request,
    SamplingParams,
    backend_class,
    default_backend,
    get_backend,
)

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed: the missing-vLLM path cannot be exercised")
def test_without_vllm_the_default_is_transformers_and_vllm_says_how_to_install():
    assert default_backend() == "transformers"
    assert backend_class("auto").name == "transformers"
    with pytest.raises(BackendError, match=r'pip install -e "\.\[vllm\]"'):
        get_backend("vllm", model="any")


def test_importing_the_module_does_not_import_vllm():
    import importlib
    import sys

    assert importlib.import_module("builder.generation.backends.vllm").VLLMBackend.name == "vllm"
    assert HAS_VLLM or "vllm" not in sys.modules


def test_unknown_backend_is_named():
    with pytest.raises(BackendError, match="unknown backend 'tgi'"):
        get_backend("tgi")


@pytest.fixture(scope="module")
def vllm_backend(request):
    pytest.importorskip("vllm", reason="vLLM not installed (GPU extra: pip install -e '.[vllm]')")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    assert default_backend() == "vllm"
    tiny_model_dir = request.getfixturevalue("tiny_model_dir")  # built only once vLLM is known to run
    b = get_backend("vllm", model=str(tiny_model_dir), gpu_memory_utilization=0.3, max_model_len=512, enforce_eager=True)
    yield b
    b.close()


@pytest.mark.slow
def test_vllm_n_answers_seeded_with_stops(vllm_backend):
    reqs = [Request("a", text="def f(x):\n"), Request("c", messages=({"role": "user", "content": "hi"},))]
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=16, seed=3, stop=("e",))
    out = vllm_backend.generate(reqs, params, progress=False)
    assert [len(a) for a in out] == [4, 4]
    assert all("e" not in t for a in out for t in a)
    assert vllm_backend.generate(reqs, params, progress=False) == out
    assert len(set(out[0])) > 1
