"""A long-lived worker: receives jobs on its stdin, runs each answer, answers on stdout.

Started by ``pool`` (inside bubblewrap when available) with ``python -I -B -c`` and this
directory bound read-only as the package ``ap2o_sandbox``; standard library only. Forking from a
warm interpreter that already imported what answers use costs about a millisecond, where
starting a fresh interpreter per answer costs tens.

Three kinds of process, so that no answer shares an interpreter (or memory) with a verdict:

* the **worker** (this module's ``main``): reads jobs, collects verdicts, cleans up; root inside
  its namespaces when we are root (a plain user otherwise), not dumpable.
* the **zygote**: a copy of the worker forked once, right after the preload and before any job,
  that forks every answer process. It never receives a test or an expected output, so no answer
  can find one in the memory it inherits.
* the **judge** (``judge``): one long-lived process, forked from the worker on its first function
  job and again after any run that ended without its report, that runs each test and calls the
  answer over a socket it receives per run. It runs under a uid of its own, not the answer's
  (as root), and is not dumpable: the answer cannot signal it, ``prlimit``, renice, re-pin or
  ptrace it. Every signal that reaches it ends it (so a ``SIGINT`` can never become a
  ``KeyboardInterrupt`` the test catches), and it checks its own limits before and after each
  test: either way that test ends as an infrastructure error (``SandboxError``), never a pass.
* per answer, the **answer process** (``child``, from the zygote), under a seccomp filter
  (``seccomp``) that refuses the kernel state outliving a process (keyrings, POSIX queues).

Per run the worker makes a fresh scratch directory (random name) and the pipes, asks the zygote
for the answer process and hands the judge its end of the answer's socket (descriptors travel
over Unix sockets), and waits for the judge's report (function) or the answer's end (stdio)
until a limit is reached (``meter``: CPU time of every process of the run, and own time, which a
loaded machine does not stretch). Then it kills the answer's process group (and the judge's, if
it has not reported) and, in its own pid namespace (bubblewrap), every other process there but
the zygote and the judge; as root without one, every process of the answer's uid (an answer
that called ``setsid`` leaves the group). It reaps what it killed, removes the SysV objects and
keys the answer left, and removes the scratch directory without recursion, long paths or trust
in its permissions (``remove_tree``). A stdio job is one case: the expected output stays with
the host, which compares.

Protocol with the host (both ways): 4-byte big-endian length, then JSON (ASCII). While a run is
in progress the worker also sends an empty frame (length 0) every ``HEARTBEAT_S`` seconds: the
host's watchdog replaces a worker that falls silent, not one that is merely slowed by the load.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import resource
import select
import signal
import socket
import struct
import sys
import time

from . import child, codec, ipc, judge, limits, meter, seccomp

_HEADER = struct.Struct(">I")
READ_CHUNK = 1 << 16
REPORT_CAP = 1 << 20
PATH = "/usr/local/bin:/usr/bin:/bin"
PR_SET_NAME, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 15, 4, 36


# --- protocol --------------------------------------------------------------------------------------

HEARTBEAT = "heartbeat"  # what ``recv(..., heartbeats=True)`` returns for an empty frame


def recv(fd: int, heartbeats: bool = False):
    head = codec.read_exact(fd, _HEADER.size)
    if head is None:
        return None
    size = _HEADER.unpack(head)[0]
    if size == 0 and heartbeats:  # no JSON message is empty
        return HEARTBEAT
    body = codec.read_exact(fd, size)
    return None if body is None else json.loads(body)


def send(fd: int, message) -> None:
    body = json.dumps(message, ensure_ascii=True).encode("ascii")
    data = _HEADER.pack(len(body)) + body
    while data:
        data = data[os.write(fd, data):]


HEARTBEAT_S = 1.0
_beat_fd: int | None = None
_last_beat = 0.0


def beat(now: float) -> None:
    """An empty frame to the host, at most once per ``HEARTBEAT_S``: this worker is alive."""
    global _last_beat
    if _beat_fd is not None and now - _last_beat >= HEARTBEAT_S:
        _last_beat = now
        try:
            os.write(_beat_fd, _HEADER.pack(0))
        except OSError:
            pass


# --- the worker loop -------------------------------------------------------------------------------

_prctl = None


def _set_prctl(option: int, value) -> None:
    if _prctl is not None:
        try:
            _prctl(option, value, 0, 0, 0)
        except Exception:
            pass


_filter: seccomp.Installer | None = None


def main() -> None:
    global _prctl, _filter, _beat_fd
    # fd 0/1 become the protocol; the worker's own prints can no longer corrupt it
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    settings = recv(proto_in)
    if settings is None:
        return
    if settings.get("cpu") is not None:  # before any fork: the zygote, the judge and every answer inherit it
        try:
            os.sched_setaffinity(0, {settings["cpu"]})
        except OSError:  # a core the namespace or cpuset does not allow: run unpinned
            pass
    try:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        _prctl = None
    _set_prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of the answers come to us, to be reaped
    _set_prctl(PR_SET_DUMPABLE, 0)  # an answer under our uid cannot ptrace us or read our memory
    child.prepare(settings["preload"])
    # the largest value the judge and the answer pass each other: a quarter of the memory limit
    # (the message, the decoded value and the test's copy of it must all fit), at most 1 GiB
    settings["channel_cap"] = min(int(settings["memory_bytes"]) // 4, 1 << 30)
    _filter = seccomp.Installer()  # built before the zygote forks: each answer only switches it on
    settings["seccomp"] = _filter.reason is None
    settings["scratch_dir"] = _make_scratch_base(settings)
    nproc = settings["nproc"]
    if settings["uid"] is None and nproc is not None:
        nproc += limits.count_user_processes(os.getuid())  # RLIMIT_NPROC counts all of our processes
    settings["nproc_effective"] = nproc
    zygote = Zygote(settings, close=(proto_in, proto_out))
    judges = Judges(settings, close=(proto_in, proto_out))
    _beat_fd = proto_out
    send(proto_out, {"ready": True, "pid": os.getpid(), "uid": settings["uid"], "scratch": settings["scratch_dir"],
                     "seccomp": _filter.reason})
    while True:
        job = recv(proto_in)
        if job is None:
            break
        try:
            result = run_job(job, settings, zygote, judges)
        except Exception as e:  # a bug of ours, or a zygote an answer killed: the host replaces us
            result = {"internal_error": f"{type(e).__name__}: {e}"}
        send(proto_out, result)


def run_job(job: dict, settings: dict, zygote: Zygote, judges: Judges) -> dict:
    """A function problem's whole test, or one case of a stdio problem. A stdio job carries the
    case's stdin only: the expected output never enters the sandbox (the host compares)."""
    global _last_beat
    _last_beat = time.monotonic()  # a heartbeat only for a run that takes longer than HEARTBEAT_S
    names = settings["names"]
    timeout = float(job.get("timeout") or settings["timeout"])
    if job.get("cpu_limit") is not None:  # a per-problem CPU-time limit; ``timeout`` is then the wall-clock backstop
        job["cpu_limit"] = min(float(job["cpu_limit"]), timeout)
    if job["kind"] != "stdio":
        return _function_verdict(run_function(job, timeout, settings, zygote, judges), names)
    stdin = job["stdin"].encode("utf-8", "surrogateescape")
    return _stdio_verdict(run_stdio(job, stdin, timeout, settings, zygote, judges), names, settings, job["code"])


# --- the zygote ------------------------------------------------------------------------------------

class ZygoteGone(RuntimeError):
    """The zygote died (an answer under our uid may kill it): this worker must be replaced."""


class Zygote:
    """The worker's end of the zygote: ``spawn`` an answer process, learn how it ended."""

    def __init__(self, settings: dict, close=()):
        mine, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the zygote never returns
            try:
                mine.close()
                for fd in close:  # the host's pipes: a dead worker must look dead to the host
                    os.close(fd)
                _set_prctl(PR_SET_NAME, b"ap2o-zygote")  # a name in ps and /proc/<pid>/comm
                _zygote_loop(theirs, settings)
            finally:
                os._exit(0)
        theirs.close()
        self.pid, self.sock = pid, mine

    def spawn(self, request: dict, fds: list[int]) -> int:
        body = json.dumps(request, ensure_ascii=True).encode("ascii")
        try:
            socket.send_fds(self.sock, [_HEADER.pack(len(body))], fds)
            self.sock.sendall(body)
            reply = recv(self.sock.fileno())
        except OSError as e:
            raise ZygoteGone(f"the zygote is gone ({e})") from None
        if not isinstance(reply, dict) or "pid" not in reply:
            raise ZygoteGone("the zygote is gone")
        return reply["pid"]

    def status(self, timeout: float | None):
        """How the last answer process ended (signal, exit_code, cpu_s), or None if it has not
        within ``timeout`` seconds (None: wait)."""
        if timeout is not None:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
            if not ready:
                return None
        try:
            reply = recv(self.sock.fileno())
        except OSError:
            reply = None
        if not isinstance(reply, dict):
            raise ZygoteGone("the zygote is gone")
        return reply


def _zygote_loop(sock: socket.socket, settings: dict) -> None:  # pragma: no cover - a forked process
    fd = sock.fileno()
    while True:
        try:
            head, fds, _, _ = socket.recv_fds(sock, _HEADER.size, 4)
        except OSError:
            return
        if len(head) != _HEADER.size:
            return
        body = codec.read_exact(fd, _HEADER.unpack(head)[0])
        if body is None:
            return
        request = json.loads(body)
        pid = os.fork()
        if pid == 0:
            sock.close()
            _answer_process(request, settings, fds)
        for f in fds:
            os.close(f)
        send(fd, {"pid": pid})
        _, status, usage = os.wait4(pid, 0)
        send(fd, {"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                  "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                  "cpu_s": usage.ru_utime + usage.ru_stime})


def _answer_process(request: dict, settings: dict, fds: list[int]) -> None:  # pragma: no cover
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        stdio = request["mode"] == "stdio"
        if stdio:
            stdin_fd, out_w, channel = fds
            os.dup2(stdin_fd, 0)
            os.dup2(out_w, 1)
            os.dup2(devnull, 2)  # stderr is not part of a stdio answer
        else:
            out_w, channel = fds
            os.dup2(devnull, 0)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
        channel_fd = random.randrange(64, settings["nofile"] - 8)
        os.dup2(channel, channel_fd, inheritable=False)
        _close_all_but({0, 1, 2, channel_fd})
        limits.apply(limits.child_limits(
            memory_bytes=settings["memory_bytes"], timeout_s=request["timeout"], nproc=settings["nproc_effective"],
            nofile=settings["nofile"], fsize_bytes=settings["fsize"]))
        _drop_to(settings["uid"])
        if _filter is not None and not _filter.install() and settings.get("seccomp"):
            os._exit(70)  # the filter worked at start-up and fails now: never run the answer without it
        scratch = request["scratch"]
        os.chdir(scratch)
        os.environ.clear()
        os.environ.update({"HOME": scratch, "TMPDIR": scratch, "PATH": PATH, "LANG": "C.UTF-8",
                           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
        if stdio:
            report = child.make_reporter(channel_fd, bytes.fromhex(request["nonce"]))
            child.run_stdio(request["code"], report, settings["exception_names"])
        else:
            child.serve(request["code"], channel_fd, settings["exception_names"], settings["channel_cap"])
    except BaseException:
        os._exit(70)
    os._exit(71)


class Judges:
    """The worker's judge: one long-lived process (forked from us, after the zygote) that runs
    every function answer's test in turn, started again whenever one ends badly (killed by the
    answer, past a deadline)."""

    def __init__(self, settings: dict, close=()):
        self.settings, self.close, self.current = settings, close, None

    def get(self) -> JudgeProcess:
        if self.current is not None and not self.current.idle_and_alive():
            self.discard()
        if self.current is None:
            self.current = JudgeProcess(self.settings, self.close)
        return self.current

    def discard(self) -> str | None:
        """End the current judge (a new one serves the next answer); how it had ended."""
        if self.current is None:
            return None
        how = self.current.kill()
        self.current = None
        return how


class JudgeProcess:
    def __init__(self, settings: dict, close=()):
        mine, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the judge never returns
            try:
                mine.close()
                _judge_process(theirs, settings)
            finally:
                os._exit(70)
        theirs.close()
        self.pid, self.sock = pid, mine

    def idle_and_alive(self) -> bool:
        """Between runs a live judge says nothing: anything readable is its end (EOF)."""
        ready, _, _ = select.select([self.sock], [], [], 0)
        return not ready

    def start(self, job: dict, channel_fd: int) -> None:
        body = json.dumps({k: job.get(k) for k in ("code", "test", "prelude", "entry_point")},
                          ensure_ascii=True).encode("ascii")
        socket.send_fds(self.sock, [_HEADER.pack(len(body))], [channel_fd])
        self.sock.sendall(body)

    def result(self):
        try:
            return recv(self.sock.fileno())
        except (OSError, ValueError):
            return None

    def stopped(self) -> bool:
        """Stopped by a signal (SIGSTOP, SIGTSTP...): state T in /proc."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                return f.read().rsplit(b")", 1)[1].split()[0] in (b"T", b"t")
        except (OSError, IndexError):
            return False

    def kill(self) -> str:
        """End the judge; how it had ended by itself, if it had (for an infrastructure error)."""
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # already reaped by a sweep
            pid, status = self.pid, None
        if pid == 0:
            _kill_group(self.pid)
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            how = "killed at the end of the run"
        elif status is None:
            how = "gone"
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == JUDGE_SIGNALLED:
            how = "a signal reached it"
        elif os.WIFSIGNALED(status):
            how = f"killed by signal {_signal_name(os.WTERMSIG(status))}"
        else:
            how = f"exit status {os.WEXITSTATUS(status)}"
        self.sock.close()
        return how


JUDGE_SIGNALLED = 75  # the judge's exit status when a signal reached it (never a verdict)
# left alone: uncatchable, or how Python reports errors itself (EPIPE, a crash is the judge's death anyway)
_UNHANDLED_SIGNALS = {"SIGKILL", "SIGSTOP", "SIGCHLD", "SIGPIPE", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT",
                      "SIGTRAP", "SIGSYS"}


def _judge_process(sock: socket.socket, settings: dict) -> None:  # pragma: no cover - a forked process
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(sock.fileno(), 3, inheritable=False)
        for fd in (0, 1, 2):  # the test's prints go nowhere: they are not part of any verdict
            os.dup2(devnull, fd)
        _close_all_but({0, 1, 2, 3})
        # any signal ends the judge: a SIGINT must never become a KeyboardInterrupt in the middle
        # of the problem's prelude or test (which would catch it and go on with the wrong names)
        for sig in signal.valid_signals():
            try:
                name = signal.Signals(sig).name
            except ValueError:  # a real-time signal: no name, handled too
                name = None
            if name not in _UNHANDLED_SIGNALS:
                try:
                    signal.signal(sig, _signalled)
                except (OSError, ValueError):
                    pass
        # the answer's limits but no CPU limit (it adds up over the judge's life; the deadline
        # bounds each run) and not its OOM score (at a cgroup cap the answer goes first)
        for name, (soft, hard) in limits.child_limits(
                memory_bytes=settings["memory_bytes"], timeout_s=1, nproc=None,
                nofile=settings["nofile"], fsize_bytes=settings["fsize"]).items():
            if name != "RLIMIT_CPU":
                resource.setrlimit(getattr(resource, name), (soft, hard))
        # a uid of its own (as root): the answer's uid can neither signal, prlimit, renice, re-pin
        # nor ptrace a process of another uid
        _drop_to(settings.get("judge_uid"))
        _set_prctl(PR_SET_DUMPABLE, 0)  # again: a uid change resets it
        _set_prctl(PR_SET_NAME, b"ap2o-judge")
        os.chdir("/")
        os.environ.clear()
        os.environ.update({"PATH": PATH, "LANG": "C.UTF-8"})
        control = socket.socket(fileno=3)
        _judge_loop(control, settings, _own_state())
    except BaseException:
        os._exit(70)
    os._exit(0)


def _signalled(signum, frame) -> None:  # pragma: no cover - in the judge
    os._exit(JUDGE_SIGNALLED)


def _own_state() -> tuple:
    """The judge's limits, priority and CPU affinity: nothing but the judge itself may change them."""
    rlimits = tuple((name, resource.getrlimit(getattr(resource, name)))
                    for name in sorted(n for n in dir(resource) if n.startswith("RLIMIT_")))
    try:
        affinity = tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        affinity = ()
    return rlimits, os.getpriority(os.PRIO_PROCESS, 0), affinity


def _judge_loop(control: socket.socket, settings: dict, state: tuple) -> None:  # pragma: no cover - in the judge
    fd = control.fileno()
    names, exception_names = settings["names"], settings["exception_names"]
    while True:
        head, fds, _, _ = socket.recv_fds(control, _HEADER.size, 1)
        if len(head) != _HEADER.size or len(fds) != 1:
            return
        body = codec.read_exact(fd, _HEADER.unpack(head)[0])
        if body is None:
            return
        job = json.loads(body)
        before = resource.getrusage(resource.RUSAGE_SELF)
        changed = _own_state() != state
        try:
            if changed:  # between two tests: this one never starts
                verdict = {}
            else:
                verdict = judge.evaluate(job.get("code") or "", job.get("test") or "",
                                         _compiled(job.get("test"), judge.TEST_FILE),
                                         _compiled(job.get("prelude"), judge.PRELUDE_FILE),
                                         job.get("entry_point") or "", fds[0], names, exception_names,
                                         settings["channel_cap"])
        finally:
            os.close(fds[0])
        if changed or _own_state() != state:  # a limit that changed under the test decides nothing
            send(fd, {"infra": "the judge's limits, priority or CPU affinity were changed from outside"})
            os._exit(0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        verdict["cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        send(fd, verdict)


def _drop_to(uid: int | None) -> None:
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


# --- one run ---------------------------------------------------------------------------------------

class _AnswerWaiter:
    """Waits for the answer process to end (the zygote tells us)."""

    def __init__(self, zygote: Zygote):
        self.zygote, self.fd, self.done, self.result = zygote, zygote.sock.fileno(), False, None

    def on_ready(self) -> None:
        self.result = self.zygote.status(0)
        self.done = self.result is not None

    def status(self) -> dict:
        if self.result is None:
            self.result = self.zygote.status(None)
        return self.result


class _JudgeWaiter:
    """Waits for the judge's report of this run (or its end: EOF)."""

    def __init__(self, judge_process: JudgeProcess):
        self.judge, self.fd, self.done, self.report = judge_process, judge_process.sock.fileno(), False, None

    def on_ready(self) -> None:
        self.report, self.done = self.judge.result(), True


def _meter(settings: dict, wall: float, cpu_limit: float | None, answer_pid: int, judge_pid: int | None):
    usage = settings.get("cpu_usage")
    return meter.RunMeter(wall_limit=wall, cpu_limit=cpu_limit, answer_pid=answer_pid, judge_pid=judge_pid,
                          cgroup=meter.CgroupCpu(*usage) if usage else None, cores=settings.get("cores") or 1)


def _collect(out_r: int, rep_r: int, waiter, run: meter.RunMeter, keep: int, cap: int | None):
    """Read the answer's output and the report until ``waiter`` is done, or ``run`` reaches a
    limit (``run.exceeded``: ``"cpu"`` or ``"wall"``). Returns (stdout bytes, report bytes,
    timed_out, output_limit). Between readings of the meter nothing but the pipes is looked at."""
    stdio = cap is not None
    check_at = time.monotonic() + run.first_wait()
    os.set_blocking(out_r, False)
    os.set_blocking(rep_r, False)
    out, report = bytearray(), bytearray()
    total_out = 0
    timed_out = output_limit = False
    poller = select.poll()
    for fd in (out_r, rep_r, waiter.fd):
        poller.register(fd, select.POLLIN)
    open_fds = {out_r, rep_r}
    while not waiter.done:
        now = time.monotonic()
        beat(now)
        if now >= check_at:
            check_at = now + run.next_check()
            if run.exceeded:
                timed_out = True
                break
        wait = min(check_at - now, HEARTBEAT_S)
        for fd, _ in poller.poll(max(0.0, wait) * 1000):
            if fd == waiter.fd:
                waiter.on_ready()
            elif fd in open_fds:
                total_out += _read_into(fd, out if fd == out_r else report, open_fds, poller, fd == out_r)
        if not stdio and len(out) > 2 * keep:
            del out[: len(out) - keep]  # a function answer's prints: only a tail is kept
        if stdio and total_out > cap:
            output_limit = True
            break
    if waiter.done:  # what was written just before the end is still in the pipes
        for fd in sorted(open_fds):
            total_out += _read_into(fd, out if fd == out_r else report, open_fds, poller, fd == out_r)
        output_limit = stdio and total_out > cap
    return out, report, timed_out, output_limit


def _run_cpu(run: meter.RunMeter, answer: dict, judge_cpu: float) -> float:
    """The run's CPU seconds, read after every process of it is dead: the cgroup's count where
    there is one (every process the answer started), else the answer's own and its waited-for
    children's (from wait4) plus the judge's."""
    if run.counts_every_process():
        return run.cpu_s()
    return answer["cpu_s"] + judge_cpu


def run_function(job: dict, timeout: float, settings: dict, zygote: Zygote, judges: Judges) -> dict:
    keep = settings["stdout_keep"]
    started = time.monotonic()
    judge_process = judges.get()  # before the run's descriptors exist: the judge inherits none
    scratch = _new_scratch(settings)
    out_r, out_w = os.pipe()
    rep_r, rep_w = os.pipe()  # unused by function runs: the judge reports on its own socket
    os.close(rep_w)
    a_sock, j_sock = socket.socketpair()
    answer_fd, judge_fd = a_sock.detach(), j_sock.detach()
    cpu_limit = job.get("cpu_limit")
    try:
        apid = zygote.spawn({"mode": "function", "code": job["code"], "timeout": cpu_limit or timeout,
                             "scratch": scratch}, [out_w, answer_fd])
        run = _meter(settings, timeout, cpu_limit, apid, judge_process.pid)
        judge_process.start(job, judge_fd)
    finally:
        for fd in (out_w, answer_fd, judge_fd):
            os.close(fd)
    waiter = _JudgeWaiter(judge_process)
    out, _, timed_out, _ = _collect(out_r, rep_r, waiter, run, keep, None)
    payload = waiter.report if isinstance(waiter.report, dict) else None
    answer = None
    if not timed_out and payload is not None and payload.get("gone"):
        # the answer's end of the socket closed: wait (within the limits) to learn how it ended
        answer_waiter = _AnswerWaiter(zygote)
        more, _, timed_out, _ = _collect(out_r, rep_r, answer_waiter, run, keep, None)
        out += more
        answer = answer_waiter.result
    infra = None
    if timed_out and judge_process.stopped():  # a stopped judge decides nothing: not the answer's Timeout
        infra = "the judge was stopped by a signal"
    _kill_group(apid)
    if payload is None or "infra" in payload:  # past the limits, dead or tampered with: no further answer
        infra = infra or (payload or {}).get("infra")
        ended = judges.discard()
        if not timed_out and infra is None:
            infra = f"the judge ended before it reported ({ended})"
    if answer is None:
        answer = zygote.status(None)
    runtime = time.monotonic() - started
    os.close(out_r)
    os.close(rep_r)
    _sweep(settings, {zygote.pid} | ({judges.current.pid} if judges.current is not None else set()))
    judge_cpu = payload.pop("cpu_s", 0.0) if payload is not None else 0.0
    cpu = _run_cpu(run, answer, judge_cpu)
    _leftovers(settings)
    remove_tree(scratch)
    return {
        "report": payload, "timed_out": timed_out, "answer": answer, "infra": infra,
        "stdout": bytes(out), "stdout_keep": keep, "runtime_s": runtime, "timeout": timeout,
        "cpu_s": cpu, "judge_cpu_s": judge_cpu, "cpu_limit": cpu_limit,
        # past the limit however it ended (between two readings, too): the limit is exact
        "cpu_out": cpu_limit is not None and (run.exceeded == "cpu" or cpu > cpu_limit),
    }


def run_stdio(job: dict, stdin: bytes, timeout: float, settings: dict, zygote: Zygote, judges: Judges) -> dict:
    cap, keep = settings["output_limit"], settings["stdout_keep"]
    started = time.monotonic()
    scratch = _new_scratch(settings)
    out_r, out_w = os.pipe()
    rep_r, rep_w = os.pipe()
    stdin_fd = _stdin_fd(stdin)
    nonce = os.urandom(16)
    cpu_limit = job.get("cpu_limit")
    try:
        apid = zygote.spawn({"mode": "stdio", "code": job["code"], "timeout": cpu_limit or timeout, "scratch": scratch,
                             "nonce": nonce.hex()}, [stdin_fd, out_w, rep_w])
    finally:
        for fd in (stdin_fd, out_w, rep_w):
            os.close(fd)
    run = _meter(settings, timeout, cpu_limit, apid, None)
    waiter = _AnswerWaiter(zygote)
    out, report, timed_out, output_limit = _collect(out_r, rep_r, waiter, run, keep, cap)
    _kill_group(apid)
    answer = waiter.status()
    runtime = time.monotonic() - started
    os.close(out_r)
    os.close(rep_r)
    _sweep(settings, {zygote.pid} | ({judges.current.pid} if judges.current is not None else set()))
    cpu = _run_cpu(run, answer, 0.0)
    _leftovers(settings)
    remove_tree(scratch)
    data = bytes(report[:REPORT_CAP])
    message = None
    if data.startswith(nonce):
        try:
            message = codec.decode(data[len(nonce):])
        except codec.CodecError:
            message = None
    return {
        "report": message, "timed_out": timed_out, "output_limit": output_limit, "answer": answer,
        "stdout": bytes(out[:cap]), "stdout_keep": keep, "output_cap": cap,
        "runtime_s": runtime, "cpu_s": cpu, "timeout": timeout, "cpu_limit": cpu_limit,
        "cpu_out": cpu_limit is not None and (run.exceeded == "cpu" or cpu > cpu_limit),
    }


def _leftovers(settings: dict) -> None:
    """What outlives the answer's processes, removed before the next answer: SysV objects (issue
    10), and the keys of its uid where no seccomp filter could refuse them (issue 20)."""
    ipc.sweep(settings)
    if not settings.get("seccomp"):
        seccomp.sweep_keys(settings.get("uid"))


# --- verdicts --------------------------------------------------------------------------------------

def _function_verdict(out: dict, names: dict) -> dict:
    verdict = {"runtime_s": round(out["runtime_s"], 6), "cpu_s": out["cpu_s"], "judge_cpu_s": out["judge_cpu_s"],
               "stdout": _tail(out["stdout"], out["stdout_keep"])}
    report = out["report"]
    if out.get("infra"):  # the judge was reached (a signal, a changed limit) or died: no verdict of the answer
        verdict.update(_synthetic(names["sandbox_error"], f"infrastructure error: {out['infra']}"))
    elif out["cpu_out"]:
        verdict.update(_cpu_timeout(out, names))
    elif out["timed_out"]:
        verdict.update(_synthetic(names["timeout"], f"no result within {out['timeout']:g} s"))
    elif report is not None and "ok" in report:
        verdict["error_type"] = None
    elif report is not None and "error" in report:
        verdict.update(_from_report(report["error"]))
    elif report is not None and report.get("gone"):
        verdict.update(_ended_without_report(out["answer"], out["timeout"], names, stdio=False))
    else:  # the judge ended without a verdict (only a process of the judge's uid or root can do that)
        verdict.update(_synthetic(names["sandbox_error"], "infrastructure error: the judge ended before it reported"))
    return verdict


def _stdio_verdict(out: dict, names: dict, settings: dict, code: str) -> dict:
    """How one stdio run ended; ``error_type`` None means it ended normally and ``output`` is
    what it printed (up to the cap), for the host to compare."""
    verdict = {"runtime_s": round(out["runtime_s"], 6), "cpu_s": out["cpu_s"],
               "stdout": _tail(out["stdout"], out["stdout_keep"]), "error_type": None}
    answer = out["answer"]
    message = out["report"]
    info = None
    if type(message) is tuple and len(message) == 2 and message[0] in ("raise", "exit"):
        info = judge.check_info(message[1], frozenset(settings["exception_names"]))
    sources = {judge.ANSWER_FILE: code}
    if out["cpu_out"]:
        verdict.update(_cpu_timeout(out, names))
    elif out["timed_out"]:
        verdict.update(_synthetic(names["timeout"], f"no result within {out['timeout']:g} s"))
    elif out["output_limit"]:
        verdict.update(_synthetic(names["output_limit"], f"printed more than {out['output_cap']} bytes"))
    elif info is not None and message[0] == "raise":
        verdict.update(_from_report(judge.answer_error(info, [], sources)))
    elif info is not None:
        verdict.update(_from_report(judge.exit_error(info, sources, names)))
    elif not (answer["exit_code"] == 0 and answer["signal"] is None):
        verdict.update(_ended_without_report(answer, out["timeout"], names, stdio=True))
    else:
        verdict["output"] = out["stdout"].decode("utf-8", "replace")
    return verdict


def _from_report(err: dict) -> dict:
    return {"error_type": err.get("type"), "error_class": err.get("error_class"),
            "error_message": err.get("message"), "traceback": err.get("traceback"),
            "error_line": err.get("line"), "failed_test": err.get("failed_test")}


def _cpu_timeout(out: dict, names: dict) -> dict:
    return _synthetic(names["timeout"], f"CPU time limit ({out['cpu_limit']:.3g} s, this problem's) reached")


def _synthetic(error_type: str, message: str) -> dict:
    return {"error_type": error_type, "error_message": message}


def _ended_without_report(answer: dict, timeout: float, names: dict, *, stdio: bool) -> dict:
    sig = answer["signal"]
    if sig is not None:
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and answer["cpu_s"] >= timeout):
            return _synthetic(names["timeout"], f"CPU time limit ({timeout:g} s) reached")
        if sig == signal.SIGXFSZ:
            return _synthetic(names["crash"], "killed by SIGXFSZ: wrote a file over the size limit")
        return _synthetic(names["crash"], f"killed by signal {_signal_name(sig)}")
    what = "the program" if stdio else "the answer"
    return _synthetic(names["early_exit"],
                      f"{what} exited with status {answer['exit_code']} before every test ran")


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _tail(data: bytes, keep: int) -> str:
    return data[-keep:].decode("utf-8", "replace") if keep else ""


def _read_into(fd: int, buf: bytearray, open_fds: set, poller, counted: bool) -> int:
    """Read what is available now; returns the byte count when ``counted`` (stdout), else 0.
    The report buffer stops growing at REPORT_CAP but the pipe is still drained."""
    n = 0
    while True:
        try:
            chunk = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            break
        if not chunk:
            open_fds.discard(fd)
            poller.unregister(fd)
            break
        if counted or len(buf) < REPORT_CAP:
            buf += chunk
        n += len(chunk)
    return n if counted else 0


def _stdin_fd(data: bytes | None) -> int:
    if not data:
        return os.open(os.devnull, os.O_RDONLY)
    fd = os.memfd_create("stdin", 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


_CODE_CACHE: dict = {}
CODE_CACHE_SIZE = 256


def _compiled(source: str | None, filename: str):
    """The test's (or the prompt's prelude's) code object, compiled here once per problem rather
    than in every judge. These come from the dataset, never from the answer. None when absent or
    when it does not compile (the judge then compiles the test itself and reports the error)."""
    if not source:
        return None
    key = (source, filename)
    code = _CODE_CACHE.get(key)
    if code is None:
        try:
            code = compile(source, filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
        if len(_CODE_CACHE) >= CODE_CACHE_SIZE:
            _CODE_CACHE.pop(next(iter(_CODE_CACHE)))
        _CODE_CACHE[key] = code
    return code


def _close_all_but(keep: set) -> None:
    """Close every inherited descriptor (the job pipes, other runs' leftovers) but ``keep``.

    ``os.closerange`` is one ``close_range`` system call on Linux >= 5.9, where listing
    /proc/self/fd cost a third of a millisecond per answer; no descriptor can be at or above the
    RLIMIT_NOFILE in force when it was opened, which bounds the fallback loop of older kernels."""
    start = 0
    for fd in sorted(keep) + [max(os.sysconf("SC_OPEN_MAX"), max(keep) + 1)]:
        if start < fd:  # an empty range is not a no-op: closerange(0, 0) closes every descriptor
            os.closerange(start, fd)
        start = fd + 1


def _kill_group(pid: int) -> None:
    for target in (-pid, pid):
        try:
            os.kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# --- after a run: no process of the answer survives, no file of it stays -----------------------------

def _sweep(settings: dict, keep: set) -> None:
    """In our own pid namespace (bubblewrap) everything but init, us, the zygote and the judge is the
    answer's; as root without one, a helper running as the answer's uid signals every process of
    that uid, including those that left the group; otherwise only the groups were killed."""
    uid, me = settings["uid"], os.getpid()
    deadline = time.monotonic() + 2.0
    if settings.get("pid_namespace") and me == 2:
        while True:
            _reap_once()
            others = [p for p in _pids() if p not in keep and p not in (1, me)]
            if not others or time.monotonic() > deadline:
                return
            for p in others:
                try:
                    os.kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.0005)
    if uid is None:
        _reap_once()  # processes that called setsid may live on: never block on them
        return
    limits.as_user(uid, lambda: os.kill(-1, signal.SIGKILL))  # every process of this uid but the helper
    while True:  # every orphan of the answer comes to us (subreaper): wait until they are gone
        _reap_once()
        left = _children() - keep
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.0005)


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def _children() -> set[int]:
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            return {int(p) for p in f.read().split()}
    except (OSError, ValueError):
        return set()


def _reap_once() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def remove_tree(path: str) -> None:
    """Remove ``path`` and everything in it, whatever an answer left there, without raising.

    No recursion (a 1,500-deep tree), no long paths (each directory is opened relative to its
    parent's descriptor: depth never makes a path), no trust in permissions (a directory is made
    ours to list before it is opened), never following a symlink: each subdirectory is renamed up
    next to ``path`` and emptied in turn, so at most two descriptors are open at a time. What
    cannot be removed (an immutable file) stays; the next answer gets a fresh directory anyway."""
    parent, name = os.path.split(path.rstrip("/"))
    try:
        top = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        todo = [name]
        while todo:
            current = todo.pop()
            try:
                os.chmod(current, 0o700, dir_fd=top)
            except OSError:
                pass
            try:
                fd = os.open(current, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
            except OSError:
                _unlink(current, top)
                continue
            try:
                with os.scandir(fd) as entries:
                    listing = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
            except OSError:
                listing = []
            for entry, is_dir in listing:
                if is_dir:
                    moved = f".gone-{os.urandom(8).hex()}"
                    try:
                        os.rename(entry, moved, src_dir_fd=fd, dst_dir_fd=top)
                        todo.append(moved)
                        continue
                    except OSError:
                        pass
                _unlink(entry, fd)
            os.close(fd)
            try:
                os.rmdir(current, dir_fd=top)
            except OSError:
                pass
    finally:
        os.close(top)


def _unlink(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def _make_scratch_base(settings: dict) -> str:
    base = settings["scratch_base"]
    os.makedirs(base, exist_ok=True)
    os.chmod(base, 0o711)  # the answer's uid may enter its own directory below, not list ours
    path = os.path.join(base, f"run-{os.getpid()}")
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o711)
    return path


def _new_scratch(settings: dict) -> str:
    """A fresh, empty directory for one answer, under a name no earlier answer could guess."""
    path = os.path.join(settings["scratch_dir"], f"a-{os.urandom(8).hex()}")
    os.mkdir(path, 0o700)
    if settings["uid"] is not None:
        os.chown(path, settings["uid"], settings["uid"])
    return path


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
