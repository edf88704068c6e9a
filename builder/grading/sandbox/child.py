"""The answer's side of the sandbox: the process that runs an answer's code, and nothing else.

Why it holds nothing worth forging: this process never sees the problem's test, never decides a
verdict and never reports one. It is forked from the worker's *zygote* (a copy of the worker made
before any job arrived, so no test or expected output was ever in its memory), and it talks only
through one socket to the judge (``judge``), in the plain-data format of ``codec``. Whatever the
answer does to this interpreter (audit hooks, a ``flush`` on ``sys.stdout``, patched builtins or
``sys.modules``, frame or ``gc`` walks, ctypes) changes only the bytes it sends; the judge rebuilds
values from those bytes by itself.

Function problems (``serve``): compile and run the answer's module, say ``ready`` (or how it
failed), then answer ``call`` messages: look the name up in the answer's globals, call it, and
send back the value (plain data where it is plain data, a handle for anything else) or the
exception as plain strings: nearest built-in ancestor, raw class name, message, frames.

Stdio problems (``run_stdio``): the program runs as ``__main__``; its stdout is what is judged,
and that is compared by the host, outside the sandbox. The short report it leaves on its pipe
(how it ended) is decoded with the same codec and can only make its own verdict worse.
"""

from __future__ import annotations

import builtins
import gc
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
        except Exception:  # numpy may be absent; the rest is stdlib
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


def describe(exc, exception_names) -> tuple:
    """(ancestor, raw class name, message, frames, syntax) with only str/int/None/tuple/list in it.
    ``frames``: (file, line, function) of the answer's own code, outermost first; ``syntax``:
    (line, offset, text, msg) for a SyntaxError, else None."""
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
    return (nearest_builtin(cls, exception_names), raw, message, frames, syntax)


def _int_or_none(v):
    return v if type(v) is int else None


# --- function problems ------------------------------------------------------------------------------

_PLAIN_BASES = (
    (int, int.__index__), (float, float.__float__), (complex, lambda v: complex(v.real, v.imag)),
    (str, str.__str__), (bytes, lambda v: bytes.__getitem__(v, slice(None))),
    (tuple, lambda v: tuple.__getitem__(v, slice(None))), (list, lambda v: list.__getitem__(v, slice(None))),
    (dict, dict.copy), (frozenset, frozenset.copy), (set, set.copy),
)


def serve(code: str, fd: int, exception_names) -> None:
    """Run the answer's module, then answer the judge's calls until the judge hangs up."""
    exception_names = frozenset(exception_names)

    def reply(message) -> None:
        send(codec.encode(message))

    def send(payload: bytes) -> None:
        # the answer's prints reach the worker before the judge can end the run on this reply
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        codec.send(fd, payload)

    try:
        compiled = compile(code, ANSWER_FILE, "exec", dont_inherit=True)
    except BaseException as e:
        reply(("raise", describe(e, exception_names)))
        os._exit(0)
    module = types.ModuleType("__answer__")  # never "__main__": `if __name__ == "__main__":` demos stay off
    namespace = module.__dict__
    namespace["__builtins__"] = builtins
    sys.modules["__answer__"] = module
    try:
        exec(compiled, namespace)
    except SystemExit as e:
        reply(("exit", describe(e, exception_names)))
        os._exit(0)
    except BaseException as e:
        reply(("raise", describe(e, exception_names)))
        os._exit(0)
    reply(("ready",))

    kept: list = []  # objects the judge holds handles to

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
        kept.append(obj)
        try:
            name = str(_name_of(cls))[:MAX_NAME]
        except BaseException:
            name = "?"
        return (len(kept) - 1, name)

    def resolve(hid, name):
        if 0 <= hid < len(kept):
            return kept[hid]
        raise codec.CodecError(f"no object #{hid}")

    reader = codec.Reader(fd)
    while True:
        data = reader.recv()
        if data is None:
            os._exit(0)
        _, name, args, kwargs = codec.decode(data, resolve)
        fn = namespace.get(name, _missing)
        if fn is _missing:
            reply(("raise", describe(NameError(f"name {name!r} is not defined"), exception_names)))
            continue
        try:
            value = fn(*args, **kwargs)
        except SystemExit as e:
            reply(("exit", describe(e, exception_names)))
            os._exit(0)
        except BaseException as e:
            reply(("raise", describe(e, exception_names)))
            continue
        try:
            payload = codec.encode(("value", value), handle_of)
        except BaseException as e:  # nested too deeply, a value that cannot be read
            payload = codec.encode(("raise", describe(e, exception_names)))
        value = None
        send(payload)


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
        report(("raise", describe(e, exception_names)))
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    try:
        exec(compiled, module.__dict__)
    except SystemExit as e:
        status = e.code
        if status is None or (type(status) is int and status == 0):
            report(("ok",))
        report(("exit", describe(e, exception_names)))
    except BaseException as e:
        report(("raise", describe(e, exception_names)))
    report(("ok",))
