"""The bubblewrap command line a worker runs under, and whether bubblewrap works here.

Inside: a root built from an allow-list (``view.build``: the interpreter, the loader and the
shared libraries it needs, the standard library with its ``site-packages`` emptied, the answer
packages, ``/etc/ld.so.cache``, ``/etc/localtime`` and the time zone database), all read-only
at their own paths; this package read-only at ``/ap2o/ap2o_sandbox``; a private /tmp, a minimal
/dev and /proc; nothing else: no /usr or /etc as a whole, no /home, no working tree, no dataset.
New network, pid, IPC and UTS namespaces (no network at all, not even loopback to the host;
SysV objects and POSIX queues of one worker invisible to the others), a cleared environment and
its own session. The private /tmp is a tmpfs capped at ``tmp_bytes`` (it is RAM).
``--die-with-parent``: when the grader's process ends, however it ends (SIGKILL included), the
kernel kills bwrap, hence the whole pid namespace and every answer in it. Its death signal
follows the *thread* that started bwrap, so the pool starts every worker from one long-lived
thread (``pool._spawner``). When we are root the worker keeps just the capabilities it needs to
switch each answer and its judge to their own uids and clean up after them.
"""

from __future__ import annotations

import functools
import os
import shutil
import site
import stat
import subprocess
import sys

from builder.grading.sandbox import view as views

MOUNT_POINT = "/ap2o"
SYSTEM_DIRS = ("/usr", "/etc")
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# switch an answer (and its judge) to their uids, signal their processes, clear the scratch directory
ROOT_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")


def python_dirs() -> list[str]:
    """The directories the interpreter needs, outside /usr: its prefix(es) and site-packages
    (without bubblewrap, an answer's own uid must be able to reach them)."""
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


def _inside(path: str, roots) -> bool:
    return any(path == r or path.startswith(r + "/") for r in roots)


def command(package_dir: str, *, as_root: bool, tmp_bytes: int | None = None,
            answer_packages: tuple[str, ...] = (), binds: list[tuple[str, str]] = ()) -> list[str]:
    """``bwrap ... --`` (the interpreter command goes after it); ``binds``: more (host file,
    path inside) pairs bound read-only (the worker's cgroup CPU counter)."""
    view = views.build(tuple(answer_packages))
    argv = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox", "--new-session", "--die-with-parent",
            "--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
            "--setenv", "HOME", "/tmp", "--setenv", "OPENBLAS_NUM_THREADS", "1", "--setenv", "OMP_NUM_THREADS", "1"]
    for link in MERGED_USR_LINKS:  # the loader's cache names /lib/...: on merged-/usr systems that is a link
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
    made: set[str] = set()

    def parents(path: str, inside=()) -> list[str]:
        # bwrap creates missing parents 0700; the answer's uid must be able to walk down
        out = []
        for parent in _ancestors(path):
            if parent not in made and not _inside(parent, inside) and not os.path.islink(parent):
                made.add(parent)
                out += ["--perms", "0755", "--dir", parent]
        return out

    for tree in view.trees:
        argv += parents(tree) + ["--ro-bind", tree, tree]
    for emptied in view.emptied:  # the installed packages are not the answer's: only the allowed ones
        argv += ["--perms", "0755", "--tmpfs", emptied]
    for entry in view.packages:
        argv += parents(entry, view.trees) + ["--ro-bind", entry, entry]
    for emptied in view.emptied:
        argv += ["--remount-ro", emptied]
    shown = view.trees + view.packages
    for source, dest in view.files:
        if not _inside(dest, shown):
            argv += parents(dest) + ["--ro-bind", source, dest]
    argv += ["--ro-bind", package_dir, f"{MOUNT_POINT}/ap2o_sandbox"]
    for source, dest in binds:
        argv += ["--ro-bind", source, dest]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    if tmp_bytes is not None and supports_size():  # older bubblewrap: uncapped (docs/sandbox.md)
        argv += ["--size", str(int(tmp_bytes))]
    argv += ["--tmpfs", "/tmp", "--chdir", "/tmp"]
    if as_root:
        argv += ["--cap-drop", "ALL"]
        for cap in ROOT_CAPS:
            argv += ["--cap-add", cap]
    return argv + ["--"]


def package_path(answer_packages: tuple[str, ...] = ()) -> list[str]:
    """Directories of the answer packages the worker's ``sys.path`` lacks (a virtual environment's
    site-packages: the worker runs the base interpreter with ``-I``)."""
    return [d for d in views.build(tuple(answer_packages)).package_dirs if d not in views.default_path()]


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
    try:
        argv = command(package_dir, as_root=os.geteuid() == 0, tmp_bytes=1 << 20)
    except OSError as e:  # the allow-list could not be read (view.py)
        return f"the sandbox's filesystem view cannot be built here: {e}"
    argv += [os.path.realpath(sys.executable), "-I", "-c", "pass"]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bubblewrap failed to start: {e}"
    if proc.returncode != 0:
        return f"bubblewrap cannot create a sandbox here: {proc.stderr.decode(errors='replace').strip()[:300]}"
    return None
