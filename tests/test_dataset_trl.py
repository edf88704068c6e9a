"""What other trainers see: ``datasets.load_dataset(folder, name)`` reads every config through the
card's YAML, offline; the default config is ``pairs``; the ``pairs`` config trains TRL's
``DPOTrainer`` and the ``samples`` config (prompt/completion/label) TRL's ``KTOTrainer`` and
``SFTTrainer`` as they come out of ``load_dataset``, with no mapping in between; and datasets of
the previous ``samples`` layout (version 1: ``completion`` the program) still read the same."""

from __future__ import annotations

import math
import os
import pathlib
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from builder.dataset import shards
from builder.dataset.assemble import write_configs
from builder.dataset.card import CONFIG_ORDER, write_card
from builder.dataset.pairs import make_pairs

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
    for i, passed in enumerate((2, 3)):  # a third passed answer per problem: more pairs
        out = tmp_path / str(i) / "ap2o-same-name"
        write_configs(humaneval_samples(5, passed=passed), out, progress=False)
        write_card(out)
        counts.append(len(datasets.load_dataset(str(out), "pairs", split="train")))
        assert counts[-1] == shards.read_split(out, "pairs", "train").num_rows
    assert counts[0] != counts[1]


# --- samples in TRL's prompt/completion/label convention (issue 11 item 1) -------------------------

@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> pathlib.Path:
    """The embedded default, built as a user builds it (``ap2o-build run``, no flags)."""
    out = tmp_path_factory.mktemp("embedded") / "ap2o-default"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "builder.cli", "run", "--output", str(out), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return out


def _parquet(folder: pathlib.Path, config: str):
    """A config read as a user without our card would read it: the Parquet files themselves."""
    import datasets

    files = sorted(str(p) for p in (folder / shards.DATA_DIR / config).glob("*.parquet"))
    return datasets.load_dataset("parquet", data_files=files, split="train")


@pytest.mark.slow
def test_samples_completion_is_the_pairs_answer_on_the_embedded_default(embedded):
    samples = {(r["problem_id"], r["sample_index"]): r for r in _parquet(embedded, "samples")}
    pairs = _parquet(embedded, "pairs")
    assert len(pairs) > 0
    for pair in pairs:
        chosen = samples[pair["problem_id"], pair["chosen_sample_index"]]
        rejected = samples[pair["problem_id"], pair["rejected_sample_index"]]
        assert (chosen["prompt"], chosen["completion"], chosen["label"]) == (pair["prompt"], pair["chosen"], True)
        assert (rejected["prompt"], rejected["completion"], rejected["label"]) == (pair["prompt"], pair["rejected"], False)


@pytest.mark.slow
def test_samples_completion_never_repeats_the_prompt_and_program_is_what_ran(embedded):
    samples = _parquet(embedded, "samples")
    assert samples.num_rows == 400 and set(samples["prompt_format"]) == {"completion"}
    assert not any(c.startswith(p) for p, c in zip(samples["prompt"], samples["completion"]))
    assert all(prog == p + c for prog, p, c in zip(samples["program"], samples["prompt"], samples["completion"]))


@pytest.mark.slow
def test_samples_train_two_kto_steps_unchanged_on_both_labels(embedded, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    train = _parquet(embedded, "samples")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    args = KTOConfig(output_dir=str(tmp_path / "kto"), max_steps=2, per_device_train_batch_size=4, report_to=[],
                     use_cpu=True, logging_steps=1, save_strategy="no", max_length=1024)
    trainer = KTOTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    tokenized = trainer.train_dataset
    assert set(tokenized["label"]) == {True, False}
    first = tokenized[0]
    answer = tokenizer.decode(first["completion_ids"])
    assert tokenizer.decode(first["prompt_ids"]) == first["prompt"]
    assert answer.startswith(first["completion"]) and first["prompt"] not in answer
    result = trainer.train()
    assert result.global_step == 2
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)


@pytest.mark.slow
def test_passed_samples_train_two_sft_steps_with_the_prompt_once(embedded, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    train = _parquet(embedded, "samples").filter(lambda r: r["label"])  # rows, not columns: SFT on passes
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=2, per_device_train_batch_size=2, report_to=[],
                     use_cpu=True, logging_steps=1, save_strategy="no", max_length=1024)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    first = trainer.train_dataset[0]
    text = tokenizer.decode(first["input_ids"])
    assert text.count(first["prompt"]) == 1 and text.startswith(first["prompt"])
    trained_on = tokenizer.decode([t for t, lab in zip(first["input_ids"], first["labels"]) if lab != -100])
    assert trained_on.startswith(first["completion"]) and first["prompt"] not in trained_on  # the answer's loss only
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert trainer.train().global_step == 2
    assert any(not p.detach().equal(before[n]) for n, p in model.named_parameters())


# --- datasets of the previous samples layout --------------------------------------------------------

def _version_1(table: pa.Table) -> pa.Table:
    """``table`` (the grader's layout: completion is the program, passed) as a version-1 ``samples``
    file was written: the same columns under the old schema tag."""
    meta = {b"ap2o.schema": b"samples", b"ap2o.schema_version": b"1"}
    return table.replace_schema_metadata(meta)


@pytest.fixture(scope="module")
def both_versions(tmp_path_factory) -> tuple:
    """The same graded answers as a version-1 table read back by ``datasets`` and as the version-2
    ``samples`` config built from them (completion and chat formats)."""
    import datasets

    graded = pa.concat_tables([humaneval_samples(8), humaneval_samples(6, prompt_format="chat", seed=1)])
    tmp = tmp_path_factory.mktemp("v1")
    pq.write_table(_version_1(graded), tmp / "old.parquet")
    old = datasets.load_dataset("parquet", data_files=str(tmp / "old.parquet"), split="train").data.table
    write_configs(graded, tmp / "new", progress=False)
    new = shards.read_split(tmp / "new", "samples", "train")
    assert schemas.schema_of(new) == ("samples", schemas.SCHEMA_VERSION) and "passed" in old.column_names
    return old, new, shards.read_split(tmp / "new", "pairs", "train")


def test_version_1_samples_make_the_same_pairs(both_versions):
    from builder.dataset.notebook import annotate, count_errors

    old, _, published = both_versions
    again = make_pairs(annotate(old, count_errors(old)))
    assert again.select(["prompt", "chosen", "rejected"]).equals(published.select(["prompt", "chosen", "rejected"]))


def test_version_1_samples_train_the_same_problems(both_versions):
    from trainer.data import problems_from_samples
    from trainer.schedule import ScheduleConfig

    old, new, _ = both_versions
    for fmt in ("completion", "chat"):
        pick = [f == fmt for f in old.column("prompt_format").to_pylist()]
        from_old, _ = problems_from_samples(old.filter(pa.array(pick)), ScheduleConfig())
        from_new, _ = problems_from_samples(new.filter(pa.array(pick)), ScheduleConfig())
        assert from_old == from_new and from_new, fmt
