"""The content keys that let ap2o-build run and ap2o-eval resume: same inputs, same key; any
input that changes answers or verdicts, another key."""

from builder.engine import content_key, file_digest, grading_settings
from builder.grading.grader import GraderConfig


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
