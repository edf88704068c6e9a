"""The content keys that let ap2o-build run and ap2o-eval resume (builder.engine): same inputs,
same key; any input that changes answers or verdicts, another key."""

from builder.engine import grading_settings
from builder.grading.grader import GraderConfig
from builder.keys import content_key, file_digest


def test_content_key_ignores_dict_order_but_not_part_boundaries():
    assert content_key({"a": 1, "b": 2}, [1]) == content_key({"b": 2, "a": 1}, [1])
    assert content_key("ab", "c") != content_key("a", "bc")
    assert content_key("x", 1) != content_key("x", 2)


def test_file_digest_follows_the_bytes_not_the_name(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("same")
    b.write_text("same")
    assert file_digest(a) == file_digest(b) is not None
    b.write_text("other")
    assert file_digest(a) != file_digest(b)
    assert file_digest(tmp_path / "missing") is None and file_digest(None) is None


def test_grading_settings_keep_the_limits_and_drop_the_worker_count():
    one, two = GraderConfig(workers=1), GraderConfig(workers=2)
    assert content_key(grading_settings(one)) == content_key(grading_settings(two))
    assert content_key(grading_settings(GraderConfig(timeout_s=1))) != content_key(grading_settings(one))


def _problems():
    from builder.problems.sources import load_problems

    return load_problems("humaneval", limit=2, quiet=True)


def test_sampling_key_ignores_what_never_changes_an_answer_but_not_the_batch_size():
    from builder.engine import sampling_key
    from builder.generation.sample import SampleConfig

    problems, base = _problems(), SampleConfig(model="m", backend="transformers")
    assert sampling_key(problems, base) == sampling_key(problems, SampleConfig(model="m", backend="transformers",
                                                                               concurrency=1, max_retries=0))
    assert sampling_key(problems, base) != sampling_key(problems, SampleConfig(model="m", backend="transformers",
                                                                               batch_size=4))


def test_sampling_key_follows_the_files_of_a_local_model_folder(tmp_path):
    import os

    from builder.engine import sampling_key
    from builder.generation.sample import SampleConfig

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"epoch 1")
    cfg, problems = SampleConfig(model=str(tmp_path), backend="transformers"), _problems()
    before = sampling_key(problems, cfg)
    weights.write_bytes(b"epoch 2")  # retrained into the same folder: same path, other weights
    os.utime(weights, ns=(1, 1))
    assert sampling_key(problems, cfg) != before


def test_grading_on_other_tests_keeps_the_answers_key_and_changes_the_verdicts_key():
    from builder.engine import plan
    from builder.generation.sample import SampleConfig

    problems = _problems()
    ids = problems.column("problem_id").to_pylist()
    own = plan(problems, SampleConfig(), GraderConfig(), 1)
    other = plan(problems, SampleConfig(), GraderConfig(), 1, tests={pid: "def check(c):\n    pass\n" for pid in ids})
    assert [t.sample_key for t in own] == [t.sample_key for t in other]
    assert all(a.grade_key != b.grade_key for a, b in zip(own, other))


def test_a_measured_reference_time_changes_the_verdicts_key_but_not_the_answers_key():
    import pyarrow as pa

    from builder.engine import plan
    from builder.generation.sample import SampleConfig

    problems = _problems()
    problems = problems.drop_columns([c for c in ("reference_cpu_s",) if c in problems.column_names])
    plain = plan(problems, SampleConfig(), GraderConfig(), 2)[0]
    timed = [plan(problems.append_column("reference_cpu_s", pa.array([t, 0.1])), SampleConfig(), GraderConfig(), 2)[0]
             for t in (0.05, 0.07)]  # measured twice: another value
    assert plain.sample_key == timed[0].sample_key == timed[1].sample_key
    assert len({plain.grade_key, timed[0].grade_key, timed[1].grade_key}) == 3
