"""The bubblewrap command line a worker runs under, and whether bubblewrap works here.

Inside: a fresh root with the system directories read-only (/usr, /etc and the merged-usr
links), the Python installation read-only at its own path, this package read-only at
``/ap2o/ap2o_sandbox``, a private /tmp, a minimal /dev and /proc, and nothing else: no /home,
/root (beyond the Python installation if it lives there) or working tree. New network, pid,
IPC and UTS namespaces (no network at all, not even loopback to the host; SysV objects and
POSIX queues of one worker invisible to the others), a cleared environment and its own session.
The private /tmp is a tmpfs capped at ``tmp_bytes`` (it is RAM). ``--die-with-parent``: when the
grader's process ends, however it ends (SIGKILL included), the kernel kills bwrap, hence the
whole pid namespace and every answer in it. Its death signal follows the *thread* that started
bwrap, so the pool starts every worker from one long-lived thread (``pool._spawn``). When we
are root the worker keeps just the capabilities it needs to switch each answer to its own uid
and clean up after it.
"""

from __future__ import annotations

import functools
import os
import shutil
import site
import subprocess
import sys

MOUNT_POINT = "/ap2o"
SYSTEM_DIRS = ("/usr", "/etc")
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# switch an answer to its uid, signal its processes, and clear the scratch directory it owns
ROOT_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")


def python_dirs() -> list[str]:
    """The directories the interpreter needs, outside /usr: its prefix(es) and site-packages."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix,
                  os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    try:
        candidates.update(site.getsitepackages())
    except AttributeError:  # virtualenv's old site.py
        pass
    dirs = sorted(os.path.realpath(d) for d in candidates if d and os.path.isdir(d))
    keep: list[str] = []
    for d in dirs:  # drop those under a system dir or under one already kept
        if any(d == s or d.startswith(s + "/") for s in SYSTEM_DIRS) or any(d.startswith(k + "/") for k in keep):
            continue
        keep.append(d)
    return keep


def command(package_dir: str, *, as_root: bool, tmp_bytes: int | None = None) -> list[str]:
    """``bwrap ... --`` (the interpreter command goes after it)."""
    argv = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox", "--new-session", "--die-with-parent",
            "--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
            "--setenv", "HOME", "/tmp", "--setenv", "OPENBLAS_NUM_THREADS", "1", "--setenv", "OMP_NUM_THREADS", "1"]
    for d in SYSTEM_DIRS:
        argv += ["--ro-bind", d, d]
    for link in MERGED_USR_LINKS:
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    made = set()
    for d in python_dirs():
        # bwrap creates missing parents 0700; the answer's uid must be able to walk to the stdlib
        for parent in _ancestors(d):
            if parent not in made and not any(parent == s or parent.startswith(s + "/") for s in SYSTEM_DIRS):
                made.add(parent)
                argv += ["--perms", "0755", "--dir", parent]
        argv += ["--ro-bind", d, d]
    interpreter = os.path.realpath(sys.executable)
    if not any(interpreter.startswith(d + "/") for d in (*SYSTEM_DIRS, *python_dirs())):
        argv += ["--ro-bind", interpreter, interpreter]
    argv += ["--ro-bind", package_dir, f"{MOUNT_POINT}/ap2o_sandbox", "--proc", "/proc", "--dev", "/dev"]
    if tmp_bytes is not None and supports_size():  # older bubblewrap: uncapped (docs/sandbox.md)
        argv += ["--size", str(int(tmp_bytes))]
    argv += ["--tmpfs", "/tmp", "--chdir", "/tmp"]
    if as_root:
        argv += ["--cap-drop", "ALL"]
        for cap in ROOT_CAPS:
            argv += ["--cap-add", cap]
    return argv + ["--"]


@functools.cache
def supports_size() -> bool:
    """bubblewrap 0.8 added ``--size`` for ``--tmpfs``."""
    try:
        out = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--size" in out.stdout + out.stderr


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def reachable_by_others(path: str) -> bool:
    """Can a uid other than ours walk down to ``path``? (Without bubblewrap, the answer's own uid
    must still be able to import the standard library.)"""
    import stat

    for parent in _ancestors(path) + [path]:
        try:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


@functools.cache
def available(package_dir: str) -> str | None:
    """None when bubblewrap runs a Python here; otherwise why not (for the one-time warning)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    argv = command(package_dir, as_root=os.geteuid() == 0, tmp_bytes=1 << 20)
    argv += [os.path.realpath(sys.executable), "-I", "-c", "pass"]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap failed to start: {e}"
    if proc.returncode != 0:
        return f"bubblewrap cannot create a sandbox here: {proc.stderr.decode(errors='replace').strip()[:300]}"
    return None
