"""Host side of the sandbox: start long-lived workers, hand them jobs, survive their deaths.

One worker per core by default, each a ``python -I -B`` (inside bubblewrap when it works here)
running ``ap2o_sandbox.worker``. A worker is borrowed by one thread at a time. If a worker dies
(an answer killed it) or stops answering (the host-side watchdog: the job's own limits plus a
margin), its whole process group is killed, a fresh one takes its place, and the job gets a
``Crash`` or ``Timeout`` verdict: the machine and the other jobs carry on.

Where the machine allows cgroups (``cgroup.py``), each worker runs in a cgroup of its own that
caps the memory and processes of the answer it runs, all its processes together. ``abort``
(Ctrl-C, any exception while grading) SIGKILLs every worker at once and makes the jobs in flight
end with ``PoolClosed`` instead of restarting their workers.
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings

from builder.errors import UserError, join
from builder.grading import taxonomy
from builder.grading.sandbox import bwrap, cgroup, compare, jobs
from builder.grading.sandbox import worker as protocol

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
CPU_USAGE_FILE = "/ap2o/cpu-usage"  # where a worker's cgroup CPU counter appears inside bubblewrap
# Imported once per worker, shared by every forked answer. Not numpy: its pages would be copied
# into every fork (about 0.8 CPU-ms per answer, measured) for the few answers that use it; those
# import it themselves; their scalars reach the judge as Python values (child.serve).
PRELOAD = ("collections", "itertools", "functools", "math", "cmath", "re", "string", "heapq", "bisect",
           "copy", "random", "statistics", "fractions", "decimal", "datetime", "typing", "operator",
           "dataclasses", "enum", "array", "json", "hashlib")
STARTUP_TIMEOUT_S = 60.0
PROBE_BYTES = 16 * 1024 * 1024  # what the start-up probe's answer allocates: less than any real limit should allow
# The host's watchdog. A worker sends a heartbeat every second while it runs an answer: one that
# falls silent this long is stopped or stuck, and is replaced. A busy machine slows a worker, it
# does not silence it, so the verdict never depends on the load (the limits themselves are read
# inside the worker on clocks the load does not stretch: meter.py). The cap on a whole job
# catches a worker that beats but never answers (a bug of ours).
WATCHDOG_SILENCE_S = 10.0
WATCHDOG_MARGIN_S = 5.0
WATCHDOG_FACTOR = 20
_warned = False


@dataclasses.dataclass(frozen=True)
class SandboxSettings:
    """Limits and isolation for every answer, in the units the workers use (built from
    ``GraderConfig``, which documents the user-facing options)."""

    timeout_s: float = dataclasses.field(default=3.0, metadata={"help": "wall-clock limit per run, seconds"})
    memory_bytes: int = dataclasses.field(default=2048 * 1024 * 1024, metadata={"help": "RLIMIT_AS, bytes"})
    output_limit_bytes: int = dataclasses.field(default=8 * 1024 * 1024, metadata={
        "help": "stdio output beyond this is OutputLimit"})
    stdout_keep_bytes: int = dataclasses.field(default=4096, metadata={"help": "tail of the output kept"})
    max_processes: int = dataclasses.field(default=64, metadata={"help": "RLIMIT_NPROC"})
    max_open_files: int = dataclasses.field(default=256, metadata={"help": "RLIMIT_NOFILE"})
    max_file_bytes: int = dataclasses.field(default=64 * 1024 * 1024, metadata={"help": "RLIMIT_FSIZE, bytes"})
    tmp_bytes: int = dataclasses.field(default=256 * 1024 * 1024, metadata={
        "help": "size of a worker's private tmpfs /tmp (bubblewrap >= 0.8), bytes"})
    isolation: str = dataclasses.field(default="auto", metadata={"help": "auto | bwrap | rlimits"})
    pin_workers: bool = dataclasses.field(default=True, metadata={
        "help": "pin worker i and every process it forks to the i-th core this process may use"})
    answer_packages: tuple[str, ...] = dataclasses.field(default=(), metadata={
        "help": "distributions (with what they require) an answer may import besides the standard library; "
                "nothing else installed is visible inside bubblewrap (view.py)"})

    def __post_init__(self):
        # The same bounds GraderConfig checks, for callers that build settings directly: a NaN or
        # huge deadline would overflow the worker's poll and rlimits, and leave answers running.
        checks = {"timeout_s": (self.timeout_s, 0, 3600), "memory_bytes": (self.memory_bytes, 32 << 20, 1 << 50),
                  "max_processes": (self.max_processes, 1, 4096), "max_open_files": (self.max_open_files, 80, 65536),
                  "output_limit_bytes": (self.output_limit_bytes, 1, 1 << 40),
                  "stdout_keep_bytes": (self.stdout_keep_bytes, 0, 1 << 30),
                  "max_file_bytes": (self.max_file_bytes, 1, 1 << 46), "tmp_bytes": (self.tmp_bytes, 1 << 20, 1 << 46)}
        for name, (value, low, high) in checks.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high or (name == "timeout_s" and value == 0):
                raise ValueError(f"SandboxSettings.{name} must be in [{low}, {high}], got {value!r}")
        if not isinstance(self.answer_packages, tuple) or not all(isinstance(p, str) for p in self.answer_packages):
            raise ValueError(f"SandboxSettings.answer_packages must be a tuple of names, got {self.answer_packages!r}")
        if self.isolation not in ("auto", "bwrap", "rlimits"):
            raise ValueError(f"SandboxSettings.isolation must be auto, bwrap or rlimits, got {self.isolation!r}")


class SandboxError(UserError):
    """The sandbox itself could not be set up (not an answer's fault): one line and exit status 2
    from every command (``--isolation bwrap`` where bubblewrap cannot run, a ``--memory-mb`` too
    small for Python here), like a bad input."""


class PoolClosed(RuntimeError):
    """The pool was aborted (Ctrl-C, or another job failed) while this job waited or ran."""


class _Spawner:
    """Starts every worker from one long-lived daemon thread. bubblewrap's ``--die-with-parent``
    sends its SIGKILL when the *thread* that started it ends, not the process: workers started
    from pool threads (which come and go) would die with them, so none is."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # also after a fork of this process
                self._jobs = queue.Queue()
                self._thread = threading.Thread(target=self._loop, args=(self._jobs,), name="ap2o-sandbox-spawner",
                                                daemon=True)
                self._thread.start()
            jobs = self._jobs
        box: queue.Queue = queue.Queue(maxsize=1)
        jobs.put((argv, kwargs, box))
        ok, value = box.get()
        if not ok:
            raise value
        return value

    @staticmethod
    def _loop(jobs: queue.Queue) -> None:
        while True:
            argv, kwargs, box = jobs.get()
            try:
                box.put((True, subprocess.Popen(argv, **kwargs)))
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread, which raises it
                box.put((False, e))


_spawner = _Spawner()


def _clip(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _names() -> dict:
    return {"timeout": taxonomy.TIMEOUT, "early_exit": taxonomy.EARLY_EXIT, "crash": taxonomy.CRASH,
            "output_limit": taxonomy.OUTPUT_LIMIT, "wrong_result": taxonomy.WRONG_RESULT,
            "sandbox_error": taxonomy.SANDBOX_ERROR}


def _usable_cores() -> int:
    """How many cores an answer's processes could run on at once (it may widen a pinned worker's
    affinity to all of ours): the bound the worker's CPU meter assumes between two readings."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_isolation(requested: str) -> bool:
    """True to use bubblewrap. ``auto`` falls back to rlimits-only with one warning per process."""
    global _warned
    if requested == "rlimits":
        return False
    why = bwrap.available(PACKAGE_DIR)
    if why is None:
        return True
    if requested == "bwrap":
        raise SandboxError(f"isolation='bwrap' was asked for but {why}")
    if not _warned:
        _warned = True
        uid = ("each answer under a uid of its own" if os.geteuid() == 0 and _python_shared()
               else "answers under our own uid")
        warnings.warn(f"{why}; answers run with rlimits, a session and {uid} only: no network, "
                      "filesystem or pid isolation (see docs/sandbox.md)", RuntimeWarning, stacklevel=3)
    return False


def _python_shared() -> bool:
    """Without bubblewrap an answer's own uid must reach the interpreter's files; when it cannot
    (Python under a private /root), answers keep our uid and the one-time warning says so."""
    return all(bwrap.reachable_by_others(d) for d in bwrap.python_dirs())


def descendants(root: int) -> list[int]:
    """Every live process below ``root``, by parent links in /proc (orphans of the answers are
    re-parented to the worker, a subreaper, so they stay below it)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


class Worker:
    """One worker process and the pipe pair to it."""

    def __init__(self, index: int, settings: SandboxSettings, use_bwrap: bool, host_dir: str,
                 group: cgroup.WorkerGroup | None = None, closing: threading.Event | None = None):
        self.index, self.settings, self.use_bwrap, self.host_dir = index, settings, use_bwrap, host_dir
        self.group = group  # the worker's cgroup (memory and pids cap), None where cgroups do not work
        self.closing = closing or threading.Event()
        self.proc: subprocess.Popen | None = None
        own_uids = os.geteuid() == 0 and (use_bwrap or _python_shared())
        self.uid = self._uid(index) if own_uids else None
        self.judge_uid = self._uid(index, judge=True) if own_uids else None

    @staticmethod
    def _uid(index: int, pid: int | None = None, *, judge: bool = False) -> int:
        # Distinct per worker (RLIMIT_NPROC counts per uid across namespaces: two workers sharing
        # a uid would share one fork budget), per grading process (``pid``, default ours) and per
        # role: the judge's uid is not the answer's, so the answer cannot signal, prlimit,
        # renice, re-pin or ptrace it. Far above real users' uids, below 2**32 - 1.
        slot = (os.getpid() if pid is None else pid) % 2_000_000
        return 100_000 + slot * 2048 + 2 * (index % 1024) + (1 if judge else 0)

    def _cpu(self) -> int | None:
        """The core this worker's process tree runs on, or None (the scheduler decides).

        Why pin: a function answer's test is a ping-pong between the judge and the answer's
        process (one wake-up per call each way), and every answer starts with a fork from the
        zygote and ends with a wait. On one core those hand-offs are local wake-ups; spread over
        cores each is an inter-processor interrupt, which in a VM is a trip through the
        hypervisor. ``benchmarks/grader.py`` measures the difference."""
        if not self.settings.pin_workers:
            return None
        try:
            cpus = sorted(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            return None
        return cpus[self.index % len(cpus)] if len(cpus) > 1 else None

    def start(self) -> None:
        if self.closing.is_set():
            raise PoolClosed("the sandbox pool is closing")
        if self.use_bwrap:
            usage = self.group.cpu_usage if self.group is not None else None
            binds = [(usage[0], CPU_USAGE_FILE)] if usage else []
            argv = bwrap.command(PACKAGE_DIR, as_root=os.geteuid() == 0, tmp_bytes=self.settings.tmp_bytes,
                                 answer_packages=self.settings.answer_packages, binds=binds)
            path, scratch_base = bwrap.MOUNT_POINT, "/tmp/ap2o"
            extra = bwrap.package_path(self.settings.answer_packages)
            cpu_usage = [CPU_USAGE_FILE, usage[1]] if usage else None
            env = None  # bwrap clears it
        else:
            link_dir = os.path.join(self.host_dir, "lib")
            os.makedirs(link_dir, exist_ok=True)
            link = os.path.join(link_dir, "ap2o_sandbox")
            if not os.path.exists(link):
                os.symlink(PACKAGE_DIR, link)
            argv, path, scratch_base = [], link_dir, os.path.join(self.host_dir, f"w{self.index}")
            extra = []
            cpu_usage = list(self.group.cpu_usage) if self.group is not None and self.group.cpu_usage else None
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": scratch_base,
                   "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        bootstrap = (f"import sys; sys.path[:0] = [{path!r}]; sys.path += {extra!r}; "
                     "from ap2o_sandbox.worker import main; main()")
        argv = argv + [os.path.realpath(sys.executable), "-I", "-B", "-c", bootstrap]
        if self.group is not None:
            argv = self.group.wrap(argv)
        self._stderr = tempfile.TemporaryFile(dir=self.host_dir)
        self.proc = _spawner.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                   env=env, start_new_session=True, close_fds=True, bufsize=0)
        s = self.settings
        protocol.send(self.proc.stdin.fileno(), {
            "preload": list(PRELOAD), "timeout": s.timeout_s, "memory_bytes": s.memory_bytes,
            "output_limit": s.output_limit_bytes, "stdout_keep": s.stdout_keep_bytes,
            "nproc": s.max_processes, "nofile": s.max_open_files, "fsize": s.max_file_bytes,
            "uid": self.uid, "judge_uid": self.judge_uid, "scratch_base": scratch_base, "names": _names(),
            "pid_namespace": self.use_bwrap, "exception_names": list(taxonomy.EXCEPTION_TYPES), "cpu": self._cpu(),
            "cpu_usage": cpu_usage, "cores": _usable_cores(),
        })
        ready = self._recv(STARTUP_TIMEOUT_S)
        self._oom_kills_seen = self.group.oom_kills() if self.group is not None else 0
        if not isinstance(ready, dict) or not ready.get("ready"):
            err = self._stderr_tail()
            self.kill()
            if self.closing.is_set():
                raise PoolClosed("the sandbox pool is closing")
            raise SandboxError(f"sandbox worker {self.index} failed to start: {err or 'no output'}")

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read()[-2000:].decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def _recv(self, silence: float, total: float | None = None):
        """A message, or None if the worker died, fell silent for ``silence`` seconds (heartbeats
        count as a sign of life) or sent nothing but heartbeats for ``total`` seconds."""
        fd = self.proc.stdout.fileno()
        deadline = None if total is None else time.monotonic() + total
        while True:
            wait = silence if deadline is None else min(silence, deadline - time.monotonic())
            if wait <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                return None
            try:
                message = protocol.recv(fd, heartbeats=True)
            except (OSError, ValueError):
                return None
            if message != protocol.HEARTBEAT:
                return message

    def run(self, job: dict) -> dict:
        """The worker's verdict for ``job``; a synthetic one if the worker dies or hangs."""
        limit = float(job.get("timeout") or self.settings.timeout_s)
        budget = WATCHDOG_FACTOR * limit + WATCHDOG_MARGIN_S
        started = time.monotonic()
        try:
            protocol.send(self.proc.stdin.fileno(), job)
        except OSError:
            result = None
        else:
            result = self._recv(max(WATCHDOG_SILENCE_S, limit + WATCHDOG_MARGIN_S), budget)
        if self.closing.is_set():
            raise PoolClosed("the sandbox pool is closing")
        if self.group is not None and self._oom_kills_seen < (kills := self.group.oom_kills()):
            # the kernel ended one of the answer's processes (or, rarely, the worker) at the cap;
            # one read per job: the count before it is the one the previous job left
            self._oom_kills_seen = kills
            if result is None or "internal_error" in result:
                self.kill()
                self.start()
            return {"error_type": "MemoryError", "runtime_s": round(time.monotonic() - started, 6),
                    "error_message": (f"the answer's processes together used more than "
                                      f"{self.settings.memory_bytes // (1024 * 1024)} MiB (killed by the kernel)")}
        if result is not None and "internal_error" not in result:
            return result
        hung = self.proc.poll() is None and result is None
        detail = self._stderr_tail() if result is None else result["internal_error"]
        self.kill()
        self.start()
        runtime = round(time.monotonic() - started, 6)
        if result is not None:  # the worker failed on this answer (e.g. it killed the zygote): label it, go on
            return {"error_type": taxonomy.CRASH, "runtime_s": runtime,
                    "error_message": "the sandbox worker failed while running this answer and was replaced",
                    "traceback": f"sandbox worker: {detail}"}
        if hung:
            return {"error_type": taxonomy.TIMEOUT, "runtime_s": runtime,
                    "error_message": "the sandbox worker stopped answering (it was restarted)"}
        return {"error_type": taxonomy.CRASH, "runtime_s": runtime,
                "error_message": "the sandbox worker died while running this answer (it was restarted)"}

    def signal_tree(self) -> None:
        """SIGKILL the worker and everything under it, and nothing else: safe from another thread
        while ``run`` waits on this worker (which then sees EOF)."""
        proc = self.proc
        if proc is None:
            return
        for _ in range(2):  # a second pass for anything forked while the first one ran
            for pid in [proc.pid, *descendants(proc.pid)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def kill(self) -> None:
        """SIGKILL the worker and everything under it. Killing bwrap alone would not do: the
        namespace's init and the worker run in a session of their own, and a stopped or stuck
        worker would never see its pipe close; an answer it was running would lose its deadline."""
        if self.proc is None:
            return
        self.signal_tree()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.proc = None
        self._stderr.close()

    def close(self) -> None:
        """Ask politely (EOF), then make sure."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


HOST_DIR_PREFIX = "ap2o-sandbox-"


def _remove_stale_host_dirs() -> None:
    """The temporary directories of graders that were killed before they could remove theirs
    (SIGKILL: no cleanup runs); the next pool on the machine removes them. Their workers are
    dead by then (bubblewrap's --die-with-parent; without it, at their deadline). The removal
    trusts nothing an answer may have left there (``remove_tree``: unreadable directories, deep
    trees, links)."""
    base = tempfile.gettempdir()
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        pid = name[len(HOST_DIR_PREFIX):].split("-", 1)[0] if name.startswith(HOST_DIR_PREFIX) else ""
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            protocol.remove_tree(os.path.join(base, name))


class WorkerPool:
    """``run(job)`` from any number of threads; at most ``size`` jobs run at once."""

    def __init__(self, size: int, settings: SandboxSettings):
        self.settings = settings
        self.use_bwrap = resolve_isolation(settings.isolation)
        self._closing = threading.Event()
        # cgroups hold a worker's whole process tree only when the tree's processes cannot leave
        # it: true in bubblewrap's pid namespace, and as root (a uid per worker) without it
        self._limiter, self.cgroup_unavailable = (
            cgroup.open_limiter() if os.geteuid() == 0 else (None, "not root: cgroups cannot be created"))
        _remove_stale_host_dirs()
        self._host_dir = tempfile.mkdtemp(prefix=f"{HOST_DIR_PREFIX}{os.getpid()}-")
        os.chmod(self._host_dir, 0o711)
        try:
            groups = [self._limiter.make(i, settings.memory_bytes, settings.max_processes) if self._limiter else None
                      for i in range(size)]
        except OSError as e:  # a controller that refuses the limit: fall back to rlimits alone
            self._limiter.close()
            self._limiter, self.cgroup_unavailable, groups = None, f"cgroup limits refused: {e}", [None] * size
        self._workers = [Worker(i, settings, self.use_bwrap, self._host_dir, groups[i], self._closing)
                         for i in range(size)]
        self._idle: queue.Queue[Worker] = queue.Queue()
        errors: list[BaseException] = []

        def start(w: Worker) -> None:
            try:
                w.start()
            except BaseException as e:  # reported below, after every start has finished
                errors.append(e)

        threads = [threading.Thread(target=start, args=(w,)) for w in self._workers]
        try:
            for t in threads:
                t.start()
            for t in threads:
                join(t)  # wakes for a Ctrl-C (builder.errors.WAKE_S)
        except BaseException:  # Ctrl-C while the workers start
            self.abort()
            for t in threads:
                if t.ident is not None:
                    t.join()
            self.close()
            raise
        if errors:
            self.close()
            raise errors[0]
        for w in self._workers:
            self._idle.put(w)
        try:
            self._probe()
        except BaseException:  # Ctrl-C or a worker failure during the probe: no worker or cgroup may leak
            self.close()
            raise

    @property
    def memory_cap_bytes(self) -> int | None:
        """The cgroup cap on one worker (its answer plus the worker's headroom); None without cgroups."""
        w = self._workers[0] if self._workers else None
        return w.group.memory_cap if w is not None and w.group is not None else None

    def _probe(self) -> None:
        """Run one small answer (it allocates ``PROBE_BYTES``), so that a memory limit too tight
        for Python here fails once, with its name, instead of labelling every answer
        ``MemoryError`` or ``EarlyExit``. RLIMIT_AS counts the interpreter's own mappings (26 MiB
        here), so what is "too small" depends on the machine's Python: we measure, not guess."""
        job = jobs.function_job(f"def probe():\n    return len(bytearray({PROBE_BYTES}))\n",
                                f"def check(candidate):\n    assert candidate() == {PROBE_BYTES}\n", "probe",
                                timeout=max(self.settings.timeout_s, 10.0))
        verdict = self.run(job)
        if verdict.get("error_type") is not None:
            self.close()
            mib = self.settings.memory_bytes // (1024 * 1024)
            raise SandboxError(
                f"an answer that allocates {PROBE_BYTES >> 20} MiB fails in the sandbox with a memory limit of "
                f"{mib} MiB ({verdict['error_type']}: {_clip(str(verdict.get('error_message') or ''), 120)}); "
                "the limit is too small for Python here (try --memory-mb 256 or more), or the sandbox itself is broken")

    @property
    def size(self) -> int:
        return len(self._workers)

    def run(self, job: dict) -> dict:
        """The verdict for a function job, or for all cases of a stdio job (one worker run per
        case, compared here, stopping at the first case that fails)."""
        if self._closing.is_set():
            raise PoolClosed("the sandbox pool is closing")
        w = self._idle.get()
        try:
            if job["kind"] != jobs.STDIO:
                return w.run(job)
            return self._run_stdio(w, job)
        finally:
            self._idle.put(w)

    @staticmethod
    def _run_stdio(w: Worker, job: dict) -> dict:
        total, verdict = 0.0, {"error_type": None, "runtime_s": 0.0}
        for case, (stdin, expected) in enumerate(zip(job["inputs"], job["outputs"])):
            verdict = w.run(jobs.stdio_case(job, stdin))
            total += verdict.get("runtime_s") or 0.0
            verdict["runtime_s"] = round(total, 6)
            output = verdict.pop("output", None)
            if verdict["error_type"] is not None:
                verdict["error_message"] = f"case {case}: {verdict.get('error_message') or ''}".rstrip(": ")
                return verdict
            if not compare.outputs_match(output or "", expected):
                verdict.update(error_type=taxonomy.WRONG_RESULT, error_message=f"case {case}: wrong output",
                               failed_test=(f"case {case}: input {_clip(stdin)!r} expected {_clip(expected)!r} "
                                            f"got {_clip(output or '')!r}"))
                return verdict
        return verdict

    def abort(self) -> None:
        """Stop everything now, from any thread: every worker's tree gets SIGKILL at once (no
        polite EOF: a worker in the middle of an answer would finish it first), and the jobs in
        flight end with ``PoolClosed``. ``close`` still has to follow."""
        self._closing.set()
        for w in self._workers:
            w.signal_tree()

    def close(self) -> None:
        if self._closing.is_set():  # aborted: the workers are dead or dying, no EOF handshake
            for w in self._workers:
                w.kill()
        for w in self._workers:
            w.close()
        if self._limiter is not None:
            self._limiter.close()
        shutil.rmtree(self._host_dir, ignore_errors=True)
