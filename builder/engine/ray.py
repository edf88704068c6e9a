"""The engine's chunks on a Ray cluster: ``ap2o-build run --engine ray [--ray-address ADDR]``.

The local driver (``builder.engine.local``) samples and grades every chunk in one process. This
driver hands the same per-chunk functions (``builder.engine.work``'s ``sample_chunk`` and
``grade_chunk``) to Ray Data, which streams the chunks through two pools of actors:

    chunks ──► sample actors (a GPU each for vllm/transformers, else a CPU; each builds its backend once)
           ──► grade actors  (a CPU per sandbox worker; each owns one ``Grader`` pool)
           ──► driver: the chunk's graded rows, its checkpoint, the node that graded it

Why these choices:

* **Our own backends in actors, not ``ray.data.llm``.** ``ray.data.llm``'s vLLM processor builds
  its own prompts, seeds and rows; an answer sampled on the cluster must be the row the local engine
  writes (same prompt format, stop strings, provenance columns, content key), so each sampling actor
  runs ``sample_chunk`` with the backend ``SampleConfig`` names, on the GPU Ray assigns it.
* **Checkpoints written by the workers, under the driver's content keys.** Each actor writes the
  chunk's Parquet file itself through the engine's ``Store`` (temporary name, rename), so a worker
  killed mid-chunk leaves no file and Ray's retry writes the same one; a retry that finds the file
  (the kill came after the write) reuses it. The keys come from ``builder.engine.tasks.plan`` in the driver, so a
  Ray build and a local build find each other's checkpoints.
* **No shared filesystem required.** The rows also travel through Ray's object store: the driver
  carries the answers it already has to the grading actors, the sampling actors pass theirs on, and
  the grading actors return the graded chunk, which the driver writes into its own work dir when the
  worker's file is not visible there. A shared work dir (NFS, a PVC) only saves those copies.
* **One sandbox worker per actor by default** (``--workers W``: W per actor, each actor reserving
  W CPUs): Ray places the actors over every node's cores. Ray gives an actor no core set of its own,
  so the actors' sandbox workers are not pinned (``pin_workers`` would put every actor's first
  worker on the same core); verdicts do not depend on pinning, and the content key stays the
  driver's.
* **A given backend stays in the driver.** A live backend object (the build's recording, read
  already to choose the problems) cannot travel; the driver samples with it and only grading fans
  out.

Retries: Ray restarts a dead actor and resubmits its chunk (an actor's death is a system failure,
retried without limit); an exception of ours (``UserError``: a backend error) is not retried and
ends the build with its one-line message. Each chunk's rows are taken once, by its grade key, so a
retried chunk can neither lose nor duplicate rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io as _io
import logging
import os
import pickle
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from builder.engine.config import EngineConfig
from builder.engine.store import GRADED, SAMPLED, Store
from builder.engine.tasks import ChunkTask
from builder.engine.work import (
    EngineResult,
    default_backend_factory,
    grade_chunk,
    needs_grading,
    needs_sampling,
    sample_chunk,
)
from builder.errors import UserError
from builder.generation.backends import Backend
from builder.generation.sample import SampleConfig
from builder.grading.grader import Grader, GraderConfig
from builder.progress import bar

# Ray itself (the .[ray] extra: hundreds of MB, seconds to import) is imported inside the functions
# that talk to the cluster, so that importing the engine, and every command, stays light without it.

GPU_BACKENDS = ("vllm",)  # need a GPU; transformers and auto take one when the cluster has any
# openai samplers wait on a server, so several run at once (each with --concurrency requests in
# flight): chunks fan out to the servers behind the URL (a router, a Kubernetes Service)
OPENAI_SAMPLERS = 4
_ROW_SCHEMA = pa.schema([("key", pa.string()), ("tasks", pa.binary()), ("sampled", pa.large_binary()),
                         ("sampled_on", pa.string())])
_OUT_SCHEMA = pa.schema([("index", pa.int64()), ("grade_key", pa.string()), ("graded", pa.large_binary()),
                         ("sampled_on", pa.string()), ("node", pa.string()), ("pid", pa.int64()),
                         ("seconds", pa.float64()), ("found", pa.bool_())])


@dataclass
class RayResult(EngineResult):
    """``EngineResult`` plus where each chunk ran: one dict per chunk graded in this run
    (index, node, pid, seconds, sampled_on; ``found``: a retry found the chunk already written)."""

    placement: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0  # chunks Ray returned more than once (taken once; counted to show it is 0)

    def placement_lines(self) -> list[str]:
        return placement_lines(self)

    def nodes(self) -> dict[str, list[int]]:
        """Node id -> the chunk indices it graded."""
        out: dict[str, list[int]] = {}
        for p in self.placement:
            out.setdefault(p["node"], []).append(p["index"])
        return out


def placement_lines(result: RayResult) -> list[str]:
    """The summary's lines on where chunks ran (none for a local build): one per node."""
    placement = getattr(result, "placement", None)
    if not placement:
        return []
    lines = []
    for node, chunks in sorted(result.nodes().items()):
        secs = sum(p["seconds"] for p in placement if p["node"] == node)
        lines.append(f"ray: node {node[:12]} graded {len(chunks)} chunk(s) {sorted(chunks)} in {secs:.1f}s")
    sampled: dict[str, list[int]] = {}
    for p in placement:
        if p["sampled_on"]:  # sampled on the cluster in this run (not by the driver, not found done)
            sampled.setdefault(p["sampled_on"], []).append(p["index"])
    for node, chunks in sorted(sampled.items()):
        lines.append(f"ray: node {node[:12]} sampled {len(chunks)} chunk(s) {sorted(chunks)}")
    lines.append(f"ray: {len(result.nodes())} node(s), {len(placement)} chunk(s) graded, "
                 f"{result.duplicates} returned twice")
    return lines


# --- the actors (built by Ray Data on the workers; imported there by reference) -------------------

def _to_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_bytes(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(_io.BytesIO(data)).read_all()


def _node_id() -> str:
    import ray  # heavy, optional: see the imports

    return ray.get_runtime_context().get_node_id()


class SampleActor:
    """Samples the chunks that need it with one backend, built on first use on this worker."""

    def __init__(self, sample_cfg: SampleConfig, make_backend: Callable[[], Backend], root: str):
        self.sample_cfg, self.make_backend, self.store = sample_cfg, make_backend, Store(root)
        self.backend = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        for row in rows:
            if row["sampled"] is not None:
                continue  # answers the driver had: passed on to grading untouched
            task = pickle.loads(row["tasks"])[0]
            if self.store.done(SAMPLED, task.sample_key):  # a retry after a kill past the write
                table = self.store.get(SAMPLED, task.sample_key)
            else:
                if self.backend is None:
                    self.backend = self.make_backend()
                table = sample_chunk(task, self.sample_cfg, self.store, self.backend)
            row["sampled"], row["sampled_on"] = _to_bytes(table), _node_id()
        return pa.Table.from_pylist(rows, schema=_ROW_SCHEMA)

    def __del__(self):  # an actor ending: free the model (best effort; the process is going anyway)
        if self.backend is not None:
            with contextlib.suppress(Exception):
                self.backend.close()


class GradeActor:
    """Grades chunks with one sandbox pool of ``workers`` workers, kept for the actor's life."""

    def __init__(self, grader_cfg: GraderConfig, workers: int, root: str):
        self.grader_cfg, self.store = grader_cfg, Store(root)
        # unpinned: see the module docstring (Ray gives no actor a core set of its own)
        self.grader = Grader(dataclasses.replace(grader_cfg, workers=workers, pin_workers=False))
        self.grader.start()

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for row in batch.to_pylist():
            tasks = pickle.loads(row["tasks"])
            if not self.store.done(SAMPLED, tasks[0].sample_key):  # no shared work dir
                self.store.put(SAMPLED, tasks[0].sample_key, _from_bytes(row["sampled"]))
            for task in tasks:
                t = time.monotonic()
                found = self.store.done(GRADED, task.grade_key)  # a retry after a kill past the write
                if found:
                    table = self.store.get(GRADED, task.grade_key)
                else:
                    table = grade_chunk(task, self.grader_cfg, self.store, self.grader)
                out.append({"index": task.index, "grade_key": task.grade_key, "graded": _to_bytes(table),
                            "sampled_on": row["sampled_on"], "node": _node_id(), "pid": os.getpid(),
                            "seconds": time.monotonic() - t, "found": found})
        return pa.Table.from_pylist(out, schema=_OUT_SCHEMA)

    def __del__(self):  # an actor ending: stop its sandbox workers (best effort; bwrap's die-with-parent also does)
        with contextlib.suppress(Exception):
            self.grader.close()


# --- the driver -----------------------------------------------------------------------------------

def _connect(address: str | None) -> bool:
    """Connect to the cluster at ``address`` (``auto``: the one ``ray start`` began here), or start a
    new local instance when ``address`` is None; True when this call started the connection (so
    ``run`` ends it). A connection the caller opened (``ray.init`` in a test) is reused."""
    import ray  # heavy, optional: see the imports

    if ray.is_initialized():
        return False
    logging.getLogger("ray").setLevel(logging.WARNING)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "configure_logging": True}
    if address is None:  # "local": a new instance even when `ray start` runs here (ray.init() would join it)
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address or "local", **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"--ray-address {address}: cannot connect to a Ray cluster ({first})") from None
    return True


def _user_error(exc: BaseException) -> str | None:
    """The message of the ``UserError`` a worker raised, from whatever Ray wrapped it in. Ray Data
    re-raises a UDF's exception as a ``UserCodeException`` caused by it, and the cause does not
    survive the trip to the driver as an object, only in the remote traceback's text: hence the
    text as a fallback."""
    text, seen = str(exc), 0
    while exc is not None and seen < 16:
        if isinstance(exc, UserError):
            return str(exc)
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else exc.__cause__
        seen += 1
    found = re.findall(rf"^{re.escape(UserError.__module__)}\.UserError: (.+)$", text, re.MULTILINE)
    return found[-1].strip() if found else None


def _needs_gpu(sample_cfg: SampleConfig, gpus: float) -> bool:
    if sample_cfg.backend in GPU_BACKENDS:
        if gpus < 1:
            raise UserError(f"--engine ray --backend {sample_cfg.backend}: the Ray cluster has no GPU "
                            "(start the sampling nodes with GPUs, or use --backend openai/transformers)")
        return True
    return sample_cfg.backend in ("auto", "transformers") and gpus >= 1


def run(tasks: Sequence[ChunkTask], sample_cfg: SampleConfig, grader_cfg: GraderConfig, store: Store,
        engine: EngineConfig | None = None, *, backend: Backend | None = None,
        make_backend: Callable[[], Backend] | None = None, grader: Grader | None = None,
        progress: bool = True) -> RayResult:
    """Drive every chunk through Ray Data (see the module docstring); the same ``EngineResult`` as
    ``builder.engine.local.run`` plus where each chunk was graded. ``engine.ray_address``:
    ``ray.init``'s (None: a local instance for this call; ``auto``: the cluster ``ray start`` runs
    here; ``ray://HOST:10001``: a remote one). ``grader``: a live pool cannot travel to the cluster,
    so it is refused."""
    try:
        import ray  # only to say what is missing before any work starts (heavy, optional)
    except ImportError as e:
        raise UserError(f"--engine ray needs ray: pip install 'ap2o-coder[ray]' ({e})") from None
    if grader is not None:
        raise UserError("--engine ray grades on the cluster's own actors; a live grader cannot travel there")
    if store.root is None:
        raise UserError("--engine ray needs a work folder for its checkpoints (an in-memory store stays in one process)")
    tasks = list(tasks)
    root = str(store.root.resolve())
    groups: dict[str, list[ChunkTask]] = {}
    for t in tasks:  # evaluation's plus-test tasks share their answers: sampled once, graded per task
        groups.setdefault(t.sample_key, []).append(t)
    reused = {"sample": sum(not any(needs_sampling(t, store) for t in g) for g in groups.values()),
              "grade": sum(not needs_grading(t, store) for t in tasks)}
    seconds = {"sample": 0.0, "grade": 0.0}
    pending = {k: [t for t in g if needs_grading(t, store)] for k, g in groups.items()}
    pending = {k: g for k, g in pending.items() if g}
    result = RayResult(tasks, store, reused, seconds)
    if not pending:
        return result

    t0 = time.monotonic()
    to_sample = [k for k, g in pending.items() if any(needs_sampling(t, store) for t in g)]
    if backend is not None and to_sample:  # a live backend stays here (see the module docstring)
        shown = bar(total=sum(pending[k][0].num_problems for k in to_sample), desc="sample", unit="problem",
                    disable=not progress)
        for k in to_sample:
            sample_chunk(pending[k][0], sample_cfg, store, backend)
            shown.update(pending[k][0].num_problems)
        shown.close()
        to_sample = []
    seconds["sample"] = time.monotonic() - t0

    started = _connect((engine or EngineConfig()).ray_address)
    try:
        _run_cluster(result, pending, set(to_sample), sample_cfg, grader_cfg, store, root,
                     make_backend or default_backend_factory(sample_cfg), progress)
    finally:
        if started:
            import ray  # heavy, optional: see the imports

            ray.shutdown()
    seconds["grade"] = time.monotonic() - t0 - seconds["sample"]
    return result


def _run_cluster(result: RayResult, pending: dict[str, list[ChunkTask]], to_sample: set[str],
                 sample_cfg: SampleConfig, grader_cfg: GraderConfig, store: Store, root: str,
                 make_backend: Callable[[], Backend], progress: bool) -> None:
    import ray  # heavy, optional: see the imports
    import ray.data

    # Ray Data's INFO lines and its "progress bars disabled" notice are not the user's business
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours: "grade" in answers, as the local driver shows
    ctx.print_on_execution_start = False
    resources = ray.cluster_resources()
    cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    workers = grader_cfg.workers or 1
    samplers = 0
    sampler_args: dict[str, Any] = {}
    if to_sample:
        if _needs_gpu(sample_cfg, gpus):
            samplers = min(gpus, len(to_sample))
            sampler_args = {"num_gpus": 1, "num_cpus": 1 if cpus >= samplers + workers else 0}
        else:  # a recording is read and a server is waited on: no core of its own (transformers on CPU: one)
            samplers = min(len(to_sample), OPENAI_SAMPLERS) if sample_cfg.backend == "openai" else 1
            heavy = sample_cfg.backend in ("auto", "transformers") and cpus >= 1 + workers
            sampler_args = {"num_cpus": 1 if heavy else 0}
    if cpus < workers:
        raise UserError(f"--workers {workers} sandbox workers per grading actor, but the Ray cluster has "
                        f"{cpus} CPU(s)")
    graders = max(1, min(sum(len(g) for g in pending.values()),
                         (cpus - samplers * sampler_args.get("num_cpus", 0)) // workers))

    rows = []
    for key, group in pending.items():
        sampled = None if key in to_sample else _to_bytes(store.get(SAMPLED, key))
        rows.append({"key": key, "tasks": pickle.dumps(group), "sampled": sampled, "sampled_on": None})
    # a block per chunk, so chunks spread over the actors; made here (from_items puts the blocks from
    # the driver), not by repartition() or from_arrow(), which run tasks that wait for CPUs the actors hold
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    if to_sample:
        ds = ds.map_batches(SampleActor, batch_size=1, batch_format="pyarrow", zero_copy_batch=True,
                            fn_constructor_args=(sample_cfg, make_backend, root),
                            compute=ray.data.ActorPoolStrategy(size=samplers), **sampler_args)
    ds = ds.map_batches(GradeActor, batch_size=1, batch_format="pyarrow", zero_copy_batch=True,
                        fn_constructor_args=(grader_cfg, workers, root),
                        compute=ray.data.ActorPoolStrategy(size=graders), num_cpus=workers)

    # answers to grade: sample_cfg.n per problem (a recording may hold fewer; the bar ends where the rows do)
    shown = bar(total=sum(t.num_problems for g in pending.values() for t in g) * sample_cfg.n, desc="grade",
                unit="answer", disable=not progress)
    seen: set[str] = set()
    try:
        for out in ds.iter_rows():
            if out["grade_key"] in seen:
                result.duplicates += 1
                continue
            seen.add(out["grade_key"])
            graded = _from_bytes(out["graded"])
            if not store.done(GRADED, out["grade_key"]):  # the worker's file is not visible here
                store.put(GRADED, out["grade_key"], graded)
            result.placement.append({k: out[k] for k in ("index", "node", "pid", "seconds", "sampled_on", "found")})
            shown.update(graded.num_rows)
    except Exception as e:
        message = _user_error(e)
        if message is not None:
            raise UserError(message) from None
        raise
    finally:
        shown.close()
    result.placement.sort(key=lambda p: p["index"])
    missing = [t.index for g in pending.values() for t in g if t.grade_key not in seen]
    if missing:  # never expected: Ray either returns every chunk or raises
        raise RuntimeError(f"ray: chunks {missing} came back without rows")


__all__ = ["GradeActor", "RayResult", "SampleActor", "placement_lines", "run"]
