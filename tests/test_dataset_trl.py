"""What other trainers see: ``datasets.load_dataset(folder, name)`` reads every config through the
card's YAML, offline; the default config is ``pairs``; and the ``pairs`` config trains TRL's
``DPOTrainer`` as it comes out of ``load_dataset``, with no mapping in between."""

from __future__ import annotations

import math
import pathlib
import sys

import pyarrow as pa
import pytest

import schemas
from builder import shards
from builder.card import CONFIG_ORDER, write_card
from builder.notebook import write_configs

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from synthetic_samples import humaneval_samples


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("trl") / "ap2o-trl"
    write_configs(pa.concat_tables([humaneval_samples(8), humaneval_samples(6, split="test", prompt_format="chat")]),
                  out, progress=False)
    write_card(out)
    return out


def test_every_config_loads_offline_by_name(folder):
    import datasets

    for name in CONFIG_ORDER:
        ds = datasets.load_dataset(str(folder), name)
        assert set(ds) == {"train", "test"}, name
        assert all(len(split) > 0 for split in ds.values()), name
    pairs = datasets.load_dataset(str(folder), "pairs", split="train")
    assert pairs.column_names == schemas.PAIRS.names
    default = datasets.load_dataset(str(folder), split="train")
    assert default.column_names == pairs.column_names and len(default) == len(pairs)
    samples = datasets.load_dataset(str(folder), "samples", split="train")
    assert {"error_type", "traceback", "error_frequency_problem", "error_frequency_global"} <= set(samples.column_names)


@pytest.mark.slow
def test_pairs_train_two_dpo_steps_unchanged(folder, tiny_model_dir, tmp_path):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    train = datasets.load_dataset(str(folder), "pairs", split="train")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), max_steps=2, per_device_train_batch_size=2, report_to=[],
                     use_cpu=True, logging_steps=1, save_strategy="no", max_length=1024)
    trainer = DPOTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = trainer.train()
    assert result.global_step == 2
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)  # logged every step
    assert any(not p.detach().equal(before[n]) for n, p in model.named_parameters())


def test_same_folder_name_different_data_is_not_read_from_a_stale_cache(tmp_path):
    """``datasets`` keys the cache of a local folder on its name and card YAML; the card's
    ``dataset_info`` (sizes) makes a rebuild with other data a different key."""
    import datasets

    counts = []
    for i, problems in enumerate((5, 8)):
        out = tmp_path / str(i) / "ap2o-same-name"
        write_configs(humaneval_samples(problems), out, progress=False)
        write_card(out)
        counts.append(len(datasets.load_dataset(str(out), "pairs", split="train")))
        assert counts[-1] == shards.read_split(out, "pairs", "train").num_rows
    assert counts[0] != counts[1]
