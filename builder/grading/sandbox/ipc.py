"""Remove the SysV IPC objects (shared memory, semaphores, message queues) an answer left.

They outlive the processes that made them, so without this one answer's shared memory segment
would be there for the next answer on the same worker to attach: a channel between answers, and
memory no cgroup or rlimit frees. Each bubblewrap worker has an IPC namespace of its own, so
every object listed there is an answer's. Runs inside the worker (standard library only), after
the answer's processes are dead. Only the owner or creator may remove an object, and the worker
keeps no CAP_SYS_ADMIN, so removal happens in a short-lived helper running as the answer's uid.
Without bubblewrap, as root, only objects the answer's uid created are removed; as a plain user
without bubblewrap nothing is (they could be our own), see docs/sandbox.md.
"""

from __future__ import annotations

import ctypes
import os

from .limits import as_user

IPC_RMID = 0
TABLES = (("shm", "shmid"), ("sem", "semid"), ("msg", "msqid"))


def leftovers(uid: int | None = None) -> list[tuple[str, int]]:
    """(table, id) of every object in our IPC namespace (created by ``uid`` when given)."""
    found = []
    for table, id_column in TABLES:
        try:
            with open(f"/proc/sysvipc/{table}") as f:
                header, *rows = f.read().splitlines()
        except (OSError, ValueError):
            continue
        names = header.split()
        try:
            at_id, at_cuid = names.index(id_column), names.index("cuid")
        except ValueError:
            continue
        for row in rows:
            fields = row.split()
            try:
                if uid is None or int(fields[at_cuid]) == uid:
                    found.append((table, int(fields[at_id])))
            except (IndexError, ValueError):
                continue
    return found


def remove(objects: list[tuple[str, int]]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for table, ident in objects:
        if table == "shm":
            libc.shmctl(ident, IPC_RMID, None)
        elif table == "sem":
            libc.semctl(ident, 0, IPC_RMID)
        else:
            libc.msgctl(ident, IPC_RMID, None)


def sweep(settings: dict) -> None:
    """After each answer (the hook in ``worker._leftovers``)."""
    uid, private = settings["uid"], bool(settings.get("pid_namespace"))
    if not private and uid is None:
        return  # our own IPC namespace and uid: nothing tells the answer's objects from the host's
    objects = leftovers(None if private else uid)
    if not objects:
        return
    if uid is None or uid == os.getuid():
        remove(objects)
        return
    as_user(uid, lambda: remove(objects))
