"""The dataset is the contract: the trainer trains what the builder published, on the embedded
default (the README's own dataset) and on a dataset another tool wrote in our schema."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from builder.dataset import shards
from builder.errors import UserError
from trainer import schedule as S
from trainer.data import load_training_data

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def default_dataset(embedded_default) -> pathlib.Path:
    """``ap2o-build run`` with no options: the embedded default the README trains on."""
    return embedded_default[0]


def schedule(path, method, epochs=1, **kw):
    config = S.ScheduleConfig(method=method, **kw)
    data = load_training_data(str(path), config, validation_split="none")
    return S.Schedule(data.problems, config, epochs), data


@pytest.mark.slow
def test_dpo_trains_exactly_the_published_pairs(default_dataset):
    sched, data = schedule(default_dataset, S.DPO)
    published = shards.read_split(default_dataset, "pairs", "test")
    assert sched.available_pairs == published.num_rows == data.published_pairs
    ours = {(p.problem_id, c, r) for p in sched.problems for c in p.passed for r in p.failed}
    theirs = set(zip(*(published.column(c).to_pylist() for c in ("problem_id", "chosen", "rejected"))))
    assert ours == theirs


@pytest.mark.slow
@pytest.mark.parametrize("scope", [S.GLOBAL, S.PROBLEM])
def test_error_order_is_the_notebooks_counts_ties_in_sample_order(default_dataset, scope):
    notebook = shards.read_split(default_dataset, "notebook", "test").to_pylist()
    count = {(r["problem_id"], r["error_type"]): r["count"] for r in notebook if r["scope"] == scope}
    samples = shards.read_split(default_dataset, "samples", "test").to_pylist()
    first_seen = {}
    for i, r in enumerate(samples):
        first_seen.setdefault((r["problem_id"], r["completion"]), i)
    for method in (S.AP2O_L2H, S.AP2O_H2L):  # the list is L2H; H2L walks it from the back
        sched, _ = schedule(default_dataset, method, scope=scope)
        for prob in sched.problems:
            key = prob.problem_id if scope == S.PROBLEM else None
            order = [(count[(key, e)], first_seen[(prob.problem_id, a)]) for a, e in zip(prob.failed, prob.failed_types)]
            assert order == sorted(order), prob.problem_id  # rarest first; equal counts in sample order
    # and H2L's first window (T = 200: one answer) is the most frequent type: the last of the L2H list
    h2l, _ = schedule(default_dataset, S.AP2O_H2L, epochs=200, scope=scope)
    pair = h2l.next_pair()
    prob = h2l.problems[pair["problem"]]
    key = prob.problem_id if scope == S.PROBLEM else None
    assert count[(key, pair["error_type"])] == max(count[(key, e)] for e in prob.failed_types)


@pytest.mark.slow
def test_a_dataset_from_another_tool_in_our_schema_trains_the_same(default_dataset, tmp_path):
    """Only ``samples``, no notebook, no pairs: the notebook is counted by the builder's function."""
    other = tmp_path / "other"
    for f in (default_dataset / "data/samples").glob("*.parquet"):
        (other / "data/samples").mkdir(parents=True, exist_ok=True)
        pq.write_table(pq.read_table(f), other / "data/samples" / f.name)
    (other / "README.md").write_text("---\nconfigs:\n- config_name: samples\n  data_files:\n  - split: test\n"
                                     "    path: data/samples/test-*.parquet\n---\n")
    for scope in (S.GLOBAL, S.PROBLEM):
        ours, data = schedule(default_dataset, S.AP2O_L2H, scope=scope)
        theirs, other_data = schedule(other, S.AP2O_L2H, scope=scope)
        assert theirs.problems == ours.problems
    assert any("counted from the samples" in n for n in other_data.notes)
    assert other_data.published_pairs is None


@pytest.mark.slow
def test_without_validation_a_seeded_share_is_held_out_for_the_quiz(default_dataset):
    config = S.ScheduleConfig()
    a = load_training_data(str(default_dataset), config)
    b = load_training_data(str(default_dataset), config)
    kept = len(schedule(default_dataset, S.AP2O_L2H)[0].problems)
    held = {q["problem_id"] for q in a.quiz_problems}
    assert held == {q["problem_id"] for q in b.quiz_problems} and len(held) == round(0.1 * kept)
    assert not held & {p.problem_id for p in a.problems} and len(a.problems) == kept - len(held)
    assert all(q["test"] and q["entry_point"] for q in a.quiz_problems)  # gradable
    assert any("held out" in n and all(h in n for h in held) for n in a.notes)
    # the README's default has only HumanEval's test split: it trains there, with a warning
    assert a.train_split == "test" and any("contaminated" in n for n in a.notes)


def test_a_missing_split_is_named(tmp_path):
    from tiny_dataset import write_dataset

    ds = write_dataset(tmp_path / "ds")
    with pytest.raises(UserError, match="no split 'dev'"):
        load_training_data(str(ds), S.ScheduleConfig(), train_split="dev")
    with pytest.raises(UserError, match="no split 'dev'"):
        load_training_data(str(ds), S.ScheduleConfig(), validation_split="dev")
    shutil.rmtree(ds / "data/samples")
    with pytest.raises(UserError):
        load_training_data(str(ds), S.ScheduleConfig())


@pytest.mark.slow
def test_the_readme_path_trains_the_default_with_no_split_flags(default_dataset, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.train", "--dataset", str(default_dataset), "--model", str(tiny_model_dir),
         "--method", "ap2o-l2h", "--output-dir", str(out), "--num-train-epochs", "2", "--max-length", "256",
         "--per-device-train-batch-size", "4", "--quiz-max-new-tokens", "16", "--report-to", "none",
         "--quiz-workers", "1", "--save-steps", "4"],
        capture_output=True, text=True, cwd=REPO, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "contaminated" in proc.stderr and "held out" in proc.stderr
    assert (out / "adapter_model.safetensors").exists() and (out / "ap2o_train.json").exists()
    assert (out / "quiz.jsonl").read_text().count("\n") == 2  # once per epoch


def test_holding_out_chat_samples_without_problems_config_is_named(tmp_path):
    """Version-2 chat samples hold the user message as ``prompt``, not the problem: quizzing on
    them would wrap the message in a second one, so the hold-out needs the ``problems`` config."""
    from synthetic_samples import humaneval_samples

    from builder.dataset.assemble import write_configs

    ds = tmp_path / "chat-only-samples"
    write_configs(humaneval_samples(8, prompt_format="chat"), ds, progress=False, configs=("samples",))
    (ds / "README.md").write_text("---\nconfigs:\n- config_name: samples\n  data_files:\n  - split: train\n"
                                  "    path: data/samples/train-*.parquet\n---\n")
    with pytest.raises(UserError, match="no 'problems' config for 'train'.*chat format"):
        load_training_data(str(ds), S.ScheduleConfig())
