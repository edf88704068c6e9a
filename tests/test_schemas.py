"""The shared schemas: versioned, validated with messages that name the column."""

import pyarrow as pa
import pytest

import schemas
from builder.grading import taxonomy


def test_every_schema_is_named_and_versioned():
    for name, schema in schemas.SCHEMAS.items():
        assert schemas.schema_of(schema.empty_table()) == (name, schemas.SCHEMA_VERSION)


def test_validate_names_the_missing_column():
    table = pa.table({"problem_id": ["p"], "prompt": ["x"]})
    with pytest.raises(schemas.SchemaError, match="missing required column 'kind'"):
        schemas.validate(table, schemas.PROBLEMS)


def test_validate_names_a_mistyped_column():
    table = pa.table({"problem_id": ["p"], "kind": ["function"], "prompt": ["x"], "inputs": [3]})
    with pytest.raises(schemas.SchemaError, match="column 'inputs' has type int64"):
        schemas.validate(table, schemas.PROBLEMS)


def test_validate_names_the_null_row():
    table = pa.table({"problem_id": ["a", None], "kind": ["function"] * 2, "prompt": ["x"] * 2})
    with pytest.raises(schemas.SchemaError, match="'problem_id' is null in row 1"):
        schemas.validate(table, schemas.PROBLEMS)


def test_conform_orders_fills_and_keeps_extra_columns():
    table = pa.table({"extra": [1], "prompt": ["x"], "kind": ["function"], "problem_id": ["p"]})
    out = schemas.conform(table, schemas.PROBLEMS)
    assert out.column_names[: len(schemas.PROBLEMS)] == schemas.PROBLEMS.names
    assert out.column_names[-1] == "extra"
    assert out.column("inputs").type == pa.list_(pa.string()) and out.column("inputs").null_count == 1
    assert schemas.schema_of(out) == ("problems", schemas.SCHEMA_VERSION)
    assert schemas.conform(table, schemas.PROBLEMS, keep_extra=False).column_names == schemas.PROBLEMS.names


def test_samples_hold_the_verdict_columns_once_with_label_for_passed():
    names = schemas.SAMPLES.names
    assert len(names) == len(set(names))
    assert set(schemas.VERDICT.names) - {"passed"} <= set(names)
    assert "label" in names and "passed" not in names


def test_answers_hold_the_verdict_and_the_program_as_completion():
    names = schemas.ANSWERS.names
    assert len(names) == len(set(names)) and set(schemas.VERDICT.names) <= set(names)
    assert "program" not in names and "label" not in names
    assert schemas.schema_of(schemas.ANSWERS.empty_table()) == ("answers", schemas.SCHEMA_VERSION)


def test_the_graders_answers_still_conform_to_samples():
    """builder.grading.grader.grade_table conforms its rows (ANSWERS) to SAMPLES; the new columns are
    nullable so that it still can, and the rows stay recognisable as the older layout."""
    answers = pa.table({"problem_id": ["p"], "kind": ["function"], "prompt": ["def f():\n"],
                        "completion": ["def f():\n    return 1\n"], "passed": [True], "status": ["passed"]})
    out = schemas.conform(answers, schemas.SAMPLES)
    assert out.column("program").to_pylist() == [None] and out.column("passed").to_pylist() == [True]


@pytest.mark.parametrize("error_type,category,status", [
    (None, None, "passed"),
    ("SyntaxError", "compile", "failed"),
    ("IndentationError", "compile", "failed"),
    ("NameError", "runtime", "failed"),
    ("MyCustomError", "runtime", "failed"),
    ("WrongResult", "wrong_result", "failed"),
    ("Timeout", "timeout", "timeout"),
    ("MemoryError", "resource", "failed"),
    ("Crash", "resource", "crashed"),
    ("SandboxError", "resource", "crashed"),
    ("OutputLimit", "resource", "failed"),
    ("EarlyExit", "exit", "exited"),
    ("NoCode", "no_code", "no_code"),
])
def test_taxonomy_maps_types_to_category_and_status(error_type, category, status):
    assert taxonomy.category_of(error_type) == category
    assert taxonomy.status_of(error_type) == status
    assert status in taxonomy.STATUSES
    assert category is None or category in taxonomy.CATEGORIES


def test_a_chat_configs_text_columns_are_messages_in_one_layout():
    """Schema 3: a chat-format pairs/samples table holds message lists in its text columns; validate
    and conform take either layout whole, and name a column that mixes them."""
    chat = schemas.conversational(schemas.PAIRS)
    assert [f.name for f in chat if f.type == schemas.MESSAGES] == list(schemas.CONVERSATIONAL["pairs"])
    assert schemas.conversational(schemas.NOTEBOOK) == schemas.NOTEBOOK
    user, reply = [{"role": "user", "content": "q"}], [{"role": "assistant", "content": "a"}]
    table = pa.table({"problem_id": ["p"], "prompt": [user], "chosen": [reply], "rejected": [reply],
                      "rejected_error_type": ["NameError"]})
    out = schemas.conform(table, schemas.PAIRS)
    assert out.schema.field("prompt").type == schemas.MESSAGES and schemas.is_conversational(out, "pairs")
    assert schemas.schema_of(out) == ("pairs", "3") and "prompt_messages" not in out.column_names
    mixed = table.set_column(2, "chosen", pa.array(["a"]))
    with pytest.raises(schemas.SchemaError, match="column 'chosen' has type string"):
        schemas.validate(mixed, schemas.PAIRS)
