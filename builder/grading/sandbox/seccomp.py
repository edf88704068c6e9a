"""A seccomp filter on every answer process: the kernel state that outlives a process, refused.

Why a filter and not a sweep: some kernel objects belong to a *uid* or a *namespace*, not to the
process that made them, so they outlive the answer and reach the next answer of the same uid (or
every later one: a full quota). Kernel keyrings are the sharpest case: the per-uid user and
user-session keyrings and the persistent keyring survive every process of the uid (a stdio
answer that computed nothing used them to remember which guesses had passed, and one answer can
fill the uid's key quota for all later ones); ``request_key`` can even make the kernel run
``/sbin/request-key`` as root on the host. POSIX message queues live in the IPC namespace until
unlinked. No honest answer needs either, so the filter makes ``add_key``, ``request_key``,
``keyctl`` and the ``mq_*`` calls fail with ``EPERM`` before the answer's first line runs, for it
and every process it starts (a filter is inherited and cannot be removed). System calls of
another ABI than the interpreter's (``int 0x80`` i386 calls from an x86_64 process, x32 numbers)
fail with ``ENOSYS``, so the numbers below cannot be reached under other names.

The rest of the per-namespace and per-uid state is handled where it lives (docs/sandbox.md):
SysV IPC objects are removed after each answer (``ipc``), ``/dev/shm`` and ``/tmp`` outside the
scratch directory are not writable by the answer, abstract Unix sockets, inotify instances,
timers, eventfds and the like are file descriptors that close when the answer's last process is
killed. Where no filter can be installed (an architecture not listed here, a kernel without
seccomp) ``sweep_keys`` removes what an answer's uid left in its keyrings instead, after each
answer (``worker._leftovers``).

Standard library only (ctypes): this module runs inside the sandbox.
"""

from __future__ import annotations

import ctypes
import platform

from .limits import as_user

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
EPERM, ENOSYS = 1, 38
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_X32_BIT = 0x40000000

# machine -> (AUDIT_ARCH_*, {system call: number})
TABLES = {
    "x86_64": (0xC000003E, {"add_key": 248, "request_key": 249, "keyctl": 250, "mq_open": 240, "mq_unlink": 241,
                            "mq_timedsend": 242, "mq_timedreceive": 243, "mq_notify": 244, "mq_getsetattr": 245}),
    "aarch64": (0xC00000B7, {"add_key": 217, "request_key": 218, "keyctl": 219, "mq_open": 180, "mq_unlink": 181,
                             "mq_timedsend": 182, "mq_timedreceive": 183, "mq_notify": 184, "mq_getsetattr": 185}),
}
DENIED = ("add_key", "request_key", "keyctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
          "mq_notify", "mq_getsetattr")


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


def program(machine: str) -> list[tuple[int, int, int, int]] | None:
    """The filter for ``machine`` as (code, jt, jf, k) instructions; None where we have no table."""
    table = TABLES.get(machine)
    if table is None:
        return None
    arch, numbers = table
    head = [(_LD_W_ABS, 0, 0, 4),                    # A = seccomp_data.arch
            (_JEQ_K, 1, 0, arch),                     # our ABI: go on
            (_RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
            (_LD_W_ABS, 0, 0, 0)]                     # A = seccomp_data.nr
    if machine == "x86_64":
        head += [(_JGE_K, 0, 1, _X32_BIT), (_RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS)]
    checks = [numbers[name] for name in DENIED]
    body = []
    for i, nr in enumerate(checks):
        # jump to the EPERM return, which sits after the remaining checks and the ALLOW
        body.append((_JEQ_K, len(checks) - i, 0, nr))
    return head + body + [(_RET_K, 0, 0, SECCOMP_RET_ALLOW), (_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM)]


class Installer:
    """Built once in the worker, before the zygote forks: installing it in each answer process is
    then two ``prctl`` calls, with nothing to allocate or compile per answer."""

    def __init__(self):
        self.reason = None
        code = program(platform.machine())
        if code is None:
            self.reason = f"no seccomp table for {platform.machine()}"
            self._prctl = None
            return
        try:
            self._prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError) as e:
            self.reason, self._prctl = f"no prctl ({e})", None
            return
        self._filters = (_Filter * len(code))(*[_Filter(*ins) for ins in code])
        self._program = _Program(len(code), ctypes.cast(self._filters, ctypes.POINTER(_Filter)))

    def install(self) -> bool:
        """In the answer process, after its limits and uid are set: True when the filter is on."""
        if self._prctl is None:
            return False
        if self._prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        return self._prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._program), 0, 0) == 0


# --- the fallback: what an answer's uid left in its keyrings, removed --------------------------------

KEYCTL_GET_PERSISTENT, KEYCTL_CLEAR, KEYCTL_INVALIDATE = 22, 7, 21
KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = -4, -5


def keys_of(uid: int) -> int:
    """How many keys ``uid`` holds now (``/proc/key-users``; 0 when the kernel has no keyrings)."""
    try:
        with open("/proc/key-users") as f:
            for line in f:
                owner, _, rest = line.partition(":")
                if owner.strip() == str(uid):
                    return int(rest.split()[1].split("/")[0])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def clear_keyrings() -> None:
    """As the uid whose keys go (a helper process): empty its user, user-session and persistent
    keyrings and invalidate every key it can see."""
    numbers = TABLES.get(platform.machine(), (0, {}))[1]
    nr = numbers.get("keyctl")
    if nr is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    keyctl = libc.syscall
    keyctl.restype = ctypes.c_long
    for ring in (KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING):
        keyctl(ctypes.c_long(nr), ctypes.c_long(KEYCTL_CLEAR), ctypes.c_long(ring))
    persistent = keyctl(ctypes.c_long(nr), ctypes.c_long(KEYCTL_GET_PERSISTENT), ctypes.c_long(-1),
                        ctypes.c_long(0))
    if persistent > 0:
        keyctl(ctypes.c_long(nr), ctypes.c_long(KEYCTL_CLEAR), ctypes.c_long(persistent))
    try:
        with open("/proc/keys") as f:
            ids = [int(line.split()[0], 16) for line in f if line.strip()]
    except (OSError, ValueError):
        ids = []
    for key in ids:
        keyctl(ctypes.c_long(nr), ctypes.c_long(KEYCTL_INVALIDATE), ctypes.c_long(key))


def sweep_keys(uid: int | None) -> None:
    """After an answer (the fallback where no filter could be installed): if its uid holds keys,
    a helper running as that uid removes them."""
    if uid is None or keys_of(uid) == 0:
        return
    as_user(uid, clear_keyrings)


__all__ = ["DENIED", "Installer", "clear_keyrings", "keys_of", "program", "sweep_keys"]
