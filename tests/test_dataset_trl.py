"""What other trainers see: ``datasets.load_dataset(folder, name)`` reads every config through the
card's YAML, offline; the default config is ``pairs``; the ``pairs`` config trains TRL's
``DPOTrainer`` and the ``samples`` config (prompt/completion/label) TRL's ``KTOTrainer`` and
``SFTTrainer`` as they come out of ``load_dataset``, with no mapping in between; a chat-format
build is conversational to TRL (message lists: the chat template is applied), a completion-format
one is text; and datasets of the previous layouts (version 1: ``completion`` the program; version
2: chat text as strings beside ``*_messages`` columns) still read the same."""

from __future__ import annotations

import math
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from synthetic_samples import humaneval_samples

import schemas
from builder.dataset import shards
from builder.dataset.assemble import write_configs
from builder.dataset.card import CONFIG_ORDER, write_card
from builder.dataset.pairs import make_pairs


def _build(out: pathlib.Path, prompt_format: str) -> pathlib.Path:
    write_configs(pa.concat_tables([humaneval_samples(8, prompt_format=prompt_format),
                                    humaneval_samples(6, split="test", prompt_format=prompt_format)]),
                  out, progress=False)
    write_card(out)
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> pathlib.Path:
    return _build(tmp_path_factory.mktemp("trl") / "ap2o-trl", "completion")


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory) -> pathlib.Path:
    return _build(tmp_path_factory.mktemp("trl-chat") / "ap2o-trl-chat", "chat")


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


# --- conversational chat builds (issue 21 item 1) ----------------------------------------------------

def _messages(value, role: str) -> bool:
    return (isinstance(value, list) and len(value) == 1 and value[0]["role"] == role
            and isinstance(value[0]["content"], str) and value[0]["content"])


def test_a_chat_build_holds_trls_message_lists_and_a_completion_build_text(folder, chat_folder):
    import datasets
    from trl.data_utils import is_conversational

    for split in ("train", "test"):
        pairs = datasets.load_dataset(str(chat_folder), "pairs", split=split)
        samples = datasets.load_dataset(str(chat_folder), "samples", split=split)
        assert not {"prompt_messages", "chosen_messages", "rejected_messages"} & set(pairs.column_names)
        for row in pairs:
            assert is_conversational(row)
            assert _messages(row["prompt"], "user") and row["prompt"][0]["content"].startswith("Complete the following")
            assert _messages(row["chosen"], "assistant") and _messages(row["rejected"], "assistant")
        for row in samples:
            assert is_conversational(row) and _messages(row["prompt"], "user")
            assert _messages(row["completion"], "assistant") and isinstance(row["program"], str)
        text_pairs = datasets.load_dataset(str(folder), "pairs", split=split)
        text_samples = datasets.load_dataset(str(folder), "samples", split=split)
        assert not is_conversational(text_pairs[0]) and not is_conversational(text_samples[0])
        assert isinstance(text_pairs[0]["prompt"], str) and isinstance(text_samples[0]["completion"], str)
    meta = shards.read_split(chat_folder, "pairs", "train").schema
    assert schemas.schema_of(meta.empty_table()) == ("pairs", "3")


def test_a_chat_samples_answer_is_the_pairs_answer(chat_folder):
    samples = {(r["problem_id"], r["sample_index"]): r for r in shards.read_split(chat_folder, "samples", "train").to_pylist()}
    pairs = shards.read_split(chat_folder, "pairs", "train").to_pylist()
    assert pairs
    for pair in pairs:
        chosen = samples[pair["problem_id"], pair["chosen_sample_index"]]
        rejected = samples[pair["problem_id"], pair["rejected_sample_index"]]
        assert (chosen["prompt"], chosen["completion"]) == (pair["prompt"], pair["chosen"])
        assert (rejected["prompt"], rejected["completion"]) == (pair["prompt"], pair["rejected"])


def test_answers_that_mix_chat_with_a_text_format_are_refused_in_one_line(tmp_path):
    from builder.errors import UserError

    mixed = pa.concat_tables([humaneval_samples(4), humaneval_samples(4, split="test", prompt_format="chat")])
    with pytest.raises(UserError, match="mix the chat prompt format with completion") as err:
        write_configs(mixed, tmp_path / "mixed", progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "mixed").exists()


@pytest.mark.slow
def test_trl_applies_the_chat_template_to_a_chat_build_as_loaded(chat_folder, folder, chatml_model_dir, tmp_path):
    """DPO, KTO and SFT tokenise a chat build's prompt through the model's template (ChatML here:
    the prompt starts with its ``<|im_start|>`` header) with no renames; a completion build's prompt
    is the raw text. DPO then takes a step on it."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(chatml_model_dir)
    model = AutoModelForCausalLM.from_pretrained(chatml_model_dir)
    common = {"max_steps": 1, "report_to": [], "use_cpu": True, "save_strategy": "no", "max_length": 1024}
    pairs = datasets.load_dataset(str(chat_folder), "pairs", split="train")
    samples = datasets.load_dataset(str(chat_folder), "samples", split="train")

    dpo = DPOTrainer(model=model, args=DPOConfig(output_dir=str(tmp_path / "dpo"), per_device_train_batch_size=2,
                                                 **common), train_dataset=pairs, processing_class=tokenizer)
    prompt = tokenizer.decode(dpo.train_dataset[0]["prompt_ids"])
    assert prompt.startswith("<|im_start|>user\nComplete the following") and prompt.endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(dpo.train_dataset[0]["chosen_ids"]).startswith(pairs[0]["chosen"][0]["content"])
    kto = KTOTrainer(model=model, args=KTOConfig(output_dir=str(tmp_path / "kto"), per_device_train_batch_size=4,
                                                 **common), train_dataset=samples, processing_class=tokenizer)
    assert tokenizer.decode(kto.train_dataset[0]["prompt_ids"]).startswith("<|im_start|>user\n")
    sft = SFTTrainer(model=model, args=SFTConfig(output_dir=str(tmp_path / "sft"), per_device_train_batch_size=2,
                                                 **common), train_dataset=samples.filter(lambda r: r["label"]),
                     processing_class=tokenizer)
    text = tokenizer.decode(sft.train_dataset[0]["input_ids"])
    assert text.startswith("<|im_start|>user\n") and "<|im_start|>assistant\n" in text

    plain = DPOTrainer(model=model, args=DPOConfig(output_dir=str(tmp_path / "plain"), **common),
                       train_dataset=datasets.load_dataset(str(folder), "pairs", split="train"),
                       processing_class=tokenizer)
    assert not tokenizer.decode(plain.train_dataset[0]["prompt_ids"]).startswith("<|im_start|>")
    assert dpo.train().global_step == 1


@pytest.mark.slow
def test_pairs_train_orpo_and_cpo_as_loaded(chat_folder, chatml_model_dir, tmp_path):
    """The card says TRL's ORPO and CPO trainers take the pairs config's columns: one step each."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        from trl.experimental.cpo import CPOConfig, CPOTrainer
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    except ImportError:  # older TRL: top level
        from trl import CPOConfig, CPOTrainer, ORPOConfig, ORPOTrainer
    pairs = datasets.load_dataset(str(chat_folder), "pairs", split="train")
    tokenizer = AutoTokenizer.from_pretrained(chatml_model_dir)
    for trainer_cls, config_cls in ((ORPOTrainer, ORPOConfig), (CPOTrainer, CPOConfig)):
        model = AutoModelForCausalLM.from_pretrained(chatml_model_dir)
        args = config_cls(output_dir=str(tmp_path / trainer_cls.__name__), max_steps=1, per_device_train_batch_size=2,
                          report_to=[], use_cpu=True, save_strategy="no", max_length=1024)
        trainer = trainer_cls(model=model, args=args, train_dataset=pairs, processing_class=tokenizer)
        assert trainer.train().global_step == 1, trainer_cls.__name__


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
def embedded(embedded_default) -> pathlib.Path:
    """The embedded default, built as a user builds it (``ap2o-build run``, no flags)."""
    return embedded_default[0]


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
def test_the_embedded_defaults_card_says_how_its_answers_were_made(embedded):
    """The rows say the answers came from an OpenAI-compatible server running a Q4 GGUF; the build
    imported the recording with the file backend: the card's prose says the same, from the rows."""
    samples = _parquet(embedded, "samples")
    made = {(r["model"], r["model_revision"], r["backend"]) for r in samples.select_columns(
        ["model", "model_revision", "backend"])}
    assert len(made) == 1
    model, revision, backend = made.pop()
    text = (embedded / "README.md").read_text()
    built = text.split("## How the data was built\n", 1)[1].split("\n## ", 1)[0]
    name, digest = revision.split("@")
    assert (f"{samples.num_rows} answers written by `{model}`, model file `{name}` (`{digest}`; Q4-quantized, "
            f"not the full-precision weights), sampled through the `{backend}` backend") in built
    assert backend == "openai" and "imported them from that recording with the `file` backend" in built
    assert f'model="{model}"' in text  # the TRL snippets train the model that wrote the answers


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
def both_versions(tmp_path_factory) -> dict:
    """Per prompt format, the same graded answers as a version-1 table read back by ``datasets`` and
    as the ``samples`` and ``pairs`` configs built from them (a build holds one layout)."""
    import datasets

    out = {}
    for fmt, graded in (("completion", humaneval_samples(8)), ("chat", humaneval_samples(6, prompt_format="chat", seed=1))):
        tmp = tmp_path_factory.mktemp(f"v1-{fmt}")
        pq.write_table(_version_1(graded), tmp / "old.parquet")
        old = datasets.load_dataset("parquet", data_files=str(tmp / "old.parquet"), split="train").data.table
        write_configs(graded, tmp / "new", progress=False)
        new = shards.read_split(tmp / "new", "samples", "train")
        assert schemas.schema_of(new) == ("samples", schemas.SCHEMA_VERSION) and "passed" in old.column_names
        out[fmt] = (old, new, shards.read_split(tmp / "new", "pairs", "train"))
    return out


@pytest.mark.parametrize("fmt", ["completion", "chat"])
def test_version_1_samples_make_the_same_pairs(both_versions, fmt):
    from builder.dataset.conversational import to_text
    from builder.dataset.notebook import annotate, count_errors

    old, _, published = both_versions[fmt]
    again = make_pairs(annotate(old, count_errors(old)))
    columns = ["prompt", "chosen", "rejected"]
    assert again.select(columns).equals(to_text(published.select(columns)).select(columns))


@pytest.mark.parametrize("fmt", ["completion", "chat"])
def test_version_1_samples_train_the_same_problems(both_versions, fmt):
    from trainer.data import problems_from_samples
    from trainer.schedule import ScheduleConfig

    old, new, _ = both_versions[fmt]
    from_old, got = problems_from_samples(old, ScheduleConfig())
    from_new, _ = problems_from_samples(new, ScheduleConfig())
    assert from_old == from_new and from_new and got == fmt
    if fmt == "chat":  # the schedule's prompt: the conversational form, as before version 3
        assert all(p.prompt == [{"role": "user", "content": p.prompt[0]["content"]}] for p in from_new)


def _as_version_2(folder: pathlib.Path) -> None:
    """Rewrite a chat build's configs as schema version 2 wrote them: text columns as strings, the
    pairs' conversational form in ``*_messages`` columns beside them; the card again."""
    from builder.dataset.conversational import to_text

    for config in ("samples", "pairs"):
        for split in shards.splits(folder, config):
            for path in shards.shard_paths(folder, config, split):
                table = pq.read_table(path)
                text = to_text(table)
                if config == "pairs":
                    for name in ("prompt", "chosen", "rejected"):
                        text = text.append_column(pa.field(f"{name}_messages", schemas.MESSAGES), table.column(name))
                meta = {b"ap2o.schema": config.encode(), b"ap2o.schema_version": b"2"}
                pq.write_table(text.replace_schema_metadata(meta), path)
    write_card(folder)


def test_a_version_2_chat_dataset_still_trains_the_same_in_ap2o_train(tmp_path):
    """ap2o-train's reading layer takes version 2 (strings) and version 3 (messages) to the same
    problems, the schedule's prompt a message list in both."""
    from trainer.data import load_training_data
    from trainer.schedule import ScheduleConfig

    graded = humaneval_samples(8, prompt_format="chat")
    for name in ("v2", "v3"):
        write_configs(graded, tmp_path / name, progress=False)
        write_card(tmp_path / name)
    _as_version_2(tmp_path / "v2")
    samples_v2 = shards.read_split(tmp_path / "v2", "samples", "train")
    assert schemas.schema_of(samples_v2)[1] == "2" and samples_v2.schema.field("prompt").type == pa.string()
    v2, v3 = (load_training_data(str(tmp_path / n), ScheduleConfig()) for n in ("v2", "v3"))
    assert v2.problems == v3.problems and v3.problems and v2.prompt_format == v3.prompt_format == "chat"
    assert isinstance(v3.problems[0].prompt, list) and v3.problems[0].prompt[0]["role"] == "user"
