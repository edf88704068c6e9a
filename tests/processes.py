"""The machine's processes as ``/proc`` shows them, for the tests that check an answer's
processes are gone (the sandbox's and ``ap2o-build grade``'s interrupt tests)."""

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
