"""Problem sources: HumanEval offline, the MBPP copy with its quality flags, files, column maps,
stdio sets and the errors a user gets for bad input."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from builder.errors import UserError
from builder.problems.mbpp import mbpp_row_to_function
from builder.problems.quality import BAD_ENTRY_POINT, UNTESTED, quality_report
from builder.problems.sources import load_problems, load_problems_with_report


def _function_row(task_id, test="def check(candidate):\n    assert candidate(1) == 2\n", **extra):
    return {"task_id": task_id, "prompt": "def inc(x):\n", "test": test, "entry_point": "inc", **extra}


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_humaneval_offline_has_164_problems_in_the_test_split():
    table = load_problems("humaneval", quiet=True)
    schemas.validate(table, schemas.PROBLEMS)
    assert table.schema.equals(schemas.PROBLEMS, check_metadata=False)
    assert table.num_rows == 164
    assert set(table.column("split").to_pylist()) == {"test"}
    assert table.column("problem_id")[0].as_py() == "HumanEval/0"
    assert set(table.column("kind").to_pylist()) == {"function"}
    assert table.column("canonical_solution").null_count == 0
    assert quality_report(table).flags == {}


def test_humaneval_limit_and_unknown_split():
    assert load_problems("humaneval", limit=5, quiet=True).column("problem_id").to_pylist() == [
        f"HumanEval/{i}" for i in range(5)]
    with pytest.raises(UserError, match=r"no split 'train' \(have: test\)"):
        load_problems("humaneval", split="train", quiet=True)


def test_mbpp_copy_keeps_splits_and_flags_tests_that_never_call_the_entry_point(mbpp_path, capsys):
    kept, report = load_problems_with_report(mbpp_path, drop_untested=False)
    assert report.per_split == {"train": 384, "validation": 90, "test": 500}
    assert kept.num_rows == 974
    # check(candidate) that never uses candidate: 14 + 7 + 24 (see the report's README note on 44)
    assert report.counts_by_split()[UNTESTED] == {"train": 14, "validation": 7, "test": 24}
    assert report.counts()[BAD_ENTRY_POINT] == 1  # task 966's entry_point is a code fragment
    assert "mbpp/630" in report.flagged_ids and "mbpp/11" not in report.flagged_ids
    ids = kept.column("problem_id").to_pylist()
    assert len(set(ids)) == len(ids) and "mbpp/601" in ids
    assert all(e == e.strip() for e in kept.column("entry_point").to_pylist())  # trailing spaces cut

    dropped = load_problems(mbpp_path)
    assert dropped.num_rows == 974 - 45
    assert "45 flagged and dropped" in capsys.readouterr().err
    test_only = load_problems(mbpp_path, split="test", quiet=True)
    assert test_only.num_rows == 500 - 24 and set(test_only.column("split").to_pylist()) == {"test"}


def test_mbpp_hub_rows_become_check_candidate_on_the_called_function():
    row = {"task_id": 17, "text": "Write a function to add one.", "test_setup_code": "",
           "code": "def helper(x):\n    return x\ndef add_one(x):\n    return helper(x) + 1",
           "test_list": ["assert add_one(1) == 2", "assert add_one(add_one(0)) == 2"]}
    problem = mbpp_row_to_function(row)
    assert problem["entry_point"] == "add_one"  # the tested function, not the first def
    assert problem["prompt"] == 'def add_one(x):\n    """Write a function to add one."""\n'
    namespace: dict = {}
    exec(problem["test"], namespace)  # noqa: S102 - the test code is ours, built just above
    namespace["check"](lambda x: x + 1)
    with pytest.raises(AssertionError):
        namespace["check"](lambda x: x)


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_a_folder_of_files_gives_splits_from_file_names(tmp_path, suffix):
    folder = tmp_path / "my-set"
    (folder / "data").mkdir(parents=True)
    splits = {"train": [_function_row("a"), _function_row("b")], "test": [_function_row("c")]}
    for split, rows in splits.items():
        target = folder / "data" / f"{split}-00000-of-00001.{suffix}"
        if suffix == "jsonl":
            _write_jsonl(target, rows)
        else:
            pq.write_table(pa.Table.from_pylist(rows), target)
    table = load_problems(folder, quiet=True)
    assert table.column("problem_id").to_pylist() == ["my-set/a", "my-set/b", "my-set/c"]
    assert table.column("split").to_pylist() == ["train", "train", "test"]
    assert table.column("source").to_pylist() == ["my-set"] * 3


def test_a_single_jsonl_file_names_the_bad_line(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text(json.dumps(_function_row("a")) + "\n{not json\n")
    with pytest.raises(UserError, match=r"problems.jsonl:2: malformed JSON"):
        load_problems(path, quiet=True)


def test_column_map_renames_and_an_unknown_column_is_named(tmp_path):
    rows = [{"qid": 7, "question": "def inc(x):\n", "tests": "def check(candidate):\n    assert candidate(1) == 2\n",
             "fn": "inc"}]
    path = _write_jsonl(tmp_path / "custom.jsonl", rows)
    table = load_problems(path, column_map={"problem_id": "qid", "test": "tests", "entry_point": "fn"}, quiet=True)
    assert table.to_pylist()[0] | {"canonical_solution": None} == {
        "problem_id": "custom/7", "source": "custom", "split": "train", "kind": "function",
        "prompt": "def inc(x):\n", "test": rows[0]["tests"], "entry_point": "inc", "inputs": None,
        "outputs": None, "canonical_solution": None, "reference_cpu_s": None}
    with pytest.raises(UserError, match=r"no column 'tset' \(available: qid, question, tests, fn\)"):
        load_problems(path, column_map={"problem_id": "qid", "test": "tset"}, quiet=True)
    with pytest.raises(UserError, match=r"'answer' is not a problems column"):
        load_problems(path, column_map={"answer": "qid"}, quiet=True)


def test_stdio_problems_from_taco_style_json_strings(tmp_path):
    rows = [
        {"id": 1, "question": "Read n, print n+1.",
         "input_output": json.dumps({"inputs": ["1\n", "41\n"], "outputs": ["2\n", "42\n"]})},
        {"id": 2, "question": "Print nothing.", "input_output": json.dumps({"inputs": [], "outputs": []})},
        {"id": 3, "question": "Lines as lists.", "input_output": json.dumps({"inputs": [["1", "2"]], "outputs": [["3"]]})},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "taco_test.parquet")
    table, report = load_problems_with_report(
        tmp_path / "taco_test.parquet", kind="stdio", quiet=True,
        column_map={"inputs": "input_output.inputs", "outputs": "input_output.outputs"})
    assert report.flags == {"taco/2": [UNTESTED]}  # no cases: cannot fail an answer
    assert table.column("problem_id").to_pylist() == ["taco/1", "taco/3"]
    assert table.column("split").to_pylist() == ["test", "test"]
    first, third = table.to_pylist()
    assert first["kind"] == "stdio" and first["inputs"] == ["1\n", "41\n"] and first["outputs"] == ["2\n", "42\n"]
    assert first["test"] is None and first["entry_point"] is None
    assert third["inputs"] == ["1\n2\n"] and third["outputs"] == ["3\n"]


def test_livecodebench_style_list_of_case_objects(tmp_path):
    cases = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
    rows = [{"question_id": "abc301_a", "question_content": "Add.", "public_test_cases": json.dumps(cases)}]
    path = _write_jsonl(tmp_path / "lcb.jsonl", rows)
    table = load_problems(path, quiet=True, column_map={"inputs": "public_test_cases[].input",
                                                        "outputs": "public_test_cases[].output"})
    assert table.to_pylist()[0]["inputs"] == ["1 2\n"] and table.to_pylist()[0]["kind"] == "stdio"


def test_empty_problem_sets_and_duplicate_ids_are_user_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(UserError, match="no 'problem_id' column|no problems|no rows"):
        load_problems(empty, quiet=True)
    untested = _write_jsonl(tmp_path / "untested.jsonl",
                            [_function_row("a", test="def check(candidate):\n    assert inc(1) == 2\n")])
    with pytest.raises(UserError, match=r"untested.jsonl: no problems to use \(1 read, 1 dropped"):
        load_problems(untested, quiet=True)
    with pytest.raises(UserError, match=r"no problems to use"):  # --limit on nothing left is the same error
        load_problems(untested, limit=3, quiet=True)
    assert load_problems(untested, drop_untested=False, quiet=True).num_rows == 1
    dupes = _write_jsonl(tmp_path / "dupes.jsonl", [_function_row("a"), _function_row("a")])
    with pytest.raises(UserError, match="problem id 'dupes/a' appears twice"):
        load_problems(dupes, quiet=True)


def test_missing_paths_and_unknown_kinds_are_named(tmp_path):
    with pytest.raises(UserError, match="no such file or directory"):
        load_problems(tmp_path / "nope.jsonl", quiet=True)
    with pytest.raises(UserError, match="unknown problem kind 'sql'"):
        load_problems("humaneval", kind="sql", quiet=True)
    no_tests = _write_jsonl(tmp_path / "bare.jsonl", [{"task_id": "a", "prompt": "p"}])
    with pytest.raises(UserError, match=r"bare.jsonl \[train\] row 0 \(a\): cannot tell the problem kind"):
        load_problems(no_tests, quiet=True)


# --- python -m builder.problems SOURCE: the quality report on its own (issue 12) ------------------------

def _report_cli(*args, cwd=None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "builder.problems", *args], check=False, capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_the_problems_command_prints_every_flag_of_the_report(tmp_path):
    src = _write_jsonl(tmp_path / "test.jsonl", [
        _function_row("a"), _function_row("b", test="def check(candidate):\n    assert other(1) == 2\n")])
    proc = _report_cli(str(src))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["total"], report["flags"]) == (2, {"test/b": [UNTESTED]})


def test_the_problems_command_names_a_missing_source_and_exits_2(tmp_path):
    proc = _report_cli(str(tmp_path / "nope.jsonl"))
    assert proc.returncode == 2 and "nope.jsonl: no such file or directory" in proc.stderr
