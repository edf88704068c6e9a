"""The two clocks of one run, neither of which moves with the machine's load.

* **CPU time** of everything the run started: the answer's process, every process it forks,
  waited for or not, and (for a function run) the judge. Where the worker runs in a cgroup with
  CPU accounting (``cgroup.py``: cgroup v1 ``cpuacct.usage``, v2 ``cpu.stat``), the counter of
  that cgroup, bound read-only into the sandbox, minus the worker's own CPU: a child the answer
  never waits for, a double fork or a fork at import counts like the answer's own work. Without
  one, ``/proc``: the answer's process and the children it has waited for, plus the judge; an
  unwaited child escapes the CPU limit (its own RLIMIT_CPU and the wall-clock backstop still
  bound it), which docs/sandbox.md says.
* **Own time**, the wall-clock backstop for answers that sleep or block: wall time minus the time
  the run's processes (the answer's main thread, the judge) spent *runnable but waiting for a
  CPU* (``/proc/<pid>/schedstat``, field 2). A busy machine stretches the wall clock of every
  run; it does not stretch own time, so a verdict never turns into a Timeout because other
  processes shared the core. A process that sleeps or blocks waits for nothing, so its own time
  is its wall time. Where the kernel has no schedstat, own time is the wall clock.

Why both are read here, by the worker, and not left to the kernel: RLIMIT_CPU is per process and
in whole seconds, an answer may lower it and catch SIGXCPU; the worker reading counters can be
neither slowed nor fooled by the answer. Standard library only: this runs inside the sandbox.
"""

from __future__ import annotations

import os
import resource
import time

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
MIN_INTERVAL = 0.005  # the shortest wait between two readings


def _stat_ticks(pid: int, children: bool) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None  # gone: it is being reaped, and its end is the run's end
    # fields from the state on (field 3): utime 14, stime 15, cutime 16, cstime 17
    return sum(int(v) for v in fields[11:15 if children else 13])


def run_delay_ns(pid: int) -> int | None:
    """Nanoseconds ``pid``'s main thread has spent runnable but not running, or None."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CgroupCpu:
    """The CPU counter of the worker's cgroup (every process in it), in seconds."""

    def __init__(self, path: str, fmt: str):
        self.path, self.fmt = path, fmt

    def read(self) -> float | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        try:
            if self.fmt == "ns":
                return int(data) / 1e9
            for line in data.split(b"\n"):  # cgroup v2 cpu.stat
                key, _, value = line.partition(b" ")
                if key == b"usage_usec":
                    return int(value) / 1e6
        except ValueError:
            return None
        return None


class RunMeter:
    """CPU time and own time of one run, from its start; ``next_check`` tells the worker when to
    read them again and sets ``exceeded`` to ``"cpu"`` or ``"wall"`` when a limit is reached."""

    def __init__(self, *, wall_limit: float, cpu_limit: float | None, answer_pid: int, judge_pid: int | None,
                 cgroup: CgroupCpu | None, cores: int):
        self.wall_limit, self.cpu_limit, self.cores = wall_limit, cpu_limit, max(1, cores)
        self.answer_pid, self.judge_pid, self.cgroup = answer_pid, judge_pid, cgroup
        self.started = time.monotonic()
        self.exceeded: str | None = None
        self._pids = [p for p in (answer_pid, judge_pid) if p is not None]
        self._delay0 = {p: run_delay_ns(p) for p in self._pids}
        self._delay_last = dict(self._delay0)
        self._judge0 = (_stat_ticks(judge_pid, False) or 0) if judge_pid is not None else 0
        self._group0 = cgroup.read() if cgroup is not None else None
        self._self0 = _self_cpu()
        if self._group0 is None:
            self.cgroup = None

    # --- the clocks -------------------------------------------------------------------------------

    def waited_s(self) -> float:
        """Seconds the run's processes have waited for a CPU since the run began."""
        total = 0
        for pid in self._pids:
            now = run_delay_ns(pid)
            if now is None:
                now = self._delay_last.get(pid)  # gone since: its last reading stands
            else:
                self._delay_last[pid] = now
            start = self._delay0.get(pid)
            if now is not None and start is not None:
                total += max(0, now - start)
        return total / 1e9

    def own_s(self) -> float:
        return max(0.0, time.monotonic() - self.started - self.waited_s())

    def cpu_s(self) -> float:
        """CPU seconds of the run so far (see the module docstring for what is counted)."""
        if self.cgroup is not None:
            now = self.cgroup.read()
            if now is not None:
                return max(0.0, (now - self._group0) - (_self_cpu() - self._self0))
        ticks = _stat_ticks(self.answer_pid, True) or 0
        if self.judge_pid is not None:
            ticks += max(0, (_stat_ticks(self.judge_pid, False) or 0) - self._judge0)
        return ticks / TICK

    def counts_every_process(self) -> bool:
        return self.cgroup is not None

    # --- when to look again --------------------------------------------------------------------------

    def first_wait(self) -> float:
        """Until the first reading: no limit can be reached sooner than this."""
        wait = self.wall_limit
        if self.cpu_limit is not None:
            wait = min(wait, self.cpu_limit / self.cores)
        return max(MIN_INTERVAL, wait)

    def next_check(self) -> float:
        """Seconds to wait before the next reading; 0 with ``exceeded`` set when a limit is
        reached. Own time advances at most as fast as the wall clock and CPU time at most
        ``cores`` times as fast, so waiting for what is left (over ``cores``) never overshoots:
        a run that ends sooner is never read at all, a loop is read a handful of times."""
        if self.cpu_limit is not None:
            cpu_left = self.cpu_limit - self.cpu_s()
            if cpu_left <= 0:
                self.exceeded = "cpu"
                return 0.0
        else:
            cpu_left = float("inf")
        own_left = self.wall_limit - self.own_s()
        if own_left <= 0:
            self.exceeded = "wall"
            return 0.0
        return max(MIN_INTERVAL, min(own_left, cpu_left / self.cores))


__all__ = ["CgroupCpu", "RunMeter", "run_delay_ns"]
