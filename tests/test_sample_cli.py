"""``ap2o-build sample`` end to end: real problems (HumanEval), a real model (the tiny Qwen2), real
Parquet read back with ``datasets``; and the ways it must refuse bad input without writing."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from builder.cli import main as cli
from builder.generation.backends import Backend, SamplingParams
from builder.generation.prompts import FUNCTION_BODY_STOP, PROGRAM_STOP
from builder.generation.sample import SAMPLED, sample_problems

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def sampled(tiny_model_dir, tmp_path_factory):
    """The stage run as a user runs it: the console script, in its own process."""
    out = tmp_path_factory.mktemp("sample") / "samples.parquet"
    proc = subprocess.run(
        ["ap2o-build", "sample", "--problems", "humaneval", "--limit", "2", "--backend", "transformers",
         "--model", str(tiny_model_dir), "--n", "3", "--max-new-tokens", "8", "--temperature", "0.8",
         "--seed", "4", "--no-progress", "--output", str(out)],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "sampled 6 answers to 2 problems with transformers" in proc.stderr
    return out


def test_rows_are_samples_without_verdicts_and_load_with_datasets(sampled, tiny_model_dir):
    datasets = pytest.importorskip("datasets")
    table = pq.read_table(sampled)
    assert table.schema.names == SAMPLED.names and schemas.schema_of(table) == ("answers", schemas.SCHEMA_VERSION)
    ds = datasets.load_dataset("parquet", data_files=str(sampled), split="train")
    rows = ds.to_list()
    assert [(r["problem_id"], r["sample_index"]) for r in rows] == [
        ("HumanEval/0", 0), ("HumanEval/0", 1), ("HumanEval/0", 2),
        ("HumanEval/1", 0), ("HumanEval/1", 1), ("HumanEval/1", 2)]
    r = rows[0]
    assert r["completion"].startswith(r["prompt"]) and len(r["completion"]) > len(r["prompt"])
    assert (r["model"], r["backend"], r["prompt_format"]) == (str(tiny_model_dir), "transformers", "completion")
    assert (r["temperature"], r["top_p"], r["max_new_tokens"], r["seed"]) == (0.8, 1.0, 8, 4)
    assert r["entry_point"] == "has_close_elements" and "def check" in r["test"]


def test_samples_round_trip_through_the_file_backend(sampled, tmp_path):
    """A samples file fed back as --completions gives the same programs (the prompt is not repeated)."""
    again = tmp_path / "again.parquet"
    assert cli(["sample", "--problems", "humaneval", "--limit", "2", "--backend", "file", "--completions",
                str(sampled), "--n", "3", "--no-progress", "--output", str(again)]) == 0
    a, b = pq.read_table(sampled), pq.read_table(again)
    assert b.column("completion").to_pylist() == a.column("completion").to_pylist()
    # the record of how the answers were sampled survives the import
    for col in ("backend", "model", "temperature", "max_new_tokens", "seed"):
        assert b.column(col).to_pylist() == a.column(col).to_pylist(), col


def test_chat_format_keeps_the_reply_as_is(tiny_model_dir, tmp_path):
    out = tmp_path / "chat.parquet"
    assert cli(["sample", "--problems", "humaneval", "--limit", "1", "--backend", "transformers", "--model",
                str(tiny_model_dir), "--prompt-format", "chat", "--n", "2", "--max-new-tokens", "4",
                "--no-progress", "--output", str(out)]) == 0
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 2 and {r["prompt_format"] for r in rows} == {"chat"}
    assert not any(r["completion"].startswith(r["prompt"]) for r in rows)


@pytest.mark.parametrize("argv, message", [
    (["--backend", "file", "--output", "{out}"], "--backend file needs --completions"),
    (["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--max-retries", "0",
      "--output", "{out}"],
     "cannot reach http://127.0.0.1:9/v1"),
    (["--backend", "transformers", "--model", "{tmp}/missing", "--output", "{out}"], "cannot load model"),
    (["--backend", "file", "--completions", "x.jsonl", "--output", "{tmp}/s.csv"], "must end in .parquet"),
    (["--n", "0", "--backend", "file", "--completions", "x.jsonl", "--output", "{out}"], "--n must be >= 1"),
    (["--problems", "{tmp}/nope.jsonl", "--backend", "file", "--completions", "x", "--output", "{out}"], "nope.jsonl"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out.parquet"
    argv = [a.format(out=out, tmp=tmp_path) for a in argv]
    assert cli(["sample", "--problems", "humaneval", "--limit", "1", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


class _Recorder(Backend):
    """A backend that answers "pass" and remembers the stop strings of each call."""

    name = "recorder"

    def __init__(self):
        self.calls = []

    def generate(self, requests, params, *, progress=True):
        self.calls.append((params.stop, [r.key for r in requests]))
        return [["    pass\n"] * params.n for _ in requests]


def test_each_problem_gets_its_prompt_formats_stop_strings():
    problems = pa.Table.from_pylist([
        dict(problem_id="f1", kind="function", prompt="def f():\n    \"\"\"Do.\"\"\"\n", test="", entry_point="f"),
        dict(problem_id="s1", kind="stdio", prompt="Read n, print n.\n", inputs=["1\n"], outputs=["1\n"]),
        dict(problem_id="f2", kind="function", prompt="def g(x):\n", test="", entry_point="g"),
    ], schema=schemas.PROBLEMS)
    rec = _Recorder()
    table = sample_problems(problems, rec, SamplingParams(n=2), "completion", progress=False)
    assert sorted(rec.calls) == sorted([(FUNCTION_BODY_STOP, ["f1", "f2"]), (PROGRAM_STOP, ["s1"])])
    assert table.column("problem_id").to_pylist() == ["f1", "f1", "s1", "s1", "f2", "f2"]  # input order
    assert table.column("inputs").to_pylist()[2] == ["1\n"]
    rec2 = _Recorder()
    sample_problems(problems, rec2, SamplingParams(n=1, stop=("X",)), "completion", progress=False)
    assert rec2.calls == [(("X",), ["f1", "s1", "f2"])]  # an explicit stop list applies to all
    rec3 = _Recorder()
    sample_problems(problems, rec3, SamplingParams(n=1), "completion", progress=False, default_stop=False)
    assert rec3.calls == [((), ["f1", "s1", "f2"])]


def test_problems_missing_a_required_column_are_named():
    from builder.errors import UserError

    with pytest.raises(UserError, match="missing required column 'kind'"):
        sample_problems(pa.table({"problem_id": ["a"], "prompt": ["x"]}), _Recorder(), SamplingParams(n=1))


def test_help_lists_every_flag():
    out = subprocess.run([sys.executable, "-m", "builder.cli", "sample", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for flag in ("--problems", "--backend", "--base-url", "--completions", "--prompt-format", "--n", "--temperature",
                 "--top-p", "--max-new-tokens", "--seed", "--stop", "--output"):
        assert flag in out
