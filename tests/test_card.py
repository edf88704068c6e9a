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

from builder.dataset import shards
from builder.dataset.assemble import write_configs
from builder.dataset.card import CONFIG_ORDER, CardConfig, size_category, write_card
from builder.errors import UserError

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from synthetic_samples import humaneval_samples


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
    # 2 passes per problem (one distinct: the second adds a trailing newline) + the first k % 5 broken
    # variants of problem k: train 12 + 10, test 10 + 10; pairs 1 x (2 + 3 + 4) in each split
    assert "| train | 6 | 22 | 12 | 54.5% | 10 | 9 |" in text
    assert "| test | 5 | 20 | 10 | 50.0% | 10 | 9 |" in text
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
    assert len(pairs) == 9


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
