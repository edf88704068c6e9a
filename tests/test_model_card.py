"""The model card of every folder ``ap2o-train`` saves, and ``--push-to-hub`` against the stand-in Hub.

Real parts: a real run of TRL steps on the tiny model with real quizzes graded in the sandbox; the
card read back as the Hub reads it (``huggingface_hub.ModelCard``: YAML + text); the push through
the Trainer's own ``push_to_hub`` to a real HTTP server on 127.0.0.1 (``hub_standin.FakeHub``)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from hub_standin import FakeHub
from tiny_dataset import write_dataset

pytest.importorskip("trl")

REPO = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["--max-length", "128", "--per-device-train-batch-size", "2", "--learning-rate", "1e-3",
         "--quiz-max-new-tokens", "16", "--quiz-workers", "1", "--report-to", "none", "--use-cpu"]
TRL_DRAFT = ("fine-tuned version of [None]", "licence: license", "[More Information Needed]")


def _card(folder: pathlib.Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md")


@pytest.fixture(scope="module")
def base_model(tiny_model_dir, tmp_path_factory) -> pathlib.Path:
    """The tiny model where the Hugging Face cache keeps ``me/tiny-coder`` (so its Hub id is known), with
    a card stating its licence."""
    folder = tmp_path_factory.mktemp("hf") / "models--me--tiny-coder" / "snapshots" / ("b" * 40)
    shutil.copytree(tiny_model_dir, folder)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny coder\n")
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> pathlib.Path:
    """The test dataset, its card naming the repo it is published as."""
    folder = write_dataset(tmp_path_factory.mktemp("card-ds"))
    with open(folder / "README.md", "a") as f:
        f.write('\n```python\nload_dataset("me/ap2o-tiny", "samples")\n```\n')
    return folder


@pytest.fixture(scope="module")
def run(base_model, dataset, tmp_path_factory) -> pathlib.Path:
    from trainer import train

    out = tmp_path_factory.mktemp("card-run") / "l2h"
    # 5 kept problems in batches of 2: 3 steps an epoch; quizzes at 2 and 4, a checkpoint at 4
    assert train.main(["--dataset", str(dataset), "--model", str(base_model), "--output-dir", str(out),
                       "--num-train-epochs", "2", "--quiz-strategy", "steps", "--quiz-steps", "2",
                       "--save-steps", "4", *SMALL]) == 0
    return out


@pytest.mark.slow
def test_every_saved_folder_has_a_real_model_card(run):
    quizzes = [json.loads(line) for line in (run / "quiz.jsonl").read_text().splitlines()]
    best = json.loads((run / "ap2o_train.json").read_text())["best"]
    for folder in (run, run / "best", run / "checkpoint-4"):
        card = _card(folder)
        text = (folder / "README.md").read_text()
        assert not any(draft in text for draft in TRL_DRAFT), folder
        data = card.data.to_dict()
        assert data["base_model"] == "me/tiny-coder" and data["base_model_relation"] == "adapter"
        assert data["datasets"] == ["me/ap2o-tiny"] and data["library_name"] == "peft"
        assert data["license"] == "apache-2.0" and data["pipeline_tag"] == "text-generation"
        assert {"ap2o", "ap2o-l2h", "dpo", "lora", "peft", "trl"} <= set(data["tags"])
        assert "AP2O-Coder (L2H)" in text and "| T (epochs) | 2 |" in text
        assert "arxiv.org/abs/2510.02393" in text and "eprint        = {2510.02393}" in text
        assert "PeftModel.from_pretrained" in text
    final, kept = (run / "README.md").read_text(), (run / "best" / "README.md").read_text()
    # the best checkpoint: its step and quiz pass@1, the quiz history and the curve beside it
    shown = f"quiz pass@1 {best['value']:.4g} at step {best['step']}"
    assert shown in final and shown in kept and "**best checkpoint**" in kept and "**final**" in final
    for q in quizzes:
        assert f"| {q['step']} | {q['pass@1']:.3f} ({q['passed']}/{q['total']}) |" in final
    for folder in (run, run / "best"):
        assert "![Quiz errors per type over training](error_curve.png)" in (folder / "README.md").read_text()
        assert (folder / "error_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "A checkpoint of the run at step 4" in (run / "checkpoint-4" / "README.md").read_text()


def test_a_run_without_a_best_checkpoint_says_its_final_model_is_the_result(tmp_path):
    from trainer.card import render_model_card

    info = {"kind": "run", "step": 3, "best": None, "method": "ap2o-h2l", "model": "/m", "dataset": "d",
            "peft": None, "quiz": {"problems": 2, "temperature": 0.01, "max_new_tokens": 8}, "prompt_format": "chat",
            "training": {"max_steps": 3}}
    text = render_model_card(tmp_path, info)
    assert "it ended before its first quiz, so this is the result" in text
    assert "No quiz had run yet" in text and "AutoModelForCausalLM.from_pretrained(" in text
    assert "library_name: transformers" in text and "base_model" not in text  # a local model of unknown origin
    assert "license: other" in text and "license_name: same-as-base-model" in text


def test_a_gguf_names_the_model_it_was_converted_from(tmp_path):
    gguf = pytest.importorskip("gguf")
    from builder.generation.modelpath import gguf_metadata, source_model
    from trainer.card import base_license

    path = tmp_path / "coder-q4_k_m.gguf"
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("Coder")
    w.add_token_list(["a", "b", "<|endoftext|>"] * 50)  # an array of strings the reader steps over
    w.add_string("general.source.huggingface.repository", "Qwen/Qwen2.5-Coder-0.5B-Instruct")
    w.add_string("general.license", "apache-2.0")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert gguf_metadata(path)["general.name"] == "Coder"
    assert source_model(str(path)) == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert base_license(str(path)) == "apache-2.0"
    (tmp_path / "other.gguf").write_bytes(b"not a gguf")
    assert source_model(str(tmp_path / "other.gguf")) is None and gguf_metadata(tmp_path / "other.gguf") == {}


# --- --push-to-hub ------------------------------------------------------------------------------------------

def _train_cli(*argv: str, endpoint: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": endpoint, "HF_TOKEN": "hf_test_token",
           "HF_HOME": str(cwd / "hf-home"), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "trainer.train", *argv], capture_output=True, text=True,
                          timeout=900, check=False, env=env, cwd=cwd)


@pytest.mark.slow
def test_push_to_hub_puts_the_adapter_the_best_checkpoint_and_the_card_on_the_hub(base_model, dataset, tmp_path):
    out = tmp_path / "run"
    with FakeHub() as hub:
        done = _train_cli("--dataset", str(dataset), "--model", str(base_model), "--output-dir", str(out),
                          "--num-train-epochs", "2", "--push-to-hub", "--hub-model-id", "me/ap2o-l2h-tiny",
                          "--hub-private-repo", *SMALL, endpoint=hub.url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        files = hub.files["me/ap2o-l2h-tiny"]
    assert f"pushed {out} to {hub.url}/me/ap2o-l2h-tiny" in done.stderr
    # a whole run says only our lines: no library warning (FutureWarning, UserWarning), no dict on stdout
    assert all(line.startswith("ap2o-train: ") for line in done.stderr.splitlines()), done.stderr
    assert done.stdout == ""
    assert next((c["organization"], c["name"], c.get("visibility")) for c in hub.created) == ("me", "ap2o-l2h-tiny", "private")
    for name in ("adapter_model.safetensors", "adapter_config.json", "README.md", "ap2o_train.json", "quiz.jsonl",
                 "error_curve.png", "best/adapter_model.safetensors", "best/README.md"):
        assert name in files, name
    assert not any(name.startswith("checkpoint-") for name in files)  # the Trainer's push leaves them home
    card = files["README.md"].decode()
    assert card == (out / "README.md").read_text()  # what is on the Hub is the folder's card
    assert not any(draft in card for draft in TRL_DRAFT)
    assert 'PeftModel.from_pretrained(base, "me/ap2o-l2h-tiny")' in card and "model_name: ap2o-l2h-tiny" in card
    assert 'subfolder="best"' in files["best/README.md"].decode()
    assert files["adapter_model.safetensors"] == (out / "adapter_model.safetensors").read_bytes()


def test_a_refused_token_stops_a_push_run_before_any_work(base_model, dataset, tmp_path):
    out = tmp_path / "run"
    with FakeHub(refuse=True) as hub:
        done = _train_cli("--dataset", str(dataset), "--model", str(base_model), "--output-dir", str(out),
                          "--push-to-hub", "--hub-model-id", "me/x", *SMALL, endpoint=hub.url, cwd=tmp_path)
    assert done.returncode == 2
    lines = [x for x in done.stderr.strip().splitlines() if x.startswith("ap2o-train: error:")]
    assert lines == [(f"ap2o-train: error: {hub.url} refused the token (HTTP 401): it needs write access to 'me/x' "
                     "(`hf auth login` with a write token, or --hub-token)")]
    assert "Traceback" not in done.stderr and not out.exists()


def test_the_official_sft_card_names_its_eval_loss(tmp_path):
    from trainer.card import render_model_card

    info = {"kind": "best", "step": 6, "method": "sft", "model": "org/base", "base_model": "org/base",
            "dataset": "org/data", "dataset_id": "org/data", "quiz": None, "prompt_format": "completion",
            "best": {"step": 6, "metric": "eval_loss", "value": 0.8125}, "peft": {"r": 16, "alpha": 32,
            "dropout": 0.05, "target_modules": ["all-linear"]}, "training": {"max_steps": 8}}
    text = render_model_card(tmp_path, info)
    assert "with the best eval_loss 0.8125 at step 6" in text and "No quiz: as the official SFT baseline" in text
    assert "base_model: org/base" in text and "- org/data" in text and "- sft" in text
    assert "[`org/data`](https://huggingface.co/datasets/org/data)" in text
