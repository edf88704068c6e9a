"""Isolation per answer (issue 10, item 4): what one answer leaves or takes, the next answer and
the machine never see. Real workers, real bubblewrap and cgroups where the machine has them
(skipped with the reason where it does not; docs/sandbox.md says what is then not covered)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
from processes import processes_named
from sandboxed import grade_one

from builder.grading.grader import Grader, GraderConfig
from builder.grading.sandbox import bwrap, pool

REPO = pathlib.Path(__file__).resolve().parents[1]
HAS_BWRAP = bwrap.available(pool.PACKAGE_DIR) is None
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap does not work here: no namespaces")

# (getter call, creating call) per SysV kind; IPC_CREAT | 0o600
SYSV = {
    "shm": ("libc.shmget(KEY, 0, 0)", "libc.shmget(KEY, 4096, 0o1000 | 0o600)"),
    "sem": ("libc.semget(KEY, 0, 0)", "libc.semget(KEY, 1, 0o1000 | 0o600)"),
    "msg": ("libc.msgget(KEY, 0)", "libc.msgget(KEY, 0o1000 | 0o600)"),
}


GRADER_SETTINGS = {"timeout_s": 5.0, "workers": 1}  # conftest's `grader`; one worker: the answers follow each other on it


@pytest.mark.parametrize("kind", sorted(SYSV))
def test_a_sysv_object_of_one_answer_is_gone_for_the_next(grader, kind):
    get, create = SYSV[kind]
    prelude = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nKEY = 0x5eed\n"
    made = grade_one(grader, prelude + f"def f():\n    return {create}\n",
                     "def check(c):\n    assert c() >= 0\n")
    assert made.passed, made  # the first answer could create it...
    seen = grade_one(grader, prelude + f"def f():\n    return {get}\n",
                     "def check(c):\n    assert c() == -1\n")
    assert seen.passed, seen  # ...and the next one on the same worker finds no such key


def test_posix_message_queues_cannot_be_made(grader):
    # nothing lists them for removal after an answer, so none may exist (RLIMIT_MSGQUEUE = 0)
    code = """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    def f():
        return libc.mq_open(b"/ap2o-test", os.O_CREAT | os.O_RDWR, 0o600, None)
    """
    assert grade_one(grader, code, "def check(c):\n    assert c() == -1\n").passed


FORK_TEN = """
import os, time
def f():
    pids = []
    for _ in range(10):
        pid = os.fork()
        if pid == 0:
            block = b"\\x01" * (100 * 1024 * 1024)  # written, so resident: 100 MB each
            time.sleep(2)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    return 1
"""


def test_forked_children_together_are_held_to_memory_mb():
    with Grader(GraderConfig(timeout_s=10, memory_mb=400, workers=1)) as g:
        cap = g._pool.memory_cap_bytes
        if cap is None:
            pytest.skip(f"no cgroups here ({g._pool.cgroup_unavailable}): only RLIMIT_AS per process applies")
        v = grade_one(g, FORK_TEN, "def check(c):\n    assert c() == 1\n")
        assert v.error_type == "MemoryError", v  # the kernel ended some of the 1 GB; the answer is labelled
        assert g._pool._workers[0].group.peak_bytes() <= cap  # the machine never gave this worker more


def test_the_worker_still_grades_after_an_answer_hits_the_cgroup_cap():
    with Grader(GraderConfig(timeout_s=10, memory_mb=400, workers=1)) as g:
        if g._pool.memory_cap_bytes is None:
            pytest.skip(f"no cgroups here ({g._pool.cgroup_unavailable})")
        grade_one(g, FORK_TEN, "def check(c):\n    assert c() == 1\n")
        assert grade_one(g, "def f():\n    return 1\n", "def check(c):\n    assert c() == 1\n").passed


@needs_bwrap
@pytest.mark.skipif(not bwrap.supports_size(), reason="bubblewrap < 0.8 has no --size: /tmp is not capped")
def test_private_tmp_is_capped():
    code = """
    def f():
        total = 0
        try:
            for i in range(8):  # 128 MiB in 16 MiB files, each under RLIMIT_FSIZE
                with open(f"part{i}", "wb") as out:
                    for _ in range(16):
                        out.write(b"\\0" * (1 << 20))
                        total += 1 << 20
        except OSError as e:
            return (total, e.errno)
        return (total, 0)
    """
    test = "import errno\ndef check(c):\n    total, err = c()\n    assert err == errno.ENOSPC, (total, err)\n" \
           "    assert total <= 32 * 2 ** 20, total\n"
    with Grader(GraderConfig(timeout_s=10, workers=1, tmp_mb=32, max_file_mb=16)) as g:
        v = grade_one(g, code, test)
        assert v.passed, v
        # and the space comes back: the next answer can write again
        again = grade_one(g, "def f():\n    open('x', 'wb').write(bytes(8 << 20))\n    return 1\n",
                          "def check(c):\n    assert c() == 1\n")
        assert again.passed, again


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def marked_answer(marker: str) -> str:
    """An answer that names itself ``marker`` (comm), leaves a daemon in a session of its own,
    and loops forever."""
    return textwrap.dedent(f"""
    import ctypes, os, time
    def f():
        libc = ctypes.CDLL(None)
        libc.prctl(15, {marker.encode()!r}, 0, 0, 0)  # PR_SET_NAME
        if os.fork() == 0:
            os.setsid()
            while True:
                time.sleep(1)
        while True:
            pass
    """)


@needs_bwrap
def test_no_answer_outlives_a_grader_killed_with_sigkill():
    marker = "ap2o" + uuid.uuid4().hex[:8]
    script = textwrap.dedent(f"""
        from builder.grading.grader import Grader, GraderConfig
        with Grader(GraderConfig(timeout_s=600, workers=1)) as g:
            g.grade([{{"completion": {marked_answer(marker)!r}, "test": "def check(c):\\n    c()\\n",
                       "entry_point": "f"}}])
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: len(processes_named(marker)) >= 2, 60), "the answer never started"
    finally:
        proc.kill()  # SIGKILL: no cleanup code of ours runs
        proc.wait()
    assert _wait_for(lambda: not processes_named(marker), 3), processes_named(marker)


# --- kernel state of a uid or a namespace (issue 20, item 3) -------------------------------------------

try:
    import platform

    from builder.grading.sandbox import seccomp as _seccomp

    HAS_FILTER = _seccomp.program(platform.machine()) is not None
except ImportError:  # pragma: no cover
    HAS_FILTER = False
needs_filter = pytest.mark.skipif(not HAS_FILTER, reason="no seccomp table for this architecture: keys are swept instead")

ADD_KEY = """
import ctypes, platform
libc = ctypes.CDLL(None, use_errno=True)
NR = {"x86_64": (248, 250), "aarch64": (217, 219)}.get(platform.machine(), (None, None))
def add_key(name):
    return libc.syscall(NR[0], b"user", name, b"remember-me", 11, -4)  # @u: the uid's user keyring
def keyctl_read_user_ring():
    return libc.syscall(NR[1], 11, -4, None, 0)  # KEYCTL_READ of @u: its size, or -1
"""


@needs_filter
def test_an_answer_cannot_put_a_key_in_any_keyring(grader):
    code = ADD_KEY + "def f():\n    return [add_key(b'k%d' % i) for i in range(5)] + [ctypes.get_errno()]\n"
    v = grade_one(grader, code, "def check(c):\n    assert c() == [-1] * 5 + [1], c()\n")  # EPERM, every time
    assert v.passed, v


def test_no_key_of_one_answer_reaches_the_next(grader):
    grade_one(grader, ADD_KEY + "def f():\n    add_key(b'seen')\n    return 1\n", "def check(c):\n    c()\n")
    code = ADD_KEY + "def f():\n    return (open('/proc/keys').read(), keyctl_read_user_ring())\n"
    v = grade_one(grader, code,
                  "def check(c):\n    keys, size = c()\n    assert 'seen' not in keys and size <= 0, (keys, size)\n")
    assert v.passed, v


@pytest.mark.skipif(os.geteuid() != 0, reason="a key sweep needs another uid to sweep")
def test_the_fallback_sweep_removes_what_a_uid_left_in_its_keyrings():
    # where no seccomp filter can be installed the worker removes the uid's keys after each answer
    from builder.grading.sandbox import seccomp

    uid = pool.Worker._uid(900, pid=os.getpid())
    pid = os.fork()
    if pid == 0:  # pragma: no cover - a child that becomes the answer's uid and leaves a key
        try:
            os.setgid(uid)
            os.setuid(uid)
            import ctypes
            import platform

            nr = {"x86_64": 248, "aarch64": 217}[platform.machine()]
            ctypes.CDLL(None, use_errno=True).syscall(nr, b"user", b"left", b"x", 1, -4)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    if seccomp.keys_of(uid) == 0:
        pytest.skip("this kernel keeps no keys for the uid (no keyrings)")
    seccomp.sweep_keys(uid)
    assert _wait_for(lambda: seccomp.keys_of(uid) == 0, 5)


@needs_filter
def test_posix_queues_are_refused_by_the_filter_too(grader):
    code = """
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    def f():
        return (libc.mq_open(b"/ap2o-q", os.O_CREAT | os.O_RDWR, 0o600, None), ctypes.get_errno())
    """
    assert grade_one(grader, code, "def check(c):\n    assert c() == (-1, 1)\n").passed  # EPERM, not only a 0 rlimit


@needs_bwrap
@pytest.mark.parametrize("path", ["/dev/shm/ap2o-left", "/tmp/ap2o-left", "/tmp/ap2o/ap2o-left", "/ap2o-left"])
def test_nothing_outside_the_scratch_directory_is_writable(grader, path):
    code = f"def f():\n    try:\n        open({path!r}, 'w').write('x')\n        return 'written'\n" \
           "    except OSError as e:\n        return e.errno\n"
    v = grade_one(grader, code,
                  "import errno\ndef check(c):\n    assert c() in (errno.EACCES, errno.EROFS, errno.ENOENT), c()\n")
    assert v.passed, v


@needs_bwrap
def test_an_abstract_socket_of_one_answer_is_gone_for_the_next(grader):
    name = "\0ap2o-" + uuid.uuid4().hex
    made = grade_one(grader, f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.bind({name!r})\ns.listen(1)\n"
                       "def f():\n    return 1\n", "def check(c):\n    assert c() == 1\n")
    assert made.passed, made
    code = f"import socket\ndef f():\n    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect({name!r})\n" \
           "        return 'connected'\n    except OSError:\n        return 'refused'\n"
    assert grade_one(grader, code, "def check(c):\n    assert c() == 'refused'\n").passed
