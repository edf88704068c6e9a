"""The answer's side of the sandbox: the process that runs an answer's code, and nothing else.

Why it holds nothing worth forging: this process never sees the problem's test, never decides a
verdict and never reports one. It is forked from the worker's *zygote* (a copy of the worker made
before any job arrived, so no test or expected output was ever in its memory), and it talks only
through one socket to the judge (``judge``), in the plain-data format of ``codec``. Whatever the
answer does to this interpreter (audit hooks, a ``flush`` on ``sys.stdout``, patched builtins or
``sys.modules``, frame or ``gc`` walks, ctypes) changes only the bytes it sends; the judge rebuilds
values from those bytes by itself.

Function problems (``serve``): compile and run the answer's module, say ``ready`` (or how it
failed), then answer the judge's requests: ``call`` (a global of the answer by name, or an object
it kept, or a method of one), ``get`` (what a global the test reads is), ``getattr`` and ``op``
(``len``, ``iter``, ``getitem``, ``contains``, ``str`` of a kept object). A call's reply carries the
value (plain data where it is plain data, a handle for anything else), the new contents of the
arguments when the call changed them, and what it printed when the test captures stdout; an
exception goes back as plain data: nearest built-in ancestor, raw class name, message, frames,
``args``, attributes and the answer's classes up to the built-in one.

Stdio problems (``run_stdio``): the program runs as ``__main__``; its stdout is what is judged,
and that is compared by the host, outside the sandbox. The short report it leaves on its pipe
(how it ended) is decoded with the same codec and can only make its own verdict worse.
"""

from __future__ import annotations

import builtins
import gc
import io
import os
import sys
import types

from . import codec

ANSWER_FILE = "<answer>"
MAX_TEXT = 8000
MAX_NAME = 200
MAX_TRACEBACK_FRAMES = 40

# The builtins as they were before any answer ran (the nearest built-in ancestor is looked up
# here, not in a ``builtins`` the answer may have patched).
_BUILTINS = dict(builtins.__dict__)
_mro_of = type.__dict__["__mro__"].__get__
_name_of = type.__dict__["__name__"].__get__


def prepare(preload: list[str]) -> None:
    """In the worker, once, before the zygote is forked: import what answers commonly use (every
    forked answer then shares it) and freeze the heap so children's collections never copy it."""
    for name in preload:
        try:
            __import__(name)
        except Exception:  # pool.PRELOAD: standard library only; a module this build lacks is not preloaded
            pass
    gc.collect()
    gc.freeze()


# --- describing an exception as plain data ------------------------------------------------------

def nearest_builtin(cls, exception_names) -> str:
    """The first class of ``cls``'s MRO that is the built-in exception of that name."""
    try:
        for c in _mro_of(cls):
            name = _name_of(c)
            if name in exception_names and _BUILTINS.get(name) is c:
                return name
    except BaseException:
        pass
    return "BaseException"


def describe(exc, exception_names, details: bool = True) -> tuple:
    """(ancestor, raw class name, message, frames, syntax, args, attributes, classes): ``frames``
    are (file, line, function) of the answer's own code, outermost first; ``syntax`` is (line,
    offset, text, msg) for a SyntaxError, else None; with ``details``, ``args`` and the instance's
    attributes as they are (the codec makes handles of what is not plain data) and the answer's
    classes between the exception's class and its built-in ancestor as (id, name)."""
    cls = type(exc)
    try:
        raw = str(_name_of(cls))[:MAX_NAME]
    except BaseException:
        raw = "?"
    try:
        message = str(exc)[:MAX_TEXT]
    except BaseException:
        message = ""
    frames = []
    try:
        tb = exc.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            if code.co_filename == ANSWER_FILE:
                frames.append((ANSWER_FILE, int(tb.tb_lineno or 0), str(code.co_name)[:MAX_NAME]))
            tb = tb.tb_next
    except BaseException:
        frames = []
    if len(frames) > 2 * MAX_TRACEBACK_FRAMES:
        frames = frames[:MAX_TRACEBACK_FRAMES] + frames[-MAX_TRACEBACK_FRAMES:]
    syntax = None
    if isinstance(exc, SyntaxError):
        try:
            syntax = (_int_or_none(exc.lineno), _int_or_none(exc.offset),
                      exc.text[:MAX_TEXT] if type(exc.text) is str else None,
                      exc.msg[:MAX_TEXT] if type(exc.msg) is str else "")
        except BaseException:
            syntax = None
    ancestor = nearest_builtin(cls, exception_names)
    args, attrs, classes = (), {}, []
    if details:
        try:
            args = tuple(exc.args) if type(exc.args) is tuple else ()
            attrs = {k: v for k, v in vars(exc).items() if type(k) is str and not k.startswith("__")}
            classes = answer_classes(cls, ancestor)
        except BaseException:
            args, attrs, classes = (), {}, []
    return (ancestor, raw, message, frames, syntax, args, attrs, classes)


def answer_classes(cls, ancestor: str) -> list:
    """(id, name) of ``cls`` and its bases up to the built-in ``ancestor`` (not included)."""
    out = []
    try:
        for c in _mro_of(cls):
            if _name_of(c) == ancestor and _BUILTINS.get(ancestor) is c:
                break
            out.append((id(c), str(_name_of(c))[:MAX_NAME]))
    except BaseException:
        return []
    return out[:MAX_TRACEBACK_FRAMES]


def _int_or_none(v):
    return v if type(v) is int else None


# --- function problems ------------------------------------------------------------------------------

_PLAIN_BASES = (
    (int, int.__index__), (float, float.__float__), (complex, lambda v: complex(v.real, v.imag)),
    (str, str.__str__), (bytes, lambda v: bytes.__getitem__(v, slice(None))),
    (tuple, lambda v: tuple.__getitem__(v, slice(None))), (list, lambda v: list.__getitem__(v, slice(None))),
    (dict, dict.copy), (frozenset, frozenset.copy), (set, set.copy),
)


def serve(code: str, fd: int, exception_names, cap: int = codec.MAX_MESSAGE) -> None:
    """Run the answer's module, then answer the judge's requests until the judge hangs up."""
    exception_names = frozenset(exception_names)
    kept: list = []  # objects the judge holds handles to
    kept_ids: dict = {}  # id(object) -> its handle number: one object, one handle (identity holds)

    def send(payload: bytes) -> None:
        # the answer's prints reach the worker before the judge can end the run on this reply
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        codec.send(fd, payload)

    def reply(message, table=None, error=None) -> None:
        try:
            payload = codec.encode(message, handle_of, list(table or ()))
        except MemoryError:
            payload = None
        if payload is None or len(payload) > cap:
            size = "more memory than the answer had" if payload is None else f"{len(payload)} bytes"
            if message[0] == "raise" and error is not None:  # the exception without its args and attributes
                return reply(("raise", describe(error, exception_names, details=False), None, None))
            payload = codec.encode(("limit", f"the answer's reply took {size}; the channel carries at most {cap}"))
        send(payload)

    try:
        compiled = compile(code, ANSWER_FILE, "exec", dont_inherit=True)
    except BaseException as e:
        send(codec.encode(("raise", describe(e, exception_names, details=False))))
        os._exit(0)
    module = types.ModuleType("__answer__")  # never "__main__": `if __name__ == "__main__":` demos stay off
    namespace = module.__dict__
    namespace["__builtins__"] = builtins
    sys.modules["__answer__"] = module
    try:
        exec(compiled, namespace)
    except SystemExit as e:
        send(codec.encode(("exit", describe(e, exception_names, details=False))))
        os._exit(0)
    except BaseException as e:
        send(codec.encode(("raise", describe(e, exception_names, details=False))))
        os._exit(0)
    send(codec.encode(("ready",)))

    def handle_of(obj):
        cls = type(obj)
        for base, to_base in _PLAIN_BASES:
            if isinstance(obj, base):
                try:
                    value = to_base(obj)
                except BaseException:
                    break
                if type(value) is base:
                    return value
                break
        if getattr(cls, "__module__", "") == "numpy" and getattr(obj, "ndim", None) == 0:
            try:
                value = obj.item()  # numpy scalars: their Python value
                if type(value) in (bool, int, float, complex, str, bytes):
                    return value
            except BaseException:
                pass
        number = kept_ids.get(id(obj))
        if number is None:
            number = kept_ids[id(obj)] = len(kept)
            kept.append(obj)
        try:
            name = str(_name_of(cls))[:MAX_NAME]
        except BaseException:
            name = "?"
        return (number, name)

    def resolve(hid, name):
        if 0 <= hid < len(kept):
            return kept[hid]
        raise codec.CodecError(f"no object #{hid}")

    def guarded(compute, *args):
        """(True, compute(*args)) or (False, the exception it raised); an exit ends this process
        now, as the answer asked, after saying so."""
        try:
            return True, compute(*args)
        except SystemExit as e:
            send(codec.encode(("exit", describe(e, exception_names, details=False))))
            os._exit(0)
        except BaseException as e:
            return False, e

    def what_is(obj) -> tuple:
        """How the judge is to see a global or attribute of the answer."""
        if obj is _missing:
            return ("name", "missing", None)
        if isinstance(obj, types.ModuleType):
            return ("name", "module", str(getattr(obj, "__name__", "")))
        if isinstance(obj, type) and issubclass(obj, BaseException):
            ancestor = nearest_builtin(obj, exception_names)
            return ("name", "excclass", (ancestor, answer_classes(obj, ancestor)))
        return ("name", "value", obj)

    reader = codec.Reader(fd, cap)
    while True:
        data = reader.recv()
        if data is None:
            os._exit(0)
        table: list = []
        request = codec.decode(data, resolve, table)
        kind = request[0]
        if kind == "get":
            reply(what_is(namespace.get(request[1], _missing)))
            continue
        if kind in ("getattr", "op"):
            if kind == "getattr":
                ok, value = guarded(getattr, request[1], request[2])
            else:
                ok, value = guarded(_OPS[request[2]], request[1], request[3])
            if ok:
                reply(what_is(value) if kind == "getattr" else ("value", value, None, None))
            elif kind == "getattr" and isinstance(value, AttributeError):
                reply(("name", "missing", None))
            else:
                reply(("raise", describe(value, exception_names), None, None), error=value)
            value = None
            continue
        _, target, capture, args, kwargs = request  # "call"
        if type(target) is str:
            fn = namespace.get(target, _missing)
            if fn is _missing:
                reply(("raise", describe(NameError(f"name {target!r} is not defined"), exception_names), None, None))
                continue
        elif type(target) is tuple:  # (object, method name)
            try:
                fn = getattr(target[0], target[1])
            except BaseException as e:
                reply(("raise", describe(e, exception_names), None, None), error=e)
                continue
        else:
            fn = target
        before = codec.encode((args, kwargs), handle_of)
        saved, out = sys.stdout, None
        if capture:
            sys.stdout = io.StringIO()
        try:
            value = fn(*args, **kwargs)
            error = None
        except SystemExit as e:
            send(codec.encode(("exit", describe(e, exception_names, details=False))))
            os._exit(0)
        except BaseException as e:
            value, error = None, e
        finally:
            if capture:
                try:
                    out = sys.stdout.getvalue()
                except BaseException:
                    out = None
                sys.stdout = saved
        sync = None
        try:
            if codec.encode((args, kwargs), handle_of) != before:  # the call changed its arguments
                sync = [_contents(obj) for obj in table]
        except BaseException:
            sync = None
        if error is None:
            reply(("value", value, sync, out), table)
        else:
            reply(("raise", describe(error, exception_names), sync, out), table, error=error)
        value = error = None


def _contents(obj):
    """A container's current items, as a new object of the type the judge writes back."""
    kind = type(obj)
    if kind is list:
        return list(obj)
    if kind is dict:
        return dict(obj)
    if kind is set:
        return set(obj)
    if kind is bytearray:
        return bytes(obj)
    return None


_OPS = {
    "len": lambda obj, arg: len(obj),
    "iter": lambda obj, arg: list(obj),
    "getitem": lambda obj, arg: obj[arg],
    "contains": lambda obj, arg: arg in obj,
    "str": lambda obj, arg: str(obj),
}


_missing = object()


# --- stdio problems ---------------------------------------------------------------------------------

def make_reporter(fd: int, nonce: bytes):
    """How a stdio program's end leaves the process: flush its prints, say how it ended."""
    write, exit_, out, err = os.write, os._exit, sys.stdout, sys.stderr

    def report(message) -> None:
        for stream in (out, err):
            try:
                stream.flush()
            except BaseException:
                pass
        try:
            data = nonce + codec.encode(message)
        except BaseException:
            data = b""
        try:
            while data:
                data = data[write(fd, data):]
        except OSError:
            pass
        exit_(0)

    return report


def run_stdio(code: str, report, exception_names) -> None:
    exception_names = frozenset(exception_names)
    try:
        compiled = compile(code, ANSWER_FILE, "exec", dont_inherit=True)
    except BaseException as e:
        report(("raise", describe(e, exception_names, details=False)))
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    try:
        exec(compiled, module.__dict__)
    except SystemExit as e:
        status = e.code
        if status is None or (type(status) is int and status == 0):
            report(("ok",))
        report(("exit", describe(e, exception_names, details=False)))
    except BaseException as e:
        report(("raise", describe(e, exception_names, details=False)))
    report(("ok",))
