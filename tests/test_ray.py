"""``--engine ray``: the build's chunks on Ray Data actors give the local engine's dataset.

Real Ray, real sandboxes: the embedded default through the command line on a local Ray instance it
starts itself, then a two-node cluster on this machine (``ray.cluster_utils.Cluster``: two raylets
of one CPU each, so the grading actors must land on both) for the rehearsal of a multi-node build,
a grading actor killed with SIGKILL mid-build, and a worker's error reaching the user as one line.
Skipped without the ``.[ray]`` extra.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from processes import descendants, processes
from servers import RefusingServer  # the same HTTP 400 server as the local engine's test

from builder import engine
from builder.dataset import shards
from builder.engine import ray as engine_ray
from builder.errors import UserError

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RAY_DEDUP_LOGS": "0"}
ENV.pop("RAY_ADDRESS", None)  # the command-line test starts its own local instance
MEASURED = ("runtime_s", "reference_cpu_s")  # measured in each build (an answer's and a reference solution's time): equal builds may differ there


def _tables(folder: pathlib.Path) -> dict[tuple[str, str], pa.Table]:
    out = {}
    for config in shards.configs(folder):
        for split in shards.splits(folder, config):
            table = shards.read_split(folder, config, split)
            out[config, split] = table.drop_columns([c for c in MEASURED if c in table.column_names])
    return out


def _same_rows(a: pa.Table, b: pa.Table) -> bool:
    keep = [n for n in a.column_names if n not in MEASURED]
    return a.select(keep) == b.select(keep)


@pytest.mark.slow
def test_embedded_default_on_a_local_ray_instance_is_the_local_dataset(embedded_default, tmp_path):
    """``ap2o-build run --output DIR`` and the same with ``--engine ray`` (a local Ray instance of
    its own): every config row by row, and the recipe byte for byte (the card is not compared: its
    download size counts the measured runtimes' bytes)."""
    local = embedded_default[0]
    on_ray = subprocess.run([sys.executable, "-m", "builder.cli", "run", "--output", str(tmp_path / "ray"), "--quiet",
                             "--engine", "ray"], capture_output=True, text=True, env=ENV, timeout=400, check=False)
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    assert "ray: 1 node(s)" in on_ray.stdout
    a, b = _tables(local), _tables(tmp_path / "ray")
    assert sorted(a) == sorted(b) and ("samples", "test") in a
    for key in a:
        assert a[key].num_rows > 0 and a[key] == b[key], key
    assert (local / "build.yaml").read_bytes() == (tmp_path / "ray" / "build.yaml").read_bytes()


# --- a two-node cluster on this machine ----------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of one CPU each (a head and a worker raylet), joined by this process;
    ``engine_ray.run`` reuses the connection and leaves it open."""
    from ray.cluster_utils import Cluster

    before = set(descendants())
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        ray.init(address=c.address, logging_level="WARNING")
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        _end_what_we_started(before)


def _end_what_we_started(before: set[int], grace_s: float = 15.0) -> None:
    """Ray's daemons (raylets, log monitors, workers) outlive ``Cluster.shutdown`` for a moment;
    the sandbox tests that follow count this process's descendants, so wait for the ones the
    cluster started to go and SIGKILL, by pid, those that do not."""
    deadline = time.monotonic() + grace_s
    while (left := set(descendants()) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    while (set(descendants()) - before) and time.monotonic() < deadline + 5:
        time.sleep(0.1)


def _config(slow_completions: pathlib.Path, driver: str = "local", **top):
    from builder.config import BuildConfig
    from builder.generation.sample import SampleConfig
    from builder.grading.grader import GraderConfig
    from builder.problems.sources import ProblemsConfig

    return BuildConfig(problems=ProblemsConfig(source="humaneval", limit=8),
                       sample=SampleConfig(backend="file", completions=str(slow_completions), n=10),
                       grader=GraderConfig(timeout_s=5.0, workers=1),
                       engine=engine.EngineConfig(chunk_problems=2, driver=driver), **top)


@pytest.fixture(scope="module")
def reference(slow_completions, tmp_path_factory) -> pa.Table:
    """The rows of the same build on the local engine."""
    from builder.pipeline import run_build

    return run_build(_config(slow_completions), tmp_path_factory.mktemp("local") / "ds", progress=False).samples


@pytest.mark.slow
def test_both_nodes_grade_chunks_and_each_chunk_once(cluster, slow_completions, reference, tmp_path):
    """The rehearsal: with one CPU per node, the two grading actors sit on different nodes, and
    the build's summary names the node of every chunk (the dataset rows do not)."""
    from builder.pipeline import run_build, summary

    built = run_build(_config(slow_completions, driver="ray"), tmp_path / "ds", progress=False)
    assert _same_rows(built.samples, reference)
    text = summary(built)
    assert "ray: 2 node(s), 4 chunk(s) graded, 0 returned twice" in text, text
    graded = re.findall(r"^ray: node \S+ graded \d+ chunk\(s\) \[([\d, ]+)\]", text, flags=re.MULTILINE)
    assert len(graded) == 2 and sorted(int(i) for line in graded for i in line.split(", ")) == [0, 1, 2, 3], text
    assert not {"node", "node_id", "pid"} & set(built.samples.column_names)


def _is_answer(pid: int, procs: dict[int, tuple[int, str]]) -> bool:
    """An answer's process: the sandbox's zygote forks it and it keeps the zygote's name."""
    parent, name = procs[pid]
    return name == "ap2o-zygote" and procs.get(parent, (0, ""))[1] == "ap2o-zygote"


def _grade_actor_pids() -> list[int]:
    """Processes of this machine that are Ray's grading actors (their title names the class)."""
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"GradeActor" in title and b"ray::" in title:
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_a_grading_actor_killed_mid_build_loses_and_duplicates_no_row(cluster, slow_completions, reference, tmp_path):
    """SIGKILL of a grading actor while chunks are still being graded: Ray restarts it and resubmits
    its chunk, the content-keyed checkpoint takes the chunk once, and the build ends with exactly the
    local engine's rows."""
    from builder.pipeline import run_build

    cfg = _config(slow_completions, driver="ray", keep_work=True)
    graded = tmp_path / ".ds.work" / engine.GRADED
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(result=run_build(cfg, tmp_path / "ds", progress=False)))
    thread.start()
    # The first grading actor is killed once it is grading: an answer's process (a child of its
    # sandbox's zygote) is alive, or a checkpoint exists. Each of its two chunks grades for a second
    # or more, so at any machine load the kill lands while chunks remain (the test used to wait for
    # the first checkpoint, and at load 24 the build had finished by the time the loop saw one).
    killed, done_at_kill = None, None
    deadline = time.monotonic() + 240
    while thread.is_alive() and killed is None and time.monotonic() < deadline:
        procs = processes()
        for pid in _grade_actor_pids():
            done = len(list(graded.glob("*.parquet"))) if graded.is_dir() else 0
            if done or any(_is_answer(p, procs) for p in descendants(pid, procs)):
                done_at_kill = done
                os.kill(pid, signal.SIGKILL)
                killed = pid
                break
        time.sleep(0.02)
    thread.join(timeout=300)
    assert killed is not None and done_at_kill < 4, "the kill came after the build had graded every chunk"
    assert "result" in box, "the build did not finish"
    assert _same_rows(box["result"].samples, reference)
    assert len(list(graded.glob("*.parquet"))) == 4  # one checkpoint per chunk, no stray copies


def test_a_sampling_actors_error_is_the_users_one_line_and_leaves_nothing(cluster, tmp_path):
    """The openai backend samples on a Ray actor; the server's refusal comes back as the same
    ``UserError`` the local engine raises, not a Ray traceback, and no folder is left."""
    from builder.config import BuildConfig
    from builder.generation.sample import SampleConfig
    from builder.pipeline import run_build
    from builder.problems.sources import ProblemsConfig

    server = RefusingServer()
    try:
        cfg = BuildConfig(problems=ProblemsConfig(source="humaneval", limit=2), engine=engine.EngineConfig(driver="ray"),
                          sample=SampleConfig(backend="openai", base_url=server.url, model="nope", n=1, max_retries=0))
        with pytest.raises(UserError, match=r"^sampling chunk 0: .*400") as caught:
            run_build(cfg, tmp_path / "ds", progress=False)
    finally:
        server.close()
    assert "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_live_grader_cannot_travel(slow_completions, tmp_path):
    from builder.grading.grader import Grader

    cfg = _config(slow_completions)
    with pytest.raises(UserError, match="a live grader cannot travel"):
        engine_ray.run([], cfg.sample, cfg.grader, engine.Store(tmp_path), grader=Grader(cfg.grader))


def test_an_evaluation_with_plus_tests_on_ray_is_the_local_evaluation(cluster, tmp_path):
    """``ap2o-eval --engine ray`` on MBPP+: each chunk's answers are sampled once and graded on the
    base and the plus tests by the cluster's actors; the numbers and rows are the local run's."""
    import json

    import pyarrow.parquet as pq

    from trainer.evaluation.export import PLUS_SAMPLES_FILE, SAMPLES_FILE
    from trainer.evaluation.run import EvalConfig, evaluate

    answers = tmp_path / "answers.jsonl"
    rows = [("Mbpp/3", "import math\ndef is_not_prime(n):\n    return n == 1 or any(n % i == 0 for i in range(2, int(math.sqrt(n)) + 1))\n"),
            ("Mbpp/3", "def is_not_prime(n):\n    return any(n % i == 0 for i in range(2, n))\n"),  # wrong on 1 (a plus input)
            ("Mbpp/17", "def square_perimeter(a):\n    return 4 * a\n"),
            ("Mbpp/17", "def square_perimeter(a):\n    return nope(a)\n")]
    answers.write_text("".join(json.dumps({"problem_id": p, "completion": c}) + "\n" for p, c in rows))
    common = {"backend": "file", "completions": str(answers), "benchmark": "mbpp+", "n": 2, "k": (1,), "workers": 1,
              "chunk_problems": 1, "progress": False,
              "benchmark_source": str(pathlib.Path(__file__).parent / "data" / "evalplus-mbppplus")}
    local = evaluate(EvalConfig.from_flat(output=str(tmp_path / "local"), **common))
    on_ray = evaluate(EvalConfig.from_flat(output=str(tmp_path / "ray"), engine="ray", **common))
    for key in ("pass@1", "plus", "error_counts", "samples"):
        assert local[key] == on_ray[key], key
    assert local["plus"]["pass@1"] < local["pass@1"]  # the plus tests did run: one answer fails only there
    for name in (SAMPLES_FILE, PLUS_SAMPLES_FILE):
        assert _same_rows(pq.read_table(tmp_path / "local" / name), pq.read_table(tmp_path / "ray" / name)), name


def test_without_ray_the_engine_says_what_to_install(monkeypatch, slow_completions, tmp_path):
    cfg = _config(slow_completions)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where the extra is not installed
    with pytest.raises(UserError, match=r"--engine ray needs ray: pip install 'ap2o-coder\[ray\]'"):
        engine.run([], cfg.sample, cfg.grader, engine.Store(tmp_path), engine.EngineConfig(driver="ray"))


def test_a_grading_node_without_the_work_dir_grades_the_rows_it_is_sent(cluster, slow_completions, tmp_path):
    """No shared filesystem: a grading actor whose node has none of the driver's files grades the
    answers carried in its row, and sends back the rows the local engine writes (the driver then
    keeps them in its own work dir)."""
    import pickle

    from builder.problems.sources import load_problems

    cfg = _config(slow_completions)
    [task] = engine.plan(load_problems("humaneval", limit=2, quiet=True), cfg.sample, cfg.grader, 2)
    driver = engine.Store(tmp_path / "driver")
    with engine.default_backend_factory(cfg.sample)() as backend:
        sampled = engine.sample_chunk(task, cfg.sample, driver, backend)
    row = {"key": task.sample_key, "tasks": pickle.dumps([task]), "sampled": engine_ray._to_bytes(sampled),
           "sampled_on": None}
    actor = engine_ray.GradeActor(cfg.grader, 1, str(tmp_path / "elsewhere"))  # another node's view: empty
    try:
        [out] = actor(pa.Table.from_pylist([row], schema=engine_ray._ROW_SCHEMA)).to_pylist()
    finally:
        actor.grader.close()
    assert out["grade_key"] == task.grade_key and not out["found"]
    assert _same_rows(engine_ray._from_bytes(out["graded"]), engine.grade_chunk(task, cfg.grader, driver))


@pytest.mark.parametrize("flags", [["--engine", "ray", "--ray-address", "auto"], ["--engine", "ray", "--ray_address", "auto"]])
def test_engine_flags_reach_the_build_config_in_both_spellings(flags):
    import argparse

    from builder.config import resolve_config
    from builder.pipeline import configure

    parser = argparse.ArgumentParser()
    configure(parser)
    cfg = resolve_config(parser.parse_args(["--output", "x", *flags]))
    assert (cfg.engine.driver, cfg.engine.ray_address) == ("ray", "auto")
