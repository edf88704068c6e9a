"""The dataset card: parses with ``huggingface_hub.DatasetCard``, its YAML lists every config with
its splits (``pairs`` default), its tables say what the data says, and the plot is a PNG."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pyarrow as pa
import pytest
import yaml
from synthetic_samples import humaneval_samples

from builder.dataset import shards
from builder.dataset.assemble import write_configs
from builder.dataset.card import CONFIG_ORDER, CardConfig, size_category, write_card
from builder.errors import UserError


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("card") / "ap2o-demo"
    write_configs(pa.concat_tables([humaneval_samples(6), humaneval_samples(5, split="test")]), out, progress=False)
    (out / "build.yaml").write_text(yaml.safe_dump({
        "problems": {"source": "humaneval"}, "sample": {"backend": "file", "n": 6, "model": "demo-model"},
        "pairs": {"min_passed": 1, "min_failed": 2},
        "card": {"license": "mit", "tags": ["humaneval"]},
        "build_info": {"problems_report": {"per_split": {"train": 9, "test": 5}, "flagged_by_split": {"train": 3}}}}))
    write_card(out)
    return out


def test_card_parses_and_lists_every_config(folder):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "mit"  # from build.yaml's card block
    assert "humaneval" in data["tags"] and "code" in data["tags"]
    assert data["task_categories"] == ["text-generation"]
    assert data["size_categories"] == ["n<1K"]
    configs = {c["config_name"]: c for c in data["configs"]}
    assert list(configs) == list(CONFIG_ORDER)
    assert [c for c, v in configs.items() if v.get("default")] == ["pairs"]
    for name, config in configs.items():
        assert [f["split"] for f in config["data_files"]] == ["train", "test"]
        for f in config["data_files"]:
            assert list(folder.glob(f["path"])) == shards.shard_paths(folder, name, f["split"])


def test_card_tables_match_the_data(folder):
    text = (folder / "README.md").read_text()
    # 2 passes per problem + the first k % 5 broken variants of problem k: train 12 + 10, test 10 + 10;
    # the second pass differs by a trailing newline, another text; three broken variants are the same
    # text in every problem and stay only in the first (merge.py's de-duplication): each split keeps 3
    # problems with 2 passes x 2 failures
    assert "| train | 6 | 22 | 12 | 54.5% | 10 | 12 |" in text
    assert "| test | 5 | 20 | 10 | 50.0% | 10 | 12 |" in text
    assert "| `SyntaxError` | compile | 4 | 4 |" in text
    assert "| train | 9 | 3 | 6 | 6 | 3 | 3 |" in text  # read, dropped by quality, in problems, sampled, kept, dropped
    assert 'load_dataset("your-username/ap2o-demo", "notebook_by_problem", split="train")' in text
    assert text.count("```json") == len(CONFIG_ORDER)
    assert "demo-model" in text
    png = (folder / "error_distribution.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


def test_card_stage_rewrites_with_options(folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    proc = subprocess.run([sys.executable, "-m", "builder.cli", "card", str(copy), "--repo-id", "me/ap2o-demo",
                           "--license", "apache-2.0", "--pretty-name", "Demo"],
                          check=False, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = (copy / "README.md").read_text()
    assert 'load_dataset("me/ap2o-demo", "pairs", split="train")' in text
    assert "license: apache-2.0" in text and "# Demo" in text


def test_card_needs_the_configs(tmp_path):
    with pytest.raises(UserError, match="no such dataset folder"):
        write_card(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no 'samples' config"):
        write_card(tmp_path / "empty", CardConfig())
    assert not (tmp_path / "empty" / "README.md").exists()


def test_size_categories():
    assert [size_category(n) for n in (0, 999, 1000, 16_400, 1_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]


# --- the card as a user reads it (issue 11 item 5) -----------------------------------------------

def _yaml(folder: pathlib.Path) -> dict:
    from huggingface_hub import DatasetCard

    return DatasetCard.load(folder / "README.md").data.to_dict()


def _section(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]


@pytest.mark.parametrize("config", CONFIG_ORDER)
def test_every_column_of_every_config_is_explained(folder, config):
    import pyarrow.parquet as pq

    text = (folder / "README.md").read_text()
    table = _section(text, f"### `{config}`\n")
    schema = pq.read_schema(shards.shard_paths(folder, config, "train")[0])
    rows = {line.split(" | ")[0].strip("| `"): line.rsplit(" | ", 1)[1].rstrip(" |")
            for line in table.splitlines() if line.startswith("| `")}
    assert list(rows) == schema.names
    assert all(meaning.strip() for meaning in rows.values()), [c for c, m in rows.items() if not m.strip()]


def test_yaml_names_sources_creators_and_parses(folder):
    data = _yaml(folder)
    assert data["source_datasets"] == ["extended|openai/openai_humaneval"]
    assert data["annotations_creators"] == ["machine-generated"]
    assert "license_name" not in data  # mit needs no name


def test_datasets_reads_the_configs_the_card_declares(folder):
    import datasets

    assert sorted(datasets.get_dataset_config_names(str(folder))) == sorted(CONFIG_ORDER)
    pairs = datasets.load_dataset(str(folder), "pairs", split="test", cache_dir=str(folder.parent / "hf-cache"))
    assert len(pairs) == 12  # the test split of the table above


def test_other_licence_gets_a_licence_name(folder, tmp_path):
    import shutil

    copy = tmp_path / "ap2o-demo"
    shutil.copytree(folder, copy)
    write_card(copy, CardConfig(license="other"))
    assert (_yaml(copy)["license"], _yaml(copy)["license_name"]) == ("other", "unspecified")
    write_card(copy, CardConfig(license="other", license_name="qwen-research"))
    assert _yaml(copy)["license_name"] == "qwen-research"


def test_contamination_warning_names_the_test_split(folder):
    limits = _section((folder / "README.md").read_text(), "## Limitations\n")
    assert "Contamination: the pairs of split `test` come from the *test* problems of `humaneval`" in limits
    assert "`train`" not in limits.split("Contamination", 1)[1].split("\n")[0]


def test_no_contamination_warning_without_a_test_split(tmp_path):
    out = tmp_path / "train-only"
    write_configs(humaneval_samples(6), out, progress=False)
    (out / "build.yaml").write_text(yaml.safe_dump({"problems": {"source": "mbpp", "split": "train"}}))
    write_card(out)
    text = (out / "README.md").read_text()
    assert "## Limitations" in text and "Contamination" not in text
    assert _yaml(out)["source_datasets"] == ["extended|google-research-datasets/mbpp"]


def test_bibtex_names_the_papers_authors(folder):
    bib = (folder / "README.md").read_text().split("```bibtex", 1)[1].split("```", 1)[0]
    assert "author        = {Zhang, Jianqing and Xia, Wei and Dong, Hande and Lin, Qiang and Cao, Jian}" in bib
    assert "2510.02393" in bib


def test_card_stage_with_only_a_repo_id_keeps_the_licence(folder, tmp_path):
    import shutil

    copy = tmp_path / "keep"
    shutil.copytree(folder, copy)
    proc = subprocess.run([sys.executable, "-m", "builder.cli", "card", str(copy), "--repo-id", "me/keep"],
                          check=False, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = _yaml(copy)
    assert data["license"] == "mit" and "humaneval" in data["tags"]
    assert 'load_dataset("me/keep", "samples", split="train")' in (copy / "README.md").read_text()


def test_a_split_without_pairs_is_left_off_the_card_so_the_config_loads(tmp_path):
    import datasets

    out = tmp_path / "ds"
    # two test problems with 0 and 1 failed answers: the pairs filter (>= 2 failed) keeps neither
    write_configs(pa.concat_tables([humaneval_samples(6), humaneval_samples(2, split="test")]), out, progress=False)
    (out / "build.yaml").write_text(yaml.safe_dump({"problems": {"source": "humaneval"}}))
    assert shards.splits(out, "pairs") == ["train", "test"]  # the empty shard is written
    write_card(out)
    pairs = datasets.load_dataset(str(out), "pairs")
    assert list(pairs) == ["train"] and pairs["train"].num_rows > 0


# --- every claim true (issue 21) ------------------------------------------------------------------

def test_the_benchmarks_the_card_names_are_ap2o_evals_and_no_default_is_claimed(folder):
    from builder.problems.benchmarks import BENCHMARKS
    from builder.problems.sources import HUMANEVAL, MBPP

    limits = _section((folder / "README.md").read_text(), "## Limitations\n")
    assert "by default" not in limits  # ap2o-eval's default is plain humaneval: the card states no default
    assert "all four are `ap2o-eval --benchmark` choices" in limits
    assert {"humaneval+", "mbpp+"} <= set(BENCHMARKS) and (HUMANEVAL, MBPP) == ("humaneval", "mbpp")


def test_links_are_the_paper_and_its_official_code_only(folder):
    import re

    text = (folder / "README.md").read_text()
    links = set(re.findall(r"https?://[^\s)\]}>\"']+", text))
    assert links == {"https://arxiv.org/abs/2510.02393", "https://github.com/TsingZ0/AP2O"}
    before_bibtex = text.split("```bibtex", 1)[0]
    assert "(https://arxiv.org/abs/2510.02393)" in before_bibtex  # a plain link the Hub turns into the paper page


def test_the_sources_paper_is_cited_with_its_licence(folder, tmp_path):
    text = (folder / "README.md").read_text()
    citation = text.split("## Citation", 1)[1]
    assert citation.count("```bibtex") == 2 and "arXiv:2107.03374" in citation  # HumanEval (Chen et al.)
    assert "(HumanEval: MIT)" in _section(text, "## Limitations\n")
    out = tmp_path / "mbpp-train"
    write_configs(humaneval_samples(4, split="train"), out, progress=False)
    (out / "build.yaml").write_text(yaml.safe_dump({"problems": {"source": "mbpp", "split": "train"}}))
    write_card(out)
    citation = (out / "README.md").read_text().split("## Citation", 1)[1]
    assert "arXiv:2108.07732" in citation  # MBPP (Austin et al.), and HumanEval: the rows' source column
    assert "arXiv:2107.03374" in citation


def test_provenance_names_the_backend_the_model_file_and_its_quantization(tmp_path):
    graded = humaneval_samples(6)
    n = graded.num_rows
    for name, value in (("backend", "openai"), ("model", "org/coder"), ("model_revision", "coder-Q4_K_M.gguf@sha256:0123abcd")):
        graded = graded.set_column(graded.column_names.index(name), name, pa.array([value] * n, pa.string()))
    out = tmp_path / "recorded"
    write_configs(graded, out, progress=False)
    (out / "build.yaml").write_text(yaml.safe_dump({
        "problems": {"source": "humaneval"}, "sample": {"backend": "file", "completions": "answers.jsonl"}}))
    write_card(out)
    built = _section((out / "README.md").read_text(), "## How the data was built\n")
    assert (f"{n} answers written by `org/coder`, model file `coder-Q4_K_M.gguf` (`sha256:0123abcd`; Q4_K_M-quantized, "
            "not the full-precision weights), sampled through the `openai` backend (an OpenAI-compatible server)") in built
    assert "This build imported them from that recording with the `file` backend (`answers.jsonl`)" in built


def test_quantization_is_read_from_a_gguf_files_name():
    from builder.dataset.card import quantization

    assert [quantization(r) for r in ("qwen2.5-coder-0.5b-instruct-q4.gguf@sha256:1d96", "m.Q4_K_M.gguf",
                                      "m-f16.gguf", "m-IQ3_XS.gguf", "abc123", None, "model.gguf")] == [
        "Q4", "Q4_K_M", "F16", "IQ3_XS", None, None, None]


def test_the_recipe_is_folded_and_the_card_stamped(folder):
    from builder.dataset.card import is_stamped

    text = (folder / "README.md").read_text()
    built = text.split("## How the data was built\n", 1)[1].split("\n## ", 1)[0]
    assert "<details>" in built and "</details>" in built
    assert built.index("<details>") < built.index("```yaml") < built.index("</details>")
    assert is_stamped(text) and not is_stamped(text.replace("## Summary", "## Summary (edited)"))


def test_num_bytes_are_what_push_to_hub_records(folder):
    """``Dataset.push_to_hub`` records a split's ``num_bytes`` as the loaded table's Arrow size
    (``Dataset._estimate_nbytes``); the card's dataset_info says the same for every config and split."""
    import datasets

    for info in _yaml(folder)["dataset_info"]:
        for split in info["splits"]:
            ds = datasets.load_dataset(str(folder), info["config_name"], split=split["name"],
                                       cache_dir=str(folder.parent / "nbytes-cache"))
            assert split["num_bytes"] == ds._estimate_nbytes(), (info["config_name"], split["name"])
            assert split["num_examples"] == len(ds)
        assert info["dataset_size"] == sum(s["num_bytes"] for s in info["splits"])


def test_other_licence_links_a_licence_note_that_exists(folder, tmp_path):
    import shutil

    copy = tmp_path / "ap2o-demo"
    shutil.copytree(folder, copy)
    write_card(copy, CardConfig(license="other"))
    data = _yaml(copy)
    assert data["license_link"] == "LICENSE.md" and (copy / "LICENSE.md").is_file()
    note = (copy / "LICENSE.md").read_text()
    assert "No licence was chosen" in note and "HumanEval: MIT" in note and "demo-model" in note
    write_card(copy, CardConfig(license="other", license_link="https://example.org/terms"))
    assert _yaml(copy)["license_link"] == "https://example.org/terms" and not (copy / "LICENSE.md").exists()
    write_card(copy, CardConfig(license="other"))
    write_card(copy, CardConfig(license="mit"))
    assert "license_link" not in _yaml(copy) and not (copy / "LICENSE.md").exists()  # ours, gone with the need
    (copy / "LICENSE.md").write_text("The owner's own terms.\n")
    write_card(copy, CardConfig(license="other"))
    assert (copy / "LICENSE.md").read_text() == "The owner's own terms.\n"  # never overwritten


def test_the_error_plot_labels_each_bar_with_its_count(folder):
    import matplotlib.pyplot as plt

    from builder.dataset.card import collect_stats, error_figure

    st = collect_stats(folder)
    fig = error_figure(st, "t")
    labels = sorted(t.get_text() for t in fig.axes[0].texts)
    plt.close(fig)
    counts = sorted(f"{int(v):,}" for s in st.splits for v in st.error_counts[s].to_list())
    assert labels == counts and labels


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("card-chat") / "ap2o-chat"
    write_configs(humaneval_samples(6, prompt_format="chat"), out, progress=False)
    write_card(out)
    return out


def test_the_card_says_which_form_trl_gets(folder, chat_folder):
    text = _section((folder / "README.md").read_text(), "## Train on it with TRL\n")
    chat = _section((chat_folder / "README.md").read_text(), "## Train on it with TRL\n")
    assert "no chat template" in text and "conversational form" not in text
    assert "TRL's conversational form (message lists)" in chat
    columns = _section((chat_folder / "README.md").read_text(), "### `pairs`\n")
    assert "| `prompt` | list of {role: string, content: string} |" in columns


def _snippets(text: str, repo: str, model: str, out: pathlib.Path) -> str:
    """The card's TRL code, pointed at a local folder and model, each trainer one step on the CPU."""
    import re

    section = text.split("## Train on it with TRL\n", 1)[1].split("\n## ", 1)[0]
    code = "\n".join(re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL))
    code = code.replace("your-username/ap2o-chat", repo).replace('model="MODEL"', f'model="{model}"')
    return re.sub(r'(\w+Config)\(output_dir="(\w+)"\)', lambda m: (
        f'{m[1]}(output_dir="{out / m[2]}", max_steps=1, report_to=[], use_cpu=True, save_strategy="no", '
        'max_length=1024, per_device_train_batch_size=4)'), code)


@pytest.mark.slow
def test_the_cards_trl_snippets_train_as_written(chat_folder, chatml_model_dir, tmp_path):
    text = (chat_folder / "README.md").read_text()
    assert 'model="MODEL"' in text  # the synthetic answers name no Hub model
    code = _snippets(text, str(chat_folder), str(chatml_model_dir), tmp_path)
    assert code.count("max_steps=1") == 3
    namespace: dict = {}
    exec(compile(code, "card-snippets", "exec"), namespace)  # noqa: S102 - the card's own code, run as a user runs it
    assert namespace["trainer"].state.global_step == 1


def test_the_synthetic_error_types_the_card_names_are_the_taxonomys(folder):
    import re

    from builder.grading import taxonomy

    intro = (folder / "README.md").read_text().split("## Summary", 1)[0]
    named = re.search(r"the exception class, or (.*?)\), its trace", intro, flags=re.DOTALL).group(1)
    assert re.findall(r"`(\w+)`", named) == list(taxonomy.SYNTHETIC_TYPES)


def test_the_default_config_claim_holds(folder):
    import datasets

    text = (folder / "README.md").read_text()
    assert '`pairs` is the default config: `load_dataset("your-username/ap2o-demo")` gives it.' in text
    default = datasets.load_dataset(str(folder), split="train", cache_dir=str(folder.parent / "default-cache"))
    assert default.column_names == shards.read_split(folder, "pairs", "train").column_names
