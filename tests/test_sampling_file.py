"""The file backend: completions sampled elsewhere enter the pipeline like any other answers."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from builder.errors import UserError
from builder.generation.backends import Request, SamplingParams, get_backend
from builder.generation.prompts import COMPLETION
from builder.generation.sample import sample_problems


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_answers_grouped_per_problem_in_file_order(tmp_path):
    f = _jsonl(tmp_path / "c.jsonl", [dict(problem_id="a", completion="1"), dict(problem_id="b", completion="x"),
                                      dict(problem_id="a", completion="2"), dict(problem_id="a", completion="3")])
    b = get_backend("file", path=f)
    out = b.generate([Request("b"), Request("a")], SamplingParams(n=2), progress=False)
    assert out == [["x"], ["1", "2"]]


def test_parquet_sample_index_orders_and_model_column_is_recorded(tmp_path):
    f = tmp_path / "c.parquet"
    pq.write_table(pa.table({"problem_id": ["a", "a", "a"], "completion": ["third", "first", "second"],
                             "sample_index": [2, 0, 1], "model": ["m/x"] * 3}), f)
    b = get_backend("file", path=f)
    assert b.generate([Request("a")], SamplingParams(n=10), progress=False) == [["first", "second", "third"]]
    assert b.model == "m/x" and b.name == "file"


def test_a_samples_file_hands_back_the_replies_not_the_programs_that_ran(tmp_path):
    # chat rows: `response` is the reply (with its own harness), `completion` the sanitized program
    reply = "```python\ndef f():\n    return 1\n\nassert f() == 2\n```"
    f = tmp_path / "c.parquet"
    pq.write_table(pa.table({"problem_id": ["a", "a"], "completion": ["def f():\n    return 1\n", "old"],
                             "response": [reply, None]}), f)
    out = get_backend("file", path=f).generate([Request("a")], SamplingParams(n=2), progress=False)
    assert out == [[reply, "old"]]  # rows without a response (older files) keep their completion


def test_missing_problem_is_named(tmp_path):
    f = _jsonl(tmp_path / "c.jsonl", [dict(problem_id="a", completion="1")])
    with pytest.raises(UserError, match=r"no completions for problem_id 'zz'"):
        get_backend("file", path=f).generate([Request("a"), Request("zz")], SamplingParams(n=1), progress=False)


@pytest.mark.parametrize("content, match", [
    (b'{"problem_id": "a", "completion": "1"}\n{"problem_id": "a", "compl', r"c.jsonl:2: malformed JSON"),
    (b'{"problem_id": "a"}\n', r"c.jsonl:1: missing column 'completion'"),
    (b'{"problem_id": "a", "completion": "\xff"}\n', r"c.jsonl:1: not valid UTF-8"),
    (b'{"problem_id": "a", "completion": null}\n', r"row 1: 'completion' is NoneType"),
])
def test_bad_files_name_file_and_line(tmp_path, content, match):
    f = tmp_path / "c.jsonl"
    f.write_bytes(content)
    with pytest.raises(UserError, match=match):
        get_backend("file", path=f)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        get_backend("file", path=tmp_path / "absent.jsonl")


def test_imported_answers_become_sample_rows_readable_by_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    from builder.io import write_parquet

    problems = pa.Table.from_pylist([
        dict(problem_id="p1", kind="function", prompt="def f():\n", test="def check(c): pass", entry_point="f"),
        dict(problem_id="p2", kind="function", prompt="def g():\n", test="def check(c): pass", entry_point="g"),
    ])
    f = _jsonl(tmp_path / "c.jsonl", [dict(problem_id=p, completion=f"    return {i}\n")
                                      for p in ("p2", "p1") for i in range(3)])
    table = sample_problems(problems, get_backend("file", path=f, model="elsewhere"), SamplingParams(n=2), COMPLETION,
                            progress=False)
    assert table.column("problem_id").to_pylist() == ["p1", "p1", "p2", "p2"]
    assert table.column("completion").to_pylist()[:2] == ["def f():\n    return 0\n", "def f():\n    return 1\n"]
    assert table.column("sample_index").to_pylist() == [0, 1, 0, 1]
    assert set(table.column("backend").to_pylist()) == {"file"}
    schemas.validate(table, schemas.SAMPLES, required=["problem_id", "completion", "prompt"])
    write_parquet(table, tmp_path / "s.parquet")
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "s.parquet"), split="train")
    assert ds.num_rows == 4 and ds[0]["model"] == "elsewhere" and ds[0]["prompt_format"] == "completion"


def test_recorded_generation_columns_survive_the_import(tmp_path):
    """The embedded default is imported through this backend: its rows must still say they were
    sampled by an OpenAI server at temperature 1.0 with 512 tokens, not the importer's defaults."""
    problems = schemas.conform(pa.table({"problem_id": ["p"], "kind": ["function"], "prompt": ["def f():\n"],
                                         "test": ["def check(c): pass"], "entry_point": ["f"]}), schemas.PROBLEMS)
    f = tmp_path / "rec.parquet"
    pq.write_table(pa.table({"problem_id": ["p", "p"], "completion": ["def f():\n    return 1\n"] * 2,
                             "backend": ["openai"] * 2, "temperature": [1.0, 1.0], "max_new_tokens": [512, 512],
                             "seed": [0, 0], "top_p": [1.0, 0.9]}), f)
    rows = sample_problems(problems, get_backend("file", path=f),
                           SamplingParams(n=2, temperature=0.6, max_new_tokens=64, top_p=0.5, seed=7),
                           COMPLETION, progress=False).to_pylist()
    assert {(r["backend"], r["temperature"], r["max_new_tokens"], r["seed"]) for r in rows} == {("openai", 1.0, 512, 0)}
    assert [r["top_p"] for r in rows] == [1.0, 0.9]  # the file disagrees with itself: each row keeps its own
    assert rows[0]["completion"] == "def f():\n    return 1\n"


# --- recorded provenance wins (issue 11 item 4) ----------------------------------------------------

def _recording(tmp_path, **columns):
    f = tmp_path / "rec.parquet"
    base = {"problem_id": ["p", "p"], "completion": ["def f():\n    return 1\n"] * 2,
            "model": ["org/recorded"] * 2, "prompt_format": ["completion"] * 2,
            "temperature": [1.0, 1.0], "max_new_tokens": [512, 512], "seed": [0, 0]}
    pq.write_table(pa.table({**base, **columns}), f)
    return f


def _problems():
    return schemas.conform(pa.table({"problem_id": ["p"], "kind": ["function"], "prompt": ["def f():\n"],
                                     "test": ["def check(c): pass"], "entry_point": ["f"]}), schemas.PROBLEMS)


def test_a_model_argument_contradicting_the_recording_names_both(tmp_path):
    with pytest.raises(UserError, match=r"--model 'my/other-model' contradicts the recording: .* model 'org/recorded'"):
        get_backend("file", path=_recording(tmp_path), model="my/other-model")


def test_rows_keep_the_recorded_model_whatever_the_backend_is_asked(tmp_path):
    backend = get_backend("file", path=_recording(tmp_path), model="org/recorded")
    rows = sample_problems(_problems(), backend, SamplingParams(n=2), COMPLETION, progress=False).to_pylist()
    assert {r["model"] for r in rows} == {"org/recorded"}


@pytest.mark.parametrize("flag, value, recorded", [
    ("temperature", 0.2, "temperature 1.0"), ("max_new_tokens", 1024, "max_new_tokens 512"),
    ("prompt_format", "chat", "prompt_format 'completion'"), ("model", "my/other-model", "model 'org/recorded'"),
])
def test_a_stated_setting_contradicting_the_recording_is_an_error(tmp_path, flag, value, recorded):
    import dataclasses

    from builder.generation.backends.file import reconcile
    from builder.generation.sample import SampleConfig

    cfg = dataclasses.replace(SampleConfig(backend="file", completions=str(_recording(tmp_path))), **{flag: value})
    with pytest.raises(UserError) as e:
        reconcile(cfg, {flag})
    assert f"--{flag.replace('_', '-')} {value!r}" in str(e.value) and recorded in str(e.value)


def test_settings_left_at_their_defaults_take_the_recordings_values(tmp_path):
    from builder.generation.backends.file import reconcile
    from builder.generation.sample import SampleConfig

    cfg = reconcile(SampleConfig(backend="file", completions=str(_recording(tmp_path)), n=2), {"n", "backend"})
    assert (cfg.model, cfg.temperature, cfg.max_new_tokens, cfg.prompt_format, cfg.n) == (
        "org/recorded", 1.0, 512, "completion", 2)


def test_a_stated_setting_that_agrees_is_fine(tmp_path):
    from builder.generation.backends.file import reconcile
    from builder.generation.sample import SampleConfig

    cfg = SampleConfig(backend="file", completions=str(_recording(tmp_path)), temperature=1.0, max_new_tokens=512)
    assert reconcile(cfg, {"temperature", "max_new_tokens"}).max_new_tokens == 512


def test_sample_stage_flag_contradicting_the_recording_exits_2(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "builder.cli", "sample", "--problems", "humaneval", "--limit", "1",
                           "--backend", "file", "--completions", str(_recording(tmp_path)), "--temperature", "0.2",
                           "--output", str(tmp_path / "s.parquet")], check=False, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "--temperature 0.2 contradicts the recording" in proc.stderr and "temperature 1.0" in proc.stderr
    assert not (tmp_path / "s.parquet").exists()


def test_package_reference_resolves_inside_the_installed_package():
    import os

    from builder.generation.backends.file import package_reference, resolve_path

    ref = "pkg://builder/data/humaneval-qwen2.5-coder-0.5b-instruct.parquet"
    path = resolve_path(ref)
    assert os.path.isfile(path) and os.path.isabs(path)
    assert package_reference(path) == ref
    with pytest.raises(UserError, match="no installed package 'nope'"):
        resolve_path("pkg://nope/data/x.parquet")
