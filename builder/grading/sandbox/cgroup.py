"""A memory and process cap per worker, hence per answer, from the kernel's cgroups.

rlimits are per process: RLIMIT_AS caps each process of an answer, so an answer that forks ten
children may use ten times ``--memory-mb``. A cgroup counts all of them together (and the pages
they write to the worker's private /tmp). Each worker, from bubblewrap down to the answer's last
child, runs in a cgroup of its own whose memory cap is ``memory_bytes`` plus the worker's own
share (``WORKER_HEADROOM``); a worker runs one answer at a time, so this is the answer's cap.
Past it the kernel's OOM killer ends the largest process in that cgroup (the answer sets its
``oom_score_adj`` to 1000 so that it goes first), and the host labels the answer
``MemoryError`` from the cgroup's OOM-kill counter.

The same groups count the CPU time of everything in them (cgroup v1's ``cpuacct`` hierarchy,
where it is mounted; v2's ``cpu.stat``, which every v2 group has): the worker reads that counter
(``meter.py``) so that a run's CPU-time limit counts every process the answer starts, waited for
or not. Where the ``cpuacct`` hierarchy is missing, ``WorkerGroup.cpu_usage`` is None and the
limit counts the answer's process, its waited-for children and the judge (docs/sandbox.md).

cgroup v2 (unified hierarchy with ``memory`` and ``pids`` delegated to our cgroup) or v1 (the
``memory`` and ``pids`` hierarchies, as on hybrid systems); the groups are created below our own
cgroup, so that an outer limit (a container's) still holds. ``open_limiter`` returns None, with
the reason, where neither is writable (not root, a read-only /sys/fs/cgroup, v2 without the
controllers delegated); the sandbox then falls back to rlimits alone (see docs/sandbox.md).
"""

from __future__ import annotations

import os
import shlex

WORKER_HEADROOM = 96 * 1024 * 1024  # bwrap, its init and the warm worker: 14-17 MiB measured, plus page cache
PIDS_HEADROOM = 8  # bwrap, its init, the worker and its cleanup helper
_NAME_PREFIX = "ap2o-"


def _mounts() -> dict[str, str]:
    """``'cgroup2'`` or a v1 controller name -> its mount point."""
    found: dict[str, str] = {}
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] == "cgroup2":
            found.setdefault("cgroup2", fields[4])
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                if option in ("memory", "pids", "cpuacct"):
                    found.setdefault(option, fields[4])
    return found


def _own_paths() -> dict[str, str]:
    """``''`` (v2) or a v1 controller name -> our cgroup's path in that hierarchy."""
    paths: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for name in controllers.split(",") if controllers else [""]:
                    paths[name] = path
    except (OSError, ValueError):
        pass
    return paths


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


class Limiter:
    """The cgroups of one pool: ``<our cgroup>/ap2o-<pid>-<n>/w<i>`` in each hierarchy used."""

    def __init__(self, version: int, bases: dict[str, str], tag: str):
        self.version, self._tag = version, tag
        # controller -> the pool's directory (v2: one directory for both controllers)
        self._dirs = {c: os.path.join(base, tag) for c, base in bases.items()}
        try:
            for d in dict.fromkeys(self._dirs.values()):
                os.mkdir(d)
            if version == 2:
                _write(os.path.join(self._dirs["memory"], "cgroup.subtree_control"), "+memory +pids")
        except OSError:
            self.close()
            raise

    def make(self, index: int, memory_bytes: int, nproc: int) -> WorkerGroup:
        return WorkerGroup(self, index, memory_bytes + WORKER_HEADROOM, nproc + PIDS_HEADROOM)

    def close(self) -> None:
        for d in dict.fromkeys(self._dirs.values()):
            _remove_tree(d)


class WorkerGroup:
    """One worker's cgroup(s): a command prefix that enters them, the OOM-kill counter."""

    def __init__(self, limiter: Limiter, index: int, memory_cap: int, pids_cap: int):
        self.memory_cap = memory_cap
        self.version = limiter.version
        dirs = {c: os.path.join(d, f"w{index}") for c, d in limiter._dirs.items()}
        for d in dict.fromkeys(dirs.values()):
            os.makedirs(d, exist_ok=True)
        mem, pids = dirs["memory"], dirs["pids"]
        if self.version == 2:
            _write(os.path.join(mem, "memory.max"), str(memory_cap))
            _try_write(os.path.join(mem, "memory.swap.max"), "0")
            self._events = os.path.join(mem, "memory.events")
        else:
            _write(os.path.join(mem, "memory.limit_in_bytes"), str(memory_cap))
            _try_write(os.path.join(mem, "memory.memsw.limit_in_bytes"), str(memory_cap))  # no swapping past it
            self._events = os.path.join(mem, "memory.oom_control")
        _write(os.path.join(pids, "pids.max"), str(pids_cap))
        # (path, format) of the CPU counter of every process in the group; None: not counted here
        self.cpu_usage: tuple[str, str] | None = None
        if self.version == 2:
            self.cpu_usage = (os.path.join(mem, "cpu.stat"), "cpu.stat")
        elif "cpuacct" in dirs:
            self.cpu_usage = (os.path.join(dirs["cpuacct"], "cpuacct.usage"), "ns")
        if self.cpu_usage is not None and not os.path.isfile(self.cpu_usage[0]):
            self.cpu_usage = None
        self._peak = os.path.join(mem, "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")
        self.procs_files = list(dict.fromkeys(os.path.join(d, "cgroup.procs") for d in dirs.values()))

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` started from a shell that first moves itself into the cgroups, so that not even
        bwrap's first fork escapes them (moving a pid after Popen would race it)."""
        enter = " && ".join(f"echo $$ > {shlex.quote(p)}" for p in self.procs_files)
        return ["/bin/sh", "-c", f'{enter} && exec "$@"', "ap2o-cgroup-enter", *argv]

    def peak_bytes(self) -> int | None:
        """The most memory this cgroup has held at once (None where the kernel does not say)."""
        try:
            return int(_read(self._peak))
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int:
        """How many processes the OOM killer has ended in this cgroup so far."""
        try:
            for line in _read(self._events).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0


def _try_write(path: str, value: str) -> None:
    try:
        _write(path, value)
    except OSError:  # memory.swap.max / memsw absent where swap accounting is off: nothing to cap
        pass


def _remove_tree(path: str) -> None:
    """rmdir a cgroup and its children, deepest first (cgroup directories refuse ``rm -r``)."""
    for root, dirs, _ in os.walk(path, topdown=False):
        for d in dirs:
            try:
                os.rmdir(os.path.join(root, d))
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _remove_stale(base: str) -> None:
    """Groups left by graders that were killed before they could remove theirs (empty by then:
    bubblewrap's --die-with-parent ended their workers)."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if not name.startswith(_NAME_PREFIX):
            continue
        pid = name[len(_NAME_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            _remove_tree(os.path.join(base, name))


_counter = 0


def open_limiter() -> tuple[Limiter | None, str | None]:
    """(limiter, None) where we can create cgroups with a memory and a pids cap here, else
    (None, why not)."""
    global _counter
    if not os.path.isdir("/sys/fs/cgroup"):
        return None, "no /sys/fs/cgroup"
    mounts, own = _mounts(), _own_paths()
    _counter += 1
    tag = f"{_NAME_PREFIX}{os.getpid()}-{_counter}"
    errors = []
    if "cgroup2" in mounts and "" in own:
        base = mounts["cgroup2"] + own[""].rstrip("/")
        try:
            controllers = _read(os.path.join(base, "cgroup.controllers")).split()
            if not {"memory", "pids"} <= set(controllers):
                raise OSError(f"cgroup v2 at {base} lacks the memory/pids controllers ({' '.join(controllers)})")
            if not {"memory", "pids"} <= set(_read(os.path.join(base, "cgroup.subtree_control")).split()):
                # refused (EBUSY) when our cgroup holds processes and is not the root: not delegated to us
                _write(os.path.join(base, "cgroup.subtree_control"), "+memory +pids")
            _remove_stale(base)
            return Limiter(2, {"memory": base, "pids": base}, tag), None
        except OSError as e:
            errors.append(f"cgroup v2: {e.strerror or e}")
    if "memory" in mounts and "pids" in mounts and "memory" in own and "pids" in own:
        bases = {c: mounts[c] + own[c].rstrip("/") for c in ("memory", "pids")}
        cpuacct = own.get("cpuacct")  # optional: without it the CPU limit counts less (docs/sandbox.md)
        if "cpuacct" in mounts and cpuacct is not None and os.access(mounts["cpuacct"] + cpuacct, os.W_OK):
            bases["cpuacct"] = mounts["cpuacct"] + cpuacct.rstrip("/")
        try:
            for base in bases.values():
                _remove_stale(base)
            return Limiter(1, bases, tag), None
        except OSError as e:
            errors.append(f"cgroup v1: {e.strerror or e}")
    return None, "; ".join(errors) or "no cgroup memory and pids controllers mounted"


__all__ = ["Limiter", "WorkerGroup", "open_limiter"]
