"""``ap2o-build run`` end to end with the real grader, as a user runs it (a subprocess): the folder
it leaves, resuming after SIGKILL with exactly the rows of an uninterrupted build, reuse of
checkpoints when only some settings change, and bad inputs that end with a named error and leave
no folder behind."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest
import yaml
from servers import RefusingServer

import schemas
from builder.config import RECIPES, load_recipe
from builder.dataset import shards
from builder.dataset.card import CONFIG_ORDER, STAMP

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# answers whose timing is measured, not derived: equal builds may differ there and only there
MEASURED = ("runtime_s", "reference_cpu_s")  # measured in each build: vary between runs


def _run_args(slow_completions: pathlib.Path, output: pathlib.Path, *extra: str, limit: int | None = 8) -> list[str]:
    return [sys.executable, "-m", "builder.cli", "run", "--output", str(output), "--problems", "humaneval",
            *(["--limit", str(limit)] if limit else []), "--backend", "file", "--completions", str(slow_completions),
            "--n", "10", "--chunk-problems", "2", "--timeout-s", "5", "--quiet", *extra]


def _run(*args: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=False, capture_output=True, text=True, env=ENV, timeout=300, cwd=cwd)


def _tables(folder: pathlib.Path) -> dict[tuple[str, str], pa.Table]:
    out = {}
    for config in shards.configs(folder):
        for split in shards.splits(folder, config):
            table = shards.read_split(folder, config, split)
            out[config, split] = table.drop_columns([c for c in MEASURED if c in table.column_names])
    return out


@pytest.fixture(scope="module")
def reference(slow_completions, tmp_path_factory) -> pathlib.Path:
    """An uninterrupted build."""
    out = tmp_path_factory.mktemp("reference") / "ds"
    proc = _run(*_run_args(slow_completions, out))
    assert proc.returncode == 0, proc.stderr
    return out


def test_build_leaves_a_complete_loadable_folder(reference):
    import datasets

    # LICENSE.md: the card's license_link, as this build's licence is `other` (builder.dataset.card)
    assert sorted(p.name for p in reference.iterdir()) == ["LICENSE.md", "README.md", "build.yaml", "data",
                                                           "error_distribution.png"]
    assert not list(reference.parent.glob(".*"))  # work dir and temporaries are gone
    for config in CONFIG_ORDER:
        ds = datasets.load_dataset(str(reference), config, split="test")  # HumanEval's split
        assert len(ds) > 0, config
    samples = shards.read_split(reference, "samples", "test")
    schemas.validate(samples, schemas.SAMPLES)
    assert samples.num_rows == sum(2 + k % 5 for k in range(8))
    assert set(samples.column("backend").to_pylist()) == {"file"}
    passed = samples.column("label").to_pylist()
    assert 0 < sum(passed) < len(passed)
    recipe = load_recipe(reference / "build.yaml")  # build.yaml is a recipe
    assert recipe["sample"]["n"] == 10 and recipe["chunk_problems"] == 2 and recipe["problems"]["limit"] == 8


@pytest.mark.slow
def test_sigkill_mid_grading_then_resume_gives_the_same_rows(slow_completions, reference, tmp_path):
    out = tmp_path / "ds"
    graded = tmp_path / ".ds.work" / "graded"
    proc = subprocess.Popen(_run_args(slow_completions, out), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(graded.glob("*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its grader workers, mid-grading
    proc.wait()
    done_before = len(list(graded.glob("*.parquet")))
    assert 1 <= done_before < 4, "the kill should land between the first and the last chunk"
    assert not out.exists()

    again = _run(*_run_args(slow_completions, out))
    assert again.returncode == 0, again.stderr
    assert f"4 sampled and {done_before} graded ones reused" in again.stdout
    ours, theirs = _tables(out), _tables(reference)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].equals(theirs[key]), key
    def card(folder):  # measured runtimes show in the example record and, compressed, in the file sizes
        return [line for line in (folder / "README.md").read_text().splitlines()
                if not any(k in line for k in (*(f'"{m}"' for m in MEASURED), "download_size:", "dataset_size:",
                                               "num_bytes:", STAMP))]  # the stamp hashes all of it
    assert card(out) == card(reference)


def test_changing_the_pairs_cap_reuses_every_checkpoint(slow_completions, tmp_path):
    first = _run(*_run_args(slow_completions, tmp_path / "a", "--keep-work", "--work-dir", str(tmp_path / "work")))
    assert first.returncode == 0, first.stderr
    second = _run(*_run_args(slow_completions, tmp_path / "b", "--work-dir", str(tmp_path / "work"),
                             "--max-pairs-per-problem", "1"))
    assert second.returncode == 0, second.stderr
    assert "4 sampled and 4 graded ones reused" in second.stdout
    pairs = shards.read_split(tmp_path / "b", "pairs", "test").column("problem_id").to_pylist()
    assert len(pairs) == len(set(pairs))
    assert not (tmp_path / "work").exists()  # the second build did not keep it


def test_existing_output_is_not_replaced_without_overwrite(reference, slow_completions):
    proc = _run(*_run_args(slow_completions, reference))
    assert proc.returncode == 2 and "already exists (pass --overwrite" in proc.stderr


# --- bad input: a named error, exit 2, nothing left beside the output ---------------------------

def _assert_nothing_left(parent: pathlib.Path, keep: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == keep


def test_unknown_column_mapping(tmp_path, slow_completions):
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"task_id": "t/0", "prompt": "def f():\n", "test": "def check(c):\n    assert c()\n",
                                    "entry_point": "f"}) + "\n")
    proc = _run(*_run_args(slow_completions, tmp_path / "ds"), "--problems", str(problems),
                "--column-map", "prompt=statement")
    assert proc.returncode == 2
    assert "statement" in proc.stderr and "Traceback" not in proc.stderr
    _assert_nothing_left(tmp_path, {"problems.jsonl"})


def test_empty_problem_set(tmp_path, slow_completions):
    # the only problem's test never calls the entry point: the quality filter drops it, none is left
    (tmp_path / "problems.jsonl").write_text(json.dumps({
        "task_id": "t/0", "prompt": "def f():\n", "test": "def check(candidate):\n    assert True\n",
        "entry_point": "f"}) + "\n")
    proc = _run(*_run_args(slow_completions, tmp_path / "ds", limit=None), "--problems", str(tmp_path / "problems.jsonl"))
    assert proc.returncode == 2 and "no problems to use" in proc.stderr, proc.stderr
    _assert_nothing_left(tmp_path, {"problems.jsonl"})


def test_completions_for_other_problems(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"problem_id": "MBPP/1", "completion": "x"}) + "\n")
    proc = _run(*_run_args(answers, tmp_path / "ds"))
    assert proc.returncode == 2 and "none of its problem_ids matches" in proc.stderr
    _assert_nothing_left(tmp_path, {"answers.jsonl"})


def test_malformed_completions_file(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"problem_id": "HumanEval/0", "completion": "x"}\n{"problem_id": \n')
    proc = _run(*_run_args(answers, tmp_path / "ds"))
    assert proc.returncode == 2 and "answers.jsonl:2: malformed JSON" in proc.stderr
    _assert_nothing_left(tmp_path, {"answers.jsonl"})


def test_backend_error(tmp_path):
    server = RefusingServer()
    try:
        proc = _run(sys.executable, "-m", "builder.cli", "run", "--output", str(tmp_path / "ds"), "--problems",
                    "humaneval", "--limit", "2", "--backend", "openai", "--base-url", server.url, "--model", "nope",
                    "--n", "1", "--quiet")
    finally:
        server.close()
    assert proc.returncode == 2, proc.stderr
    assert "sampling chunk 0" in proc.stderr and "400" in proc.stderr and "Traceback" not in proc.stderr
    _assert_nothing_left(tmp_path, set())


def test_recipe_errors_are_named(tmp_path, slow_completions):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"sample": {"backend": "file", "tempreature": 0.5}}))
    proc = _run(sys.executable, "-m", "builder.cli", "run", "--output", str(tmp_path / "ds"), "--config", str(recipe))
    assert proc.returncode == 2 and "unknown setting 'tempreature'" in proc.stderr and "[sample]" in proc.stderr
    recipe.write_text(yaml.safe_dump({"sampling": {}}))
    proc = _run(sys.executable, "-m", "builder.cli", "run", "--output", str(tmp_path / "ds"), "--config", str(recipe))
    assert proc.returncode == 2 and "unknown block 'sampling'" in proc.stderr
    _assert_nothing_left(tmp_path, {"recipe.yaml"})


def test_shipped_recipes_resolve():
    import argparse

    from builder.config import resolve_config

    for path in sorted(RECIPES.glob("*.yaml")):
        cfg = resolve_config(argparse.Namespace(config=str(path)))
        assert cfg.sample.n >= 1 and cfg.card.license != "other", path.name
    default = resolve_config(argparse.Namespace())  # no recipe, problems or model: the embedded default
    assert default.sample.backend == "file"
    assert default.sample.completions == "pkg://builder/data/humaneval-qwen2.5-coder-0.5b-instruct.parquet"


def test_embedded_default_builds_offline(embedded_default):
    out, proc = embedded_default
    assert "pairs" in proc.stdout
    samples = shards.read_split(out, "samples", "test")
    assert samples.num_rows >= 400
    assert set(samples.column("model").to_pylist()) == {"Qwen/Qwen2.5-Coder-0.5B-Instruct"}


@pytest.mark.parametrize("tokens, timeout", [(["--max-new-tokens", "64"], ["--timeout", "2"]),
                                             (["--max_new_tokens", "64"], ["--timeout_s", "2"])])
def test_a_setting_has_the_same_names_on_run_and_sample(tokens, timeout):
    from builder.cli import build_parser
    from builder.config import resolve_config
    from builder.generation.sample import config_from_args

    source = ["--backend", "file", "--completions", "answers.jsonl", "--no-stop"]
    built = resolve_config(build_parser().parse_args(["run", "--output", "x", *tokens, *timeout, *source]))
    sampled = config_from_args(build_parser().parse_args(["sample", "--output", "x.parquet", *tokens, *source]))
    assert (built.sample.max_new_tokens, built.sample.stop, built.grader.timeout_s) == (64, [], 2.0)
    assert (sampled.max_new_tokens, sampled.stop) == (64, [])


def test_flags_override_the_recipe_which_overrides_defaults(tmp_path):
    from builder.cli import build_parser
    from builder.config import resolve_config

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"problems": {"source": "humaneval", "limit": 3},
                                      "sample": {"backend": "file", "completions": "answers.jsonl", "n": 7},
                                      "pairs": {"seed": 5}, "chunk_problems": 4}))
    args = build_parser().parse_args(["run", "--output", "x", "--config", str(recipe), "--n", "9",
                                           "--pairs-seed", "6", "--column-map", "prompt=question", "--no-dedup"])
    cfg = resolve_config(args)
    assert (cfg.problems.limit, cfg.sample.n, cfg.sample.temperature) == (3, 9, 1.0)
    assert cfg.sample.completions == str(tmp_path / "answers.jsonl")  # relative to the recipe
    assert (cfg.pairs.seed, cfg.pairs.dedup, cfg.engine.chunk_problems, cfg.sample.seed) == (6, False, 4, 0)
    assert cfg.problems.column_map == {"prompt": "question"}


# --- a portable recipe (issue 11 item 3) ---------------------------------------------------------

def _hub_env(hub_url: str, home: pathlib.Path) -> dict[str, str]:
    return {**ENV, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub_url, "HF_HOME": str(home)}


@pytest.fixture(scope="module")
def embedded_small(tmp_path_factory) -> pathlib.Path:
    """The embedded default, its first 4 problems (a flag: build.yaml then records the limit)."""
    out = tmp_path_factory.mktemp("embedded") / "ap2o-default"
    proc = _run(sys.executable, "-m", "builder.cli", "run", "--output", str(out), "--limit", "4", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return out


def test_build_yaml_names_the_recording_by_package_reference(embedded_small):
    text = (embedded_small / "build.yaml").read_text()
    assert "completions: pkg://builder/data/humaneval-qwen2.5-coder-0.5b-instruct.parquet" in text
    assert str(pathlib.Path(__file__).resolve().parent.parent) not in text  # no path of this machine


def test_build_yaml_records_what_the_recording_says(embedded_small):
    sample = yaml.safe_load((embedded_small / "build.yaml").read_text())["sample"]
    assert (sample["model"], sample["temperature"], sample["max_new_tokens"], sample["prompt_format"]) == (
        "Qwen/Qwen2.5-Coder-0.5B-Instruct", 1.0, 512, "completion")


@pytest.mark.slow
def test_rebuild_from_the_pushed_build_yaml_gives_the_same_rows(embedded_small, tmp_path):
    from hub_standin import FakeHub

    elsewhere = tmp_path / "elsewhere"  # another working directory: nothing relative to the build helps
    elsewhere.mkdir()
    with FakeHub() as hub:
        hub.files["me/ap2o-default"] = {"build.yaml": (embedded_small / "build.yaml").read_bytes()}
        proc = subprocess.run([sys.executable, "-m", "builder.cli", "run", "--config",
                               "hf://datasets/me/ap2o-default/build.yaml", "--output", str(elsewhere / "again"),
                               "--quiet"], check=False, capture_output=True, text=True, timeout=300, cwd=elsewhere,
                              env=_hub_env(hub.url, tmp_path / "hf-home"))
    assert proc.returncode == 0, proc.stderr
    assert any("/datasets/me/ap2o-default/resolve/main/build.yaml" in path for _, path, _ in hub.requests)
    ours, theirs = _tables(elsewhere / "again"), _tables(embedded_small)
    assert ours.keys() == theirs.keys()
    assert ours["samples", "test"].num_rows == 40
    for key in ours:
        assert ours[key].equals(theirs[key]), key


def _fetch(monkeypatch, hub, tmp_path, spec):
    from huggingface_hub import constants

    from builder.config import fetch_recipe

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return fetch_recipe(spec, endpoint=hub.url)


@pytest.mark.parametrize("spec", ["me/ds", "hf://datasets/me/ds/build.yaml", "hf://datasets/me/ds"])
def test_config_names_a_hub_datasets_build_yaml(monkeypatch, tmp_path, spec):
    from hub_standin import FakeHub

    with FakeHub() as hub:
        hub.files["me/ds"] = {"build.yaml": b"problems:\n  source: humaneval\n"}
        path = _fetch(monkeypatch, hub, tmp_path, spec)
    assert path.read_bytes() == b"problems:\n  source: humaneval\n"
    assert load_recipe(path)["problems"] == {"source": "humaneval"}


def test_hub_config_errors_name_what_is_missing(monkeypatch, tmp_path):
    from hub_standin import FakeHub

    from builder.errors import UserError

    with FakeHub() as hub:
        hub.files["me/ds"] = {"README.md": b"---\n---\n"}
        with pytest.raises(UserError, match="the dataset 'me/ds' has no build.yaml"):
            _fetch(monkeypatch, hub, tmp_path, "me/ds")
        with pytest.raises(UserError, match="no dataset repo 'me/nothing'"):
            _fetch(monkeypatch, hub, tmp_path, "hf://datasets/me/nothing/build.yaml")


def test_hub_config_offline_is_one_clear_error(tmp_path):
    proc = _run(sys.executable, "-m", "builder.cli", "run", "--output", str(tmp_path / "ds"), "--config", "me/ds")
    assert proc.returncode == 2 and "HF_HUB_OFFLINE is set" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_local_recipe_that_looks_like_a_repo_id_stays_local(tmp_path):
    from builder.config import fetch_recipe

    (tmp_path / "me").mkdir()
    (tmp_path / "me" / "recipe").write_text("problems: {}\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert fetch_recipe("me/recipe") == pathlib.Path("me/recipe")
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("flags, message", [
    (["--model", "my/other-model"], "--model 'my/other-model' contradicts the recording"),
    (["--temperature", "0.2"], "--temperature 0.2 contradicts the recording: its answers were sampled with temperature 1.0"),
    (["--max-new-tokens", "1024"], "--max-new-tokens 1024 contradicts the recording"),
    (["--prompt-format", "chat"], "--prompt-format 'chat' contradicts the recording"),
])
def test_flags_cannot_relabel_the_embedded_recording(flags, message):
    from builder.cli import build_parser
    from builder.config import resolve_config
    from builder.errors import UserError

    args = build_parser().parse_args(["run", "--output", "x", "--config", str(RECIPES / "humaneval-default.yaml"),
                                           *flags])
    with pytest.raises(UserError, match=re.escape(message)):
        resolve_config(args)
