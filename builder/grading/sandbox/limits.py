"""The rlimits each answer runs under: the part of the isolation that works everywhere.

Applied in the forked child before any of the answer's code runs, so the answer can lower but
never raise them (hard limit = soft limit, except CPU where the gap lets SIGXCPU arrive first).
"""

from __future__ import annotations

import math
import os
import resource

MiB = 1024 * 1024


def child_limits(*, memory_bytes: int, timeout_s: float, nproc: int | None, nofile: int, fsize_bytes: int) -> dict:
    """name -> (soft, hard). ``nproc`` is None where it cannot be a per-answer limit (see worker)."""
    cpu = math.ceil(timeout_s) + 1  # the wall-clock kill normally comes first; this is the backstop
    limits = {
        "RLIMIT_AS": (memory_bytes, memory_bytes),
        "RLIMIT_CPU": (cpu, cpu + 1),
        "RLIMIT_FSIZE": (fsize_bytes, fsize_bytes),
        "RLIMIT_NOFILE": (nofile, nofile),
        "RLIMIT_CORE": (0, 0),
        # POSIX message queues outlive their answer in the worker's IPC namespace, and nothing
        # lists them for removal: none may be created at all
        "RLIMIT_MSGQUEUE": (0, 0),
    }
    if nproc is not None:
        limits["RLIMIT_NPROC"] = (nproc, nproc)
    return limits


def apply(limits: dict) -> None:
    for name, (soft, hard) in limits.items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    prefer_oom_kill()


def prefer_oom_kill() -> None:
    """At a worker's cgroup memory cap the kernel ends the process with the highest OOM score:
    make that the answer's (its children inherit the score), not the worker that reports on it."""
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
    except OSError:
        return
    try:
        os.write(fd, b"1000")
    except OSError:
        pass
    finally:
        os.close(fd)


def count_user_processes(uid: int) -> int:
    """How many processes ``uid`` runs now. RLIMIT_NPROC counts all of a user's processes, so
    without a uid of its own an answer's limit must sit on top of this count."""
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def as_user(uid: int, action) -> None:
    """Run ``action()`` in a short-lived child that has become ``uid``, and wait for it: how the
    worker (root, no CAP_SYS_ADMIN or CAP_IPC_OWNER) removes what only that uid may remove
    (its SysV objects, its keys) or signals what only it may signal."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the helper never returns
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            action()
        except BaseException:
            pass
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
