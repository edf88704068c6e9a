"""A long-lived worker: receives jobs on its stdin, forks one child per run, answers on stdout.

Started by ``pool`` (inside bubblewrap when available) with ``python -I -B -c`` and this
directory bound read-only as the package ``ap2o_sandbox``; standard library only. Forking from a
warm interpreter that already imported what answers use costs about a millisecond, where
starting a fresh interpreter per answer costs tens.

Per run the worker: creates the child's pipes (stdout, report) and stdin (a memfd), forks; the
child takes its own session, closes every other descriptor, applies the rlimits, drops to the
worker's uid (when root), enters the scratch directory and runs ``child.run``. The worker waits
on the pipes and a pidfd until the child ends or the deadline passes, then kills the child's
process group and, in its own pid namespace (bubblewrap), every other process there; as root
without one, every process of the answer's uid (an answer that called ``setsid`` leaves the
group). Then it empties the scratch directory and reaps what it killed. A stdio job is one case:
the expected output stays with the host, which compares.

Protocol (both ways): 4-byte big-endian length, then JSON (ASCII).
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import struct
import sys
import time

from . import child, ipc, limits

_HEADER = struct.Struct(">I")
READ_CHUNK = 1 << 16
REPORT_CAP = 1 << 20
PATH = "/usr/local/bin:/usr/bin:/bin"


# --- protocol --------------------------------------------------------------------------------------

def recv(fd: int):
    head = _read_exact(fd, _HEADER.size)
    if head is None:
        return None
    body = _read_exact(fd, _HEADER.unpack(head)[0])
    return None if body is None else json.loads(body)


def send(fd: int, message) -> None:
    body = json.dumps(message, ensure_ascii=True).encode("ascii")
    data = _HEADER.pack(len(body)) + body
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd: int, n: int):
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- the worker loop -------------------------------------------------------------------------------

def main() -> None:
    # fd 0/1 become the protocol; the worker's own prints can no longer corrupt it
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    settings = recv(proto_in)
    if settings is None:
        return
    _become_subreaper()
    child.prepare(settings["preload"])
    scratch = _make_scratch(settings)
    nproc = settings["nproc"]
    if settings["uid"] is None and nproc is not None:
        nproc += limits.count_user_processes(os.getuid())  # RLIMIT_NPROC counts all of our processes
    settings["nproc_effective"] = nproc
    send(proto_out, {"ready": True, "pid": os.getpid(), "uid": settings["uid"], "scratch": scratch})
    while True:
        job = recv(proto_in)
        if job is None:
            break
        try:
            result = run_job(job, settings, scratch)
        except Exception as e:  # a bug of ours must not look like the answer's error
            result = {"internal_error": f"{type(e).__name__}: {e}"}
        send(proto_out, result)


def run_job(job: dict, settings: dict, scratch: str) -> dict:
    """A function problem's whole test, or one case of a stdio problem. A stdio job carries the
    case's stdin only: the expected output never enters the sandbox (the host compares), so an
    answer that reads its worker's memory cannot find it."""
    names = settings["names"]
    timeout = float(job.get("timeout") or settings["timeout"])
    if job["kind"] != "stdio":
        return _function_verdict(run_once(job, None, timeout, settings, scratch), names)
    stdin = job["stdin"].encode("utf-8", "surrogateescape")
    return _stdio_verdict(run_once(job, stdin, timeout, settings, scratch), names)


def _function_verdict(out: dict, names: dict) -> dict:
    verdict = {"runtime_s": round(out["runtime_s"], 6), "cpu_s": out["cpu_s"],
               "stdout": _tail(out["stdout"], out["stdout_keep"])}
    report = out["report"]
    if out["timed_out"]:
        verdict.update(_synthetic(names["timeout"], f"no result within {out['timeout']:g} s"))
    elif report is not None and "ok" in report:
        verdict["error_type"] = None
    elif report is not None and "error" in report:
        verdict.update(_from_report(report["error"]))
    else:
        verdict.update(_ended_without_report(out, names, stdio=False))
    return verdict


def _stdio_verdict(out: dict, names: dict) -> dict:
    """How one stdio run ended; ``error_type`` None means it ended normally and ``output`` is
    what it printed (up to the cap), for the host to compare."""
    verdict = {"runtime_s": round(out["runtime_s"], 6), "cpu_s": out["cpu_s"],
               "stdout": _tail(out["stdout"], out["stdout_keep"]), "error_type": None}
    report = out["report"]
    if out["timed_out"]:
        verdict.update(_synthetic(names["timeout"], f"no result within {out['timeout']:g} s"))
    elif out["output_limit"]:
        verdict.update(_synthetic(names["output_limit"], f"printed more than {out['output_cap']} bytes"))
    elif report is not None and "error" in report:
        verdict.update(_from_report(report["error"]))
    elif report is None and not (out["exit_code"] == 0 and out["signal"] is None):
        verdict.update(_ended_without_report(out, names, stdio=True))
    else:
        verdict["output"] = out["stdout"].decode("utf-8", "replace")
    return verdict


def _from_report(err: dict) -> dict:
    return {"error_type": err.get("type"), "error_message": err.get("message"),
            "traceback": err.get("traceback"), "error_line": err.get("line"),
            "failed_test": err.get("failed_test")}


def _synthetic(error_type: str, message: str) -> dict:
    return {"error_type": error_type, "error_message": message}


def _ended_without_report(out: dict, names: dict, *, stdio: bool) -> dict:
    sig = out["signal"]
    if sig is not None:
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and out["cpu_s"] >= out["timeout"]):
            return _synthetic(names["timeout"], f"CPU time limit ({out['timeout']:g} s) reached")
        if sig == signal.SIGXFSZ:
            return _synthetic(names["crash"], "killed by SIGXFSZ: wrote a file over the size limit")
        return _synthetic(names["crash"], f"killed by signal {_signal_name(sig)}")
    what = "the program" if stdio else "the answer"
    return _synthetic(names["early_exit"],
                      f"{what} exited with status {out['exit_code']} before every test ran")


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _tail(data: bytes, keep: int) -> str:
    return data[-keep:].decode("utf-8", "replace") if keep else ""


# --- one run ---------------------------------------------------------------------------------------

def run_once(job: dict, stdin: bytes | None, timeout: float, settings: dict, scratch: str) -> dict:
    kind = job["kind"]
    stdio = kind == "stdio"
    cap = settings["output_limit"]
    keep = settings["stdout_keep"]
    rep_r, rep_w = os.pipe()
    out_r, out_w = os.pipe()
    stdin_fd = _stdin_fd(stdin)
    test_code = _compiled_test(job.get("test")) if not stdio else None
    nonce = os.urandom(16)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        _child(job, settings, scratch, stdin_fd, out_w, rep_w, nonce, timeout, test_code)
    for fd in (rep_w, out_w, stdin_fd):
        os.close(fd)
    os.set_blocking(rep_r, False)
    os.set_blocking(out_r, False)
    pidfd = _pidfd(pid)
    reaped = None  # (status, usage) when we had to poll with waitpid instead of a pidfd
    out, report = bytearray(), bytearray()
    total_out = 0
    timed_out = output_limit = False
    poller = select.poll()
    for fd in (out_r, rep_r) if pidfd is None else (out_r, rep_r, pidfd):
        poller.register(fd, select.POLLIN)
    open_fds = {out_r, rep_r}
    deadline = started + timeout
    exited = False
    while not exited:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        for fd, _ in poller.poll(remaining * 1000 if pidfd is not None else min(remaining * 1000, 2)):
            if fd == pidfd:
                exited = True
            elif fd in open_fds:
                total_out += _read_into(fd, out if fd == out_r else report, open_fds, poller, fd == out_r)
        if pidfd is None:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                reaped, exited = (status, usage), True
        if not stdio and len(out) > 2 * keep:
            del out[: len(out) - keep]  # a function answer's prints: only a tail is kept
        if stdio and total_out > cap:
            output_limit = True
            break
    if exited:  # what the child wrote just before it ended is still in the pipes
        for fd in sorted(open_fds):
            total_out += _read_into(fd, out if fd == out_r else report, open_fds, poller, fd == out_r)
        output_limit = stdio and total_out > cap
    _kill_group(pid)
    status, usage = reaped or os.wait4(pid, 0)[1:]
    runtime = time.monotonic() - started
    for fd in (out_r, rep_r) if pidfd is None else (out_r, rep_r, pidfd):
        os.close(fd)
    _sweep(settings, scratch)
    ipc.sweep(settings)  # issue 10 item 4: SysV objects must not reach the next answer
    payload = _parse_report(bytes(report[:REPORT_CAP]), nonce)
    return {
        "report": payload, "timed_out": timed_out, "output_limit": output_limit,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "stdout": bytes(out[:cap]) if stdio else bytes(out), "stdout_keep": keep, "output_cap": cap,
        "runtime_s": runtime, "cpu_s": usage.ru_utime + usage.ru_stime, "timeout": timeout,
    }


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux >= 5.3); None elsewhere, and
    the loop then polls ``wait4`` every 2 ms."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


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


def _parse_report(data: bytes, nonce: bytes):
    import marshal

    if not data.startswith(nonce):
        return None
    try:
        payload = marshal.loads(data[len(nonce):])
    except (EOFError, ValueError, TypeError):
        return None
    return payload if isinstance(payload, dict) else None


def _stdin_fd(data: bytes | None) -> int:
    if not data:
        return os.open(os.devnull, os.O_RDONLY)
    fd = os.memfd_create("stdin", 0)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


_TEST_CACHE: dict = {}
TEST_CACHE_SIZE = 256


def _compiled_test(test: str | None):
    """The test's code object, compiled here once per problem rather than in every child (a
    problem has many answers; compiling in a forked child also copies the compiler's pages).
    Tests come from the dataset, not from the answer. None when it does not compile: the child
    then compiles it and reports the error."""
    if not test:
        return None
    code = _TEST_CACHE.get(test)
    if code is None:
        try:
            code = compile(test, child.TEST_FILE, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
        if len(_TEST_CACHE) >= TEST_CACHE_SIZE:
            _TEST_CACHE.pop(next(iter(_TEST_CACHE)))
        _TEST_CACHE[test] = code
    return code


def _child(job, settings, scratch, stdin_fd, out_w, rep_w, nonce, timeout, test_code) -> None:  # pragma: no cover
    try:
        os.setsid()
        os.dup2(stdin_fd, 0)
        os.dup2(out_w, 1)
        if job["kind"] == "stdio":
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # stderr is not part of a stdio answer
        else:
            os.dup2(out_w, 2)
        # the report pipe moves to a random descriptor; everything else is closed
        report_fd = random.randrange(64, settings["nofile"] - 8)
        os.dup2(rep_w, report_fd, inheritable=False)
        _close_all_but({0, 1, 2, report_fd})
        limits.apply(limits.child_limits(
            memory_bytes=settings["memory_bytes"], timeout_s=timeout, nproc=settings["nproc_effective"],
            nofile=settings["nofile"], fsize_bytes=settings["fsize"]))
        uid = settings["uid"]
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        os.chdir(scratch)
        os.environ.clear()
        os.environ.update({"HOME": scratch, "TMPDIR": scratch, "PATH": PATH, "LANG": "C.UTF-8",
                           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
        report = child.make_reporter(report_fd, nonce)
        del nonce
        child.run(job["kind"], job["code"], job.get("test"), job.get("entry_point"), report, settings["names"],
                  test_code)
    except BaseException:
        os._exit(70)
    os._exit(71)


def _close_all_but(keep: set) -> None:
    """Close every inherited descriptor (the job pipes, other runs' leftovers) but ``keep``.
    Listing /proc/self/fd beats closing up to a possibly huge RLIMIT_NOFILE one by one."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:  # the listing's own descriptor, already gone
                pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _sweep(settings: dict, scratch: str) -> None:
    """After a run: no process of the answer may survive, and its files go. In our own pid
    namespace (bubblewrap) everything but us and init is the answer's; as root without one, a
    helper running as the answer's uid can signal every process of that uid, including those
    that left the group, and delete what that uid wrote; otherwise only the group was killed."""
    uid = settings["uid"]
    if settings.get("pid_namespace") and os.getpid() == 2:
        try:
            os.kill(-1, signal.SIGKILL)  # spares init (pid 1) and ourselves
        except ProcessLookupError:
            pass
        _empty_dir(scratch)
    elif uid is None:
        _empty_dir(scratch)
        _reap(wait=False)  # processes that called setsid may live on: never block on them
        return
    else:
        pid = os.fork()
        if pid == 0:  # pragma: no cover
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)  # every process of this uid but this one
            except OSError:
                pass
            try:
                _empty_dir(scratch)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    _reap(wait=True)


def _empty_dir(path: str) -> None:
    import shutil

    try:
        entries = os.listdir(path)
    except OSError:
        return
    for entry in entries:
        full = os.path.join(path, entry)
        try:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full, ignore_errors=True)
            else:
                os.unlink(full)
        except OSError:
            pass


def _reap(*, wait: bool) -> None:
    """Collect orphans re-parented to us (we are a subreaper) so that no zombie outlives its run.
    With ``wait`` every descendant was just sent SIGKILL: wait (briefly) until they are all gone."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if not wait or time.monotonic() > deadline:
                return
            time.sleep(0.001)


def _become_subreaper() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _make_scratch(settings: dict) -> str:
    base = settings["scratch_base"]
    os.makedirs(base, exist_ok=True)
    os.chmod(base, 0o711)  # the answer's uid may enter its own directory below, not list ours
    path = os.path.join(base, f"run-{os.getpid()}")
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o700)
    if settings["uid"] is not None:
        os.chown(path, settings["uid"], settings["uid"])
    return path


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
