"""The machine's processes as ``/proc`` shows them, for the tests that check an answer's
processes are gone (the sandbox's and ``ap2o-build grade``'s interrupt tests) and for the Ray
tests, which find and kill a grading actor's processes."""

from __future__ import annotations

import os


def processes_named(marker: str) -> list[int]:
    """Processes with a thread named ``marker`` (function answers run on a thread of their own)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                for task in os.listdir(f"/proc/{entry}/task"):
                    with open(f"/proc/{entry}/task/{task}/comm") as f:
                        if f.read().strip() == marker:
                            found.append(int(entry))
                            break
            except OSError:
                pass
    return found


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, name) of this machine's live (not zombie) processes."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                out[int(entry)] = (int(fields[1]), stat[stat.index("(") + 1:stat.rindex(")")])
    return out


def descendants(root: int | None = None, procs: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """Live processes below ``root`` (this process by default), ``root`` itself left out;
    ``procs``: a ``processes()`` snapshot to read instead of ``/proc``. Unlike the sandbox's
    ``pool.descendants``, zombies are left out: a test counts what still runs."""
    root = os.getpid() if root is None else root
    procs = processes() if procs is None else procs
    out = []
    for pid in procs:
        p = pid
        while p in procs and p not in (root, 0, 1):
            p = procs[p][0]
        if p == root and pid != root:
            out.append(pid)
    return out
