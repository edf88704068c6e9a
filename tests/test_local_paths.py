"""One check of "is this a local path or a Hub id?" for models and datasets (issue 12):
``builder.generation.modelpath.looks_local``, used by ``resolve_model`` and ``trainer.data.Dataset``."""

from __future__ import annotations

import pytest

from builder.errors import UserError
from builder.generation.modelpath import looks_local, resolve_model


@pytest.mark.parametrize("path", ["./m", "/abs/m", "~/m", "a/b/c"])
def test_a_path_shaped_name_is_local(path):
    assert looks_local(path)


@pytest.mark.parametrize("path", ["Qwen/Qwen2.5-Coder-0.5B-Instruct", "gpt2"])
def test_a_hub_shaped_name_is_not_local(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not looks_local(path)


def test_a_missing_model_under_an_existing_folder_is_named_not_sent_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(UserError, match=r"runs/typo: model not found"):
        resolve_model("runs/typo")


def test_a_missing_dataset_under_an_existing_folder_is_named_not_sent_to_the_hub(tmp_path, monkeypatch):
    from trainer.data import Dataset

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match=r"out/typo: dataset not found"):
        Dataset("out/typo")
