"""The harness inside the forked child: runs one answer and reports how it ended.

Runs in a process that already dropped to the answer's uid and limits (see ``worker``). The
answer shares this interpreter with the harness, so the harness defends the verdict itself:

* **The report channel.** The verdict leaves through a pipe at a random descriptor, prefixed
  with a per-run random nonce that lives only in a closure on the main thread's stack. An answer
  that exits early, prints "passed", writes to stray descriptors or closes them produces no valid
  report, and a missing report is never a pass.
* **No way up to the test.** The answer's module code and every call of its entry point run on a
  thread of their own whose frames start at a small loop with an empty globals dict; the test
  and the harness live on the main thread. An audit hook (which cannot be removed) refuses
  ``sys._current_frames``, the ``gc`` object walkers, ``settrace``/``setprofile``, so the answer
  cannot reach the main thread's frames or the nonce. The harness modules are removed from
  ``sys.modules``.
* **Results are data, not behaviour.** What the entry point returns is rebuilt from builtin
  types; an object of a class that did not exist before the answer ran and is not a static (C)
  type becomes its builtin base (a ``str`` subclass becomes a ``str``) or, failing that, an
  object equal to nothing. So ``__eq__``-is-always-true objects fail the test instead of
  passing it, and the test never runs the answer's code. Arguments are copied the same way, so
  the answer cannot change the test's data.
* **Patched builtins and modules are put back.** ``builtins`` and the modules in
  ``RESTORED_MODULES`` are restored from a snapshot after each call of the answer, the test gets
  its own copy of the builtins and the real preloaded modules under their names, so
  ``builtins.abs = lambda x: 0``, ``math.isclose = ...`` or a fake ``math`` cannot rig an assertion.

What this does not cover (README, "Sandbox"): an answer that deliberately rewrites interpreter
memory (ctypes, /proc/self/mem) can forge anything in-process; isolation still protects the host.
"""

from __future__ import annotations

import ast
import builtins
import gc
import marshal
import os
import queue
import sys
import threading
import types

ANSWER_FILE = "<answer>"
TEST_FILE = "<test>"
MAX_TRACEBACK_FRAMES = 40
MAX_TEXT = 8000
MAX_DEPTH = 100

# Events the answer must not raise: they reach other threads' frames, every object (the nonce,
# the harness's functions) or install hooks that see the harness run.
BLOCKED_EVENTS = frozenset({
    "sys._current_frames", "sys._current_exceptions", "gc.get_objects", "gc.get_referrers",
    "gc.get_referents", "sys.settrace", "sys.setprofile",
})

# Modules whose attributes tests lean on (``abs``, ``math.isclose``...): restored after each
# call of the answer. Kept short on purpose: every restored entry is a refcount write, and in a
# forked child each page written is a page copied.
RESTORED_MODULES = ("builtins", "math", "cmath", "operator", "string", "re")

_graveyard: list = []

# Filled by prepare() in the worker, before it forks; read-only afterwards.
_snapshot: dict = {}

# Bound now so that later lookups by name cannot be redirected by the answer.
_type, _id, _len, _isinstance, _issubclass, _all = type, id, len, isinstance, issubclass, all
_str, _int, _float, _complex, _bytes, _bool = str, int, float, complex, bytes, bool
_tuple, _list, _dict, _set, _frozenset, _slice = tuple, list, dict, set, frozenset, slice
_repr, _BaseException, _SystemExit, _SyntaxError = repr, BaseException, SystemExit, SyntaxError
_AssertionError, _RuntimeError, _NameError = AssertionError, RuntimeError, NameError
_Thread = threading.Thread
_SimpleQueue = queue.SimpleQueue
_type_name = type.__dict__["__name__"].__get__
_type_flags = type.__dict__["__flags__"].__get__
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set on every class made by a class statement or type()
_exc_args = BaseException.__dict__["args"].__get__
_exc_tb = BaseException.__dict__["__traceback__"].__get__
_dict_update, _dict_items = dict.update, dict.items
_NoneType = type(None)
_SCALAR_IDS = frozenset(map(id, (int, float, complex, str, bytes, bool, _NoneType)))
# a subclass of a builtin type becomes the base through the base's own C method (never an override)
_TO_BASE = (
    (int, int.__pos__), (float, float.__pos__), (complex, complex.__pos__), (str, str.__str__),
    (bytes, bytes.__bytes__), (tuple, lambda v: tuple.__getitem__(v, slice(None))),
    (list, lambda v: list.__getitem__(v, slice(None))), (dict, dict.copy), (set, set.copy),
    (frozenset, frozenset.copy),
)


class Unmatched:
    """Stands in for an object of a class the answer made: equal to nothing, false, opaque."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    def __bool__(self):
        return False

    __hash__ = object.__hash__

    def __repr__(self):
        return f"<object of the answer's class {self.type_name}>"


def prepare(preload: list[str]) -> None:
    """In the worker, once: import what answers commonly use (forked children then share it) and
    snapshot what the harness later trusts or restores."""
    for name in preload:
        try:
            __import__(name)
        except Exception:  # numpy may be absent; the rest is stdlib
            pass
    threading.stack_size(64 * 1024 * 1024)  # answers run on threads; give them a main-thread-sized stack
    classes, todo = [], [object]
    seen = set()
    while todo:
        cls = todo.pop()
        if id(cls) in seen:
            continue
        seen.add(id(cls))
        classes.append(cls)
        try:
            todo.extend(type.__subclasses__(cls))
        except TypeError:
            pass
    _snapshot["classes"] = classes  # kept alive so that their ids stay theirs
    _snapshot["class_ids"] = frozenset(seen)
    _snapshot["modules"] = [(sys.modules[m].__dict__, dict(sys.modules[m].__dict__))
                            for m in RESTORED_MODULES if m in sys.modules]
    _snapshot["builtins"] = dict(builtins.__dict__)
    _snapshot["serve"] = _make_server()
    _snapshot["module_objects"] = {m: sys.modules[m] for m in preload if m in sys.modules and "." not in m}
    _snapshot["harness_modules"] = [m for m in sys.modules if m == "ap2o_sandbox" or m.startswith("ap2o_sandbox.")]
    _snapshot["version_of"] = _dict_version_reader()
    _snapshot["versions"] = [_snapshot["version_of"](live) for live, _ in _snapshot["modules"]]
    # Everything imported so far is permanent: the children's collections never walk (and so
    # never copy-on-write) the worker's heap.
    gc.collect()
    gc.freeze()


_SERVE_SRC = """
def serve(get, put):
    while True:
        fn, args, kwargs = get()
        try:
            result = (True, fn(*args, **kwargs))
        except BaseException as e:
            result = (False, e)
        put(result)
        result = fn = args = kwargs = e = None
"""


def _make_server():
    """The bottom frame of the answer's thread: a loop with an empty globals dict, so walking
    up from the answer's frames leads to nothing of the harness or the test."""
    ns = {"__builtins__": {"BaseException": BaseException}}
    exec(compile(_SERVE_SRC, "<ap2o-answer-thread>", "exec"), ns)
    return ns["serve"]


# --- entry points (called in the child, never return) -------------------------------------------

def run(kind: str, code: str, test: str | None, entry_point: str | None, report, names: dict,
        test_code=None) -> None:
    """``test_code``: the test already compiled by the worker (tests repeat across answers)."""
    _hide_harness()
    _install_guard()
    if kind == "stdio":
        _run_stdio(code, report, names)
    else:
        _run_function(code, test or "", entry_point or "", report, names, test_code)


def make_reporter(fd: int, nonce: bytes):
    """The only way a verdict leaves the child. Flushes the answer's prints first so that the
    worker has them before the process ends."""
    write, exit_, dumps, out, err = os.write, os._exit, marshal.dumps, sys.stdout, sys.stderr

    def report(payload: dict) -> None:
        for stream in (out, err):
            try:
                stream.flush()
            except BaseException:
                pass
        try:
            data = nonce + dumps(payload)
        except (ValueError, TypeError):
            data = nonce + dumps({"error": {"type": "RuntimeError", "message": "unreportable result"}})
        try:
            while data:
                data = data[write(fd, data):]
        except OSError:
            pass
        exit_(0)

    return report


def _hide_harness() -> None:
    # the names were listed in the worker: walking sys.modules here would copy its pages
    for name in _snapshot["harness_modules"]:
        sys.modules.pop(name, None)
    sys.modules["__main__"] = types.ModuleType("__main__")


def _install_guard() -> None:
    def guard(event, args, blocked=BLOCKED_EVENTS, error=RuntimeError):
        if event in blocked:
            raise error(f"{event} is not allowed in the sandbox")

    sys.addaudithook(guard)


def _run_stdio(code: str, report, names: dict) -> None:
    try:
        compiled = compile(code, ANSWER_FILE, "exec", dont_inherit=True)
    except BaseException as e:
        report({"error": _describe(e, code, "", names)})
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    try:
        exec(compiled, module.__dict__)
    except _SystemExit as e:
        status = e.code
        if status is None or (_type(status) is _int and status == 0):
            report({"ok": True})
        report({"error": _describe(e, code, "", names)})
    except BaseException as e:
        report({"error": _describe(e, code, "", names)})
    report({"ok": True})


def _run_function(code: str, test: str, entry_point: str, report, names: dict, test_code=None) -> None:
    try:
        compiled = compile(code, ANSWER_FILE, "exec", dont_inherit=True)
    except BaseException as e:
        report({"error": _describe(e, code, test, names)})
    module = types.ModuleType("__answer__")  # never "__main__": `if __name__ == "__main__":` demos stay off
    namespace = module.__dict__
    namespace["__builtins__"] = builtins
    sys.modules["__answer__"] = module
    ok, value = _isolated(exec, (compiled, namespace), {})
    if not ok:
        report({"error": _describe(value, code, test, names)})

    # exact-str keys only: a planted key with a colliding hash would run the answer's __eq__ here
    candidate = next((v for k, v in _dict_items(namespace) if _type(k) is _str and k == entry_point), _Missing)
    if candidate is _Missing:
        err = _NameError(f"name {entry_point!r} is not defined")
        report({"error": _describe(err, code, test, names)})
    guarded = _guard_candidate(candidate)

    # The test sees the answer's helpers (HumanEval's tests call functions of the prompt) but
    # never a name that shadows a builtin, and gets builtins of its own.
    # A name of a preloaded module (``math``...) is bound to the real module, so an answer cannot
    # hand a test that relies on the prompt's imports a fake ``math``; ``check`` is the test's own.
    real_modules = _snapshot["module_objects"]
    test_ns = {k: real_modules.get(k, v) for k, v in _dict_items(namespace)
               if _type(k) is _str and k not in _snapshot["builtins"] and not k.startswith("__") and k != "check"}
    test_ns.update({"__name__": "__test__", "__builtins__": _dict(_snapshot["builtins"]),
                    entry_point: guarded})
    try:
        exec(test_code if test_code is not None else compile(test, TEST_FILE, "exec", dont_inherit=True), test_ns)
        check = test_ns.get("check")
        if check is not None:  # otherwise the test's own top-level asserts were the test
            check(guarded)
    except BaseException as e:
        _restore()
        report({"error": _describe(e, code, test, names)})
    report({"ok": True})


class _Missing:
    pass


def _guard_candidate(candidate):
    """What the test calls instead of the answer's function: same arguments, the call on an
    isolated thread, the result turned into plain data."""
    if not _isinstance(candidate, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return candidate  # a class or callable object: passed as is (documented)

    def candidate_call(*args, **kwargs):
        # the answer gets copies: emptying the test's list and returning [] must not pass
        # `assert candidate(xs) == sorted(xs)`
        args = _plain(args, 0)
        kwargs = {k: _plain(v, 0) for k, v in _dict_items(kwargs)}
        ok, value = _isolated(candidate, args, kwargs)
        if not ok:
            raise value
        return _plain(value, 0)

    if _type(candidate) is types.FunctionType:
        candidate_call.__name__ = candidate_call.__qualname__ = _str(candidate.__name__)
    return candidate_call


_answer_thread: list = []  # [(inbox, outbox)] once started; one thread serves every call of a run


def _isolated(fn, args, kwargs):
    """Run ``fn`` on the answer's thread (so its frames do not lead to ours), wait, and put back
    whatever it patched. Returns (ok, value or exception)."""
    if not _answer_thread:
        threading._trace_hook = threading._profile_hook = None
        inbox, outbox = _SimpleQueue(), _SimpleQueue()
        _Thread(target=_snapshot["serve"], args=(inbox.get, outbox.put), daemon=True,
                name="answer").start()
        _answer_thread.append((inbox, outbox))
    inbox, outbox = _answer_thread[0]
    inbox.put((fn, args, kwargs))
    result = outbox.get()
    _restore()
    _graveyard.append(result)  # the answer's objects are never freed (and finalized) on our thread
    if _type(result) is not _tuple or _len(result) != 2:
        return False, _RuntimeError("the answer's thread returned no result")
    return result


def _restore() -> None:
    """Put back every snapshot entry of builtins and the restored modules whose dict changed
    (all of them when the change cannot be seen): one C-level ``dict.update`` each."""
    version_of, versions = _snapshot["version_of"], _snapshot["versions"]
    for i, (live, saved) in enumerate(_snapshot["modules"]):
        if versions[i] is None or version_of(live) != versions[i]:
            _dict_update(live, saved)
            versions[i] = version_of(live)


def _dict_version_reader():
    """CPython 3.9-3.13 stamps every dict with a version that changes on each modification
    (PEP 509). Reading it tells whether the answer touched a module without iterating it (an
    iteration writes the refcount of every value: in a forked child, a copied page each). Checked
    on a scratch dict first; None where it does not behave."""
    if sys.implementation.name != "cpython" or not (3, 9) <= sys.version_info[:2] <= (3, 13):
        return lambda d: None
    try:
        import ctypes

        offset = 2 * ctypes.sizeof(ctypes.c_void_p) + ctypes.sizeof(ctypes.c_ssize_t)  # PyObject_HEAD, ma_used
        read = ctypes.c_uint64.from_address

        def version_of(d, read=read, offset=offset, id=id):
            return read(id(d) + offset).value

        probe = {"a": 1}
        before = version_of(probe)
        probe["a"] = 2
        after = version_of(probe)
        probe["b"] = 3
        if before == after or after == version_of(probe) or version_of(probe) != version_of(probe):
            return lambda d: None
        return version_of
    except Exception:
        return lambda d: None


def _plain(value, depth: int):
    """``value`` as plain data the test may compare without running any of the answer's code."""
    tid = _id(_type(value))
    if tid in _SCALAR_IDS:
        return value
    if depth > MAX_DEPTH:
        return Unmatched("nested too deeply")
    if tid == _id(_list):
        return [_plain(v, depth + 1) for v in value]
    if tid == _id(_tuple):
        return _tuple([_plain(v, depth + 1) for v in value])
    if tid == _id(_dict):
        return {_plain(k, depth + 1): _plain(v, depth + 1) for k, v in _dict_items(value)}
    if tid == _id(_set):
        return {_plain(v, depth + 1) for v in value}
    if tid == _id(_frozenset):
        return _frozenset([_plain(v, depth + 1) for v in value])
    if tid in _snapshot["class_ids"]:
        return value  # a class that existed before the answer ran: its behaviour is not the answer's
    cls = _type(value)
    if not _type_flags(cls) & _HEAPTYPE:
        return value  # a static (C) type, e.g. numpy's scalars and arrays: Python code cannot make one
    for base, to_base in _TO_BASE:
        if _issubclass(cls, base):
            return _plain(to_base(value), depth + 1)
    return Unmatched(_safe_type_name(cls))


# --- describing an error without running the answer's code ---------------------------------------

def _safe_type_name(cls) -> str:
    try:
        return _str(_type_name(cls))
    except BaseException:
        return "?"


def _safe_text(value, depth: int = 0) -> str:
    tid = _id(_type(value))
    if tid == _id(_str):
        return value
    if tid in _SCALAR_IDS:
        return _repr(value)
    if depth < 3 and tid in (_id(_tuple), _id(_list)):
        inner = ", ".join(_safe_repr(v, depth + 1) for v in value)
        return f"({inner}{',' if tid == _id(_tuple) and _len(value) == 1 else ''})" if tid == _id(_tuple) else f"[{inner}]"
    return f"<{_safe_type_name(_type(value))} object>"


def _safe_repr(value, depth: int = 0) -> str:
    return _repr(value) if _id(_type(value)) == _id(_str) else _safe_text(value, depth)


def _message(exc) -> str:
    """``str(exc)`` for exceptions of trusted classes with plain arguments; a placeholder where
    str() would run the answer's code."""
    try:
        args = _exc_args(exc)
    except BaseException:
        return ""
    plain = all(_id(_type(a)) in _SCALAR_IDS for a in args)
    if _id(_type(exc)) in _snapshot["class_ids"] and plain:
        try:
            return _str(exc)[:MAX_TEXT]
        except BaseException:
            return ""
    if _len(args) == 0:
        return ""
    if _len(args) == 1:
        return _safe_text(args[0])[:MAX_TEXT]
    return _safe_text(args)[:MAX_TEXT]


def _frames(exc):
    """(file, line, function) of the answer's and the test's frames, outermost first."""
    out = []
    try:
        tb = _exc_tb(exc)
    except BaseException:
        return out
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename in (ANSWER_FILE, TEST_FILE):
            out.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return out


def _source_line(sources: dict, filename: str, lineno: int | None) -> str:
    lines = sources.get(filename, "").splitlines()
    if lineno and 1 <= lineno <= _len(lines):
        return lines[lineno - 1].strip()
    return ""


def _format_frames(frames, sources) -> list[str]:
    lines, i = [], 0
    while i < _len(frames):  # collapse runs of one frame (recursion) the way Python does
        j = i
        while j + 1 < _len(frames) and frames[j + 1] == frames[i]:
            j += 1
        shown = min(j - i + 1, 3)
        for _ in range(shown):
            fname, lineno, func = frames[i]
            lines.append(f'  File "{fname}", line {lineno}, in {func}')
            src = _source_line(sources, fname, lineno)
            if src:
                lines.append(f"    {src}")
        if j - i + 1 > 3:
            lines.append(f"  [Previous line repeated {j - i + 1 - 3} more times]")
        i = j + 1
    if _len(lines) > 2 * MAX_TRACEBACK_FRAMES:
        lines = lines[:MAX_TRACEBACK_FRAMES] + ["  ..."] + lines[-MAX_TRACEBACK_FRAMES:]
    return lines


def _describe(exc, code: str, test: str, names: dict) -> dict:
    """The error fields of the report: type, message, traceback, line in the answer, failed test."""
    cls = _type(exc)
    name = _safe_type_name(cls)
    message = _message(exc)
    sources = {ANSWER_FILE: code, TEST_FILE: test}
    frames = _frames(exc)
    line = None
    for fname, lineno, _ in frames:
        if fname == ANSWER_FILE:
            line = lineno
    failed_test = None

    if _issubclass(cls, _SystemExit):
        return {"type": names["early_exit"], "message": f"SystemExit({message}) before every test ran",
                "traceback": _traceback(frames, sources, f"SystemExit: {message}".rstrip(": ")), "line": line}

    if _issubclass(cls, _SyntaxError) and _id(cls) in _snapshot["class_ids"] and not frames:
        return _describe_syntax_error(exc, name, sources)

    if _issubclass(cls, _AssertionError) and frames and frames[-1][0] == TEST_FILE:
        failed_test = _assertion_source(test, frames[-1][1])
        name = names["wrong_result"]
        if not message:
            message = f"assertion failed: {failed_test}"
    tail = f"{_safe_type_name(cls)}: {message}" if message else _safe_type_name(cls)
    return {"type": name, "message": message[:MAX_TEXT], "traceback": _traceback(frames, sources, tail),
            "line": line, "failed_test": failed_test}


def _describe_syntax_error(exc, name: str, sources: dict) -> dict:
    filename = exc.filename if _type(exc.filename) is _str else ANSWER_FILE
    lineno = exc.lineno if _type(exc.lineno) is _int else None
    msg = exc.msg if _type(exc.msg) is _str else ""
    lines = [f'  File "{filename}", line {lineno}']
    text = exc.text if _type(exc.text) is _str else _source_line(sources, filename, lineno)
    if text:
        stripped = text.rstrip("\n")
        indent = _len(stripped) - _len(stripped.lstrip())
        lines.append(f"    {stripped.strip()}")
        if _type(exc.offset) is _int and exc.offset >= 1:
            lines.append("    " + " " * max(0, exc.offset - 1 - indent) + "^")
    lines.append(f"{name}: {msg}")
    return {"type": name, "message": msg, "traceback": "\n".join(lines),
            "line": lineno if filename == ANSWER_FILE else None}


def _traceback(frames, sources, tail: str) -> str:
    body = _format_frames(frames, sources)
    head = ["Traceback (most recent call last):"] if body else []
    return "\n".join(head + body + [tail])[:4 * MAX_TEXT]


def _assertion_source(test: str, lineno: int) -> str:
    """The whole ``assert`` statement of the test at ``lineno`` (asserts span lines)."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _source_line({TEST_FILE: test}, TEST_FILE, lineno)
    best = None
    for node in ast.walk(tree):
        if _isinstance(node, ast.Assert) and node.lineno <= lineno <= (node.end_lineno or node.lineno):
            if best is None or node.lineno >= best.lineno:
                best = node
    if best is None:
        return _source_line({TEST_FILE: test}, TEST_FILE, lineno)
    return (ast.get_source_segment(test, best) or "")[:MAX_TEXT]
