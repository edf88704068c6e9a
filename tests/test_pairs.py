"""Preference pairs: the official filter (merge.py: >= 2 passed, >= 2 failed, after its
de-duplication), every passed x failed pair or a seeded per-problem cap, plain strings always and
the conversational columns for chat-sampled answers."""

from __future__ import annotations

import pyarrow as pa
import pytest
from synthetic_samples import humaneval_samples

import schemas
from builder.dataset.notebook import annotate, count_errors
from builder.dataset.pairs import PairsConfig, make_pairs, pair_stats
from builder.errors import UserError

PROMPT = "def f(x):\n"


def _samples(answers: dict[str, list[tuple[str, str | None]]], prompt_format: str = "completion") -> pa.Table:
    """answers: problem id -> [(continuation, error type or None for a pass)]."""
    rows = []
    for pid, items in answers.items():
        for i, (body, et) in enumerate(items):
            completion = PROMPT + body if prompt_format == "completion" else f"```python\n{PROMPT}{body}```"
            rows.append(dict(problem_id=pid, split="train", kind="function", prompt=PROMPT, completion=completion,
                             sample_index=i, prompt_format=prompt_format, passed=et is None,
                             status="passed" if et is None else "failed", error_type=et))
    table = schemas.conform(pa.Table.from_pylist(rows), schemas.ANSWERS)
    return annotate(table, count_errors(table))


def test_every_passed_by_failed_pair_after_dedup_and_filter():
    samples = _samples({
        "keep": [("  return x\n", None), ("  return x\n", None), ("  return -x\n", None),  # 2 distinct passes
                 ("  return 1\n", "WrongResult"), ("  retur x\n", "SyntaxError"), ("  return y\n", "NameError")],
        "one_fail": [("  return x\n", None), ("  return 1\n", "WrongResult"), ("  return 1\n", "WrongResult")],
        "one_pass": [("  return 0\n", None), ("  return 2\n", "WrongResult"), ("  return 3\n", "NameError")],
        "no_pass": [("  return 1\n", "WrongResult"), ("  return 2\n", "WrongResult")],
    })
    pairs = make_pairs(samples)
    schemas.validate(pairs, schemas.PAIRS)
    rows = pairs.to_pylist()
    assert {r["problem_id"] for r in rows} == {"keep"}  # one_fail's two failures are one answer; one_pass has 1 pass
    assert len(rows) == 2 * 3
    assert [(r["chosen_sample_index"], r["rejected_sample_index"]) for r in rows] == [
        (0, 3), (0, 4), (0, 5), (2, 3), (2, 4), (2, 5)]
    assert rows[0]["prompt"] == PROMPT and rows[0]["chosen"] == "  return x\n"  # the continuation, not the program
    assert [r["rejected_error_type"] for r in rows[:3]] == ["WrongResult", "SyntaxError", "NameError"]
    assert [r["rejected_error_category"] for r in rows[:3]] == ["wrong_result", "compile", "runtime"]
    # frequency of the type among the split's 9 failures (before de-duplication): 6 WrongResult
    assert [r["rejected_error_frequency"] for r in rows[:3]] == pytest.approx([6 / 9, 1 / 9, 2 / 9])
    assert all(isinstance(r[c], str) for r in rows for c in ("prompt", "chosen", "rejected"))
    # exact texts seen earlier in the table, across problems: "  return 1\n" 3 times, "  return x\n" twice, "  return 2\n" once
    assert pair_stats(samples) == {"problems": 4, "kept": 1, "dropped": 3, "distinct_answers": 8, "duplicates": 6}


def test_dedup_is_merge_pys_exact_text_over_the_whole_table_passed_copy_first():
    samples = _samples({
        # a failed copy of a text before its passed copy: merge.py sorts passed first, the pass survives
        "a": [("  return 9\n", "WrongResult"), ("  return 9\n", None), ("  return x\n", None),
              ("  return 1\n", "WrongResult"), ("  return 2\n", "NameError"), ("  return 2\n ", "NameError")],
        # "  return 1\n" was a's: merge.py L90 drops it here too, leaving b one failed answer
        "b": [("  return x\n", None), ("  return -x\n", None), ("  return 1\n", "WrongResult"),
              ("  return 5\n", "TypeError")],
    })
    rows = make_pairs(samples).to_pylist()
    assert {r["problem_id"] for r in rows} == {"a"}
    a = [r for r in rows if r["problem_id"] == "a"]
    assert sorted({r["chosen"] for r in a}) == ["  return 9\n", "  return x\n"]
    assert sorted({r["rejected"] for r in a}) == ["  return 1\n", "  return 2\n", "  return 2\n "]  # exact text
    # the options: per problem (b keeps its answers) and trailing whitespace ignored (a loses one)
    per_problem = make_pairs(samples, PairsConfig(dedup_per_problem=True)).to_pylist()
    assert {r["problem_id"] for r in per_problem} == {"a", "b"}
    loose = make_pairs(samples, PairsConfig(dedup_ignore_trailing_whitespace=True)).to_pylist()
    assert sorted({r["rejected"] for r in loose}) == ["  return 1\n", "  return 2\n"]


def test_filter_thresholds_and_dedup_are_options():
    samples = _samples({"p": [("a\n", None), ("c\n", None), ("b\n", "WrongResult"), ("b\n", "WrongResult")]})
    assert make_pairs(samples).num_rows == 0
    assert make_pairs(samples, PairsConfig(dedup=False)).num_rows == 4
    assert make_pairs(samples, PairsConfig(min_failed=1)).num_rows == 2
    assert make_pairs(_samples({"p": [("a\n", None), ("b\n", "WrongResult"), ("c\n", "WrongResult")]}),
                      PairsConfig(min_passed=1)).num_rows == 2
    with pytest.raises(UserError, match="at least 1"):
        PairsConfig(min_passed=0)


def test_cap_is_seeded_uniform_and_per_problem():
    many = {f"p{k}": [(f"ok{k}.{i}\n", None) for i in range(4)] + [(f"bad{k}.{i}\n", "WrongResult") for i in range(5)]
            for k in range(3)}
    samples = _samples(many)
    full = make_pairs(samples)
    assert full.num_rows == 3 * 4 * 5
    capped = make_pairs(samples, PairsConfig(max_pairs_per_problem=7, seed=1))
    assert capped.to_pylist() == make_pairs(samples, PairsConfig(max_pairs_per_problem=7, seed=1)).to_pylist()
    per_problem = {}
    for r in capped.to_pylist():
        per_problem.setdefault(r["problem_id"], []).append((r["chosen"], r["rejected"]))
    assert {k: len(v) for k, v in per_problem.items()} == {"p0": 7, "p1": 7, "p2": 7}
    assert all(len(set(v)) == 7 for v in per_problem.values())  # without replacement
    other_seed = make_pairs(samples, PairsConfig(max_pairs_per_problem=7, seed=2))
    assert other_seed.to_pylist() != capped.to_pylist()
    # a problem's draw does not depend on the other problems
    alone = make_pairs(_samples({"p1": many["p1"]}), PairsConfig(max_pairs_per_problem=7, seed=1))
    assert [(r["chosen"], r["rejected"]) for r in alone.to_pylist()] == per_problem["p1"]


def test_chat_answers_become_conversational_as_written():
    from builder.dataset.conversational import to_messages

    samples = humaneval_samples(4, prompt_format="chat")
    text = make_pairs(annotate(samples, count_errors(samples)))
    pairs = to_messages(text, "pairs")
    schemas.validate(pairs, schemas.PAIRS)  # either layout fits the schema
    assert pairs.schema == schemas.conversational(schemas.PAIRS)
    assert pairs.num_rows
    for t, r in zip(text.to_pylist(), pairs.to_pylist()):
        assert r["prompt"] == [{"role": "user", "content": t["prompt"]}]
        assert r["chosen"] == [{"role": "assistant", "content": t["chosen"]}]
        assert r["rejected"] == [{"role": "assistant", "content": t["rejected"]}]
    assert text.column("prompt")[0].as_py().startswith("Complete the following Python function")
    assert text.column("chosen")[0].as_py().startswith("```python\n")  # the reply as the model wrote it


def test_bad_samples_are_named():
    samples = _samples({"p": [("a\n", None), ("b\n", "WrongResult")]})
    with pytest.raises(UserError, match="lack column 'completion'"):
        make_pairs(samples.drop_columns(["completion"]))
    rows = samples.to_pylist()
    rows[1]["error_type"] = None
    with pytest.raises(UserError, match="failed answer without error_type \\(problem 'p', row 1\\)"):
        make_pairs(pa.Table.from_pylist(rows, schema=samples.schema))
    rows[1]["error_type"], rows[1]["prompt_format"] = "WrongResult", "fim"
    with pytest.raises(UserError, match="unknown prompt_format 'fim'"):
        make_pairs(pa.Table.from_pylist(rows, schema=samples.schema))
