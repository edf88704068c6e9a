"""``builder.engine``: the one sample -> grade engine of the build, the evaluation and the quiz.

Real parts throughout: HumanEval problems, the ``file`` backend reading a completions file, the
sandbox grader, Parquet checkpoints read back, and a second process for the executor seam."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pytest

import schemas
from builder import engine

pytest.importorskip("builder.grading.grader", reason="the engine grades with builder.grading.grader")

# what a row is apart from how long its answer took to run
SAME = [n for n in schemas.ANSWERS.names if n != "runtime_s"]


@pytest.fixture(scope="module")
def problems() -> pa.Table:
    from builder.problems.sources import load_problems

    return load_problems("humaneval", limit=5, quiet=True)


@pytest.fixture(scope="module")
def configs(completions):
    from builder.generation.sample import SampleConfig
    from builder.grading.grader import GraderConfig

    return SampleConfig(backend="file", completions=str(completions), n=3), GraderConfig(workers=1)


class Counting:
    """The configured backend, counting the generate calls that reach it."""

    def __init__(self, sample_cfg, log: list) -> None:
        self.inner = engine.default_backend_factory(sample_cfg)()
        self.name, self.model, self.model_revision = self.inner.name, self.inner.model, self.inner.model_revision
        self.provenance, self.log = self.inner.provenance, log
        self.recorded_for = getattr(self.inner, "recorded_for", None)

    def generate(self, requests, params, *, progress=True):
        self.log.append([r.key for r in requests])
        return self.inner.generate(requests, params, progress=progress)

    def close(self):
        self.inner.close()


def _no_backend():
    raise AssertionError("a backend was built although every chunk was done")


def _first_run(problems, configs, root):
    sample_cfg, grader_cfg = configs
    tasks = engine.plan(problems, sample_cfg, grader_cfg, 2)
    done = engine.run_local(tasks, sample_cfg, grader_cfg, engine.Store(root), progress=False)
    return tasks, done


def test_a_second_run_reuses_every_chunk_and_builds_no_backend(problems, configs, tmp_path):
    tasks, first = _first_run(problems, configs, tmp_path)
    again = engine.run_local(tasks, *configs, engine.Store(tmp_path), make_backend=_no_backend, progress=False)
    assert again.reused == {"sample": 3, "grade": 3}  # 5 problems in chunks of 2
    assert again.table().select(SAME) == first.table().select(SAME)


def test_a_partial_store_redoes_only_the_missing_chunks(problems, configs, tmp_path):
    tasks, first = _first_run(problems, configs, tmp_path)
    store = engine.Store(tmp_path)
    # chunk 0 lost both files (killed before it was graded, answers lost too); chunk 1 lost its
    # verdicts only; a killed writer's temporary beside chunk 2's is not taken for a finished file
    for stage, key in ((engine.GRADED, tasks[0].grade_key), (engine.SAMPLED, tasks[0].sample_key),
                       (engine.GRADED, tasks[1].grade_key)):
        store.path(stage, key).unlink()
    stale = store.path(engine.GRADED, tasks[1].grade_key).with_name(f".{tasks[1].grade_key}.parquet.x1.tmp")
    stale.write_bytes(b"half a file")
    log: list = []
    again = engine.run_local(tasks, *configs, store, make_backend=lambda: Counting(configs[0], log), progress=False)
    assert log == [tasks[0].problems.column("problem_id").to_pylist()]  # only chunk 0 was sampled again
    assert again.reused == {"sample": 2, "grade": 1}
    assert again.table().select(SAME) == first.table().select(SAME)


def test_grading_on_other_tests_reuses_the_answers(problems, configs, tmp_path):
    sample_cfg, grader_cfg = configs
    first = problems.column("problem_id")[0].as_py()
    failing = "def check(candidate):\n    assert False\n"
    tests = {pid: (failing if pid == first else test) for pid, test in
             zip(problems.column("problem_id").to_pylist(), problems.column("test").to_pylist())}
    base = engine.plan(problems, sample_cfg, grader_cfg, 2)
    plus = engine.plan(problems, sample_cfg, grader_cfg, 2, tests=tests)
    assert [t.sample_key for t in plus] == [t.sample_key for t in base]
    assert not {t.grade_key for t in plus} & {t.grade_key for t in base}
    log: list = []
    done = engine.run_local(base + plus, *configs, engine.Store(tmp_path),
                            make_backend=lambda: Counting(sample_cfg, log), progress=False)
    assert len(log) == len(base)  # each chunk's answers were made once, for both gradings
    other = done.table(plus)
    mine = [p == first for p in other.column("problem_id").to_pylist()]
    assert not any(ok for ok, m in zip(other.column("passed").to_pylist(), mine) if m)
    assert other.filter(pa.array([not m for m in mine])).select(SAME) == done.table(base).filter(
        pa.array([not m for m in mine])).select(SAME)


def test_the_in_memory_store_keeps_nothing_on_disk_and_cannot_travel(problems, configs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = engine.sample_and_grade(problems, *configs, progress=False)
    assert done.table().num_rows == 2 + 4 * 3 and not list(tmp_path.iterdir())  # problem 0 has 2 answers
    with pytest.raises(TypeError, match="in-memory Store"):
        pickle.dumps(done.store)


# a worker process of an executor, as plainly as it gets: unpickle the work, do it, say how many rows
WORKER = """
import pickle, sys
from builder import engine
tasks, sample_cfg, grader_cfg, store = pickle.load(open(sys.argv[1], "rb"))
backend = engine.default_backend_factory(sample_cfg)()  # built once per worker, used for every chunk
print([engine.sample_chunk(t, sample_cfg, store, backend).num_rows for t in tasks])
backend.close()
print([engine.grade_chunk(t, grader_cfg, store).num_rows for t in tasks])
"""


def test_chunk_work_runs_in_another_process_and_writes_the_same_files(problems, configs, tmp_path):
    """The executor seam: tasks, the configs and a folder store pickle; another process samples
    and grades the chunks into the store, and the local driver then finds every chunk done with
    the rows it would have made itself. (A plain subprocess: a multiprocessing pool would leave its
    resource tracker running under the test process, which the sandbox tests count.)"""
    import subprocess
    import sys

    sample_cfg, grader_cfg = configs
    tasks = engine.plan(problems, sample_cfg, grader_cfg, 2)
    remote = engine.Store(tmp_path / "remote")
    work = tmp_path / "work.pickle"
    work.write_bytes(pickle.dumps((tasks, sample_cfg, grader_cfg, remote)))
    out = subprocess.run([sys.executable, "-c", WORKER, str(work)], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[5, 6, 3]"] * 2  # problem 0 has 2 answers, the others 3
    found = engine.run_local(tasks, *configs, remote, make_backend=_no_backend, progress=False)
    assert found.reused == {"sample": 3, "grade": 3}
    _, local = _first_run(problems, configs, tmp_path / "local")
    assert found.table().select(SAME) == local.table().select(SAME)


def test_a_quiz_row_is_a_build_row(problems, completions, configs, tmp_path):
    """The same answers through ``ap2o-build run`` and through the trainer's quiz give the same
    rows: problem, program, reply and verdict (how they were sampled may differ: the quiz's n = 1
    and temperature are its own)."""
    from builder.config import BuildConfig
    from builder.grading.grader import Grader
    from builder.pipeline import run_build
    from builder.problems.sources import ProblemsConfig
    from trainer.config import QuizConfig
    from trainer.data import QUIZ_COLUMNS
    from trainer.quiz import quiz_table

    sample_cfg, grader_cfg = configs
    cfg = BuildConfig(problems=ProblemsConfig(source="humaneval", limit=5), grader=grader_cfg,
                      sample=type(sample_cfg)(backend="file", completions=str(completions), n=1))
    built = run_build(cfg, tmp_path / "ds", progress=False).samples
    rows = [{c: r.get(c) for c in QUIZ_COLUMNS} for r in problems.to_pylist()]
    with Grader(grader_cfg) as grader, engine.default_backend_factory(cfg.sample)() as backend:
        quizzed = quiz_table(backend, rows, QuizConfig(quiz_prompt_format="completion"), grader, step=3)
    # measured, not decided: run times, and the reference time the build measures for its time limits
    generation = {f.name for f in schemas.GENERATION_FIELDS} | {"source", "split", "runtime_s", "reference_cpu_s"}
    columns = [n for n in schemas.ANSWERS.names if n not in generation]
    assert quizzed.num_rows == built.num_rows == 5
    assert quizzed.select(columns) == built.select(columns)
    assert quizzed.column("error_type").to_pylist() == built.column("error_type").to_pylist()


def test_an_empty_chunk_size_is_refused(problems, configs):
    """A user's --chunk-problems 0 is a UserError where the setting is made (``EngineConfig``, the
    one place it is checked); a caller handing ``plan`` 0 is a programming error."""
    from builder.errors import UserError

    with pytest.raises(UserError, match="chunk_problems must be >= 1"):
        engine.EngineConfig(chunk_problems=0)
    with pytest.raises(ValueError, match="chunk_problems must be >= 1"):
        engine.plan(problems, *configs, 0)


def test_a_task_pickles_its_own_problems_not_the_whole_table(configs):
    """A task travels to a worker process: it must not drag every other chunk's rows along (a
    pickled Arrow slice carries its parent's whole buffers)."""
    from builder.problems.sources import load_problems

    everything = load_problems("humaneval", quiet=True)
    tasks = engine.plan(everything, *configs, 16)
    assert max(len(pickle.dumps(t)) for t in tasks) < len(pickle.dumps(everything)) / 5
