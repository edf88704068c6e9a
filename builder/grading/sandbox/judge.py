"""The judge: runs a function problem's test in a process of its own and reports the verdict.

Why a process of its own: an answer that shares an interpreter with the code that decides and
reports its verdict can reach that code (audit hooks, a ``flush`` the reporter calls, frame walks,
``sys.modules``, objects whose methods the test runs). Here the answer runs in another process
(``child.serve``) and the judge never runs a line of it:

* ``candidate`` is a ``Remote``: calling it sends the arguments over a socket to the answer's
  process and rebuilds the reply from bytes with ``codec.decode``, which makes only
  None/bool/int/float/complex/str/bytes/bytearray/list/tuple/dict/set/frozenset and the judge's
  own ``AnswerObject`` handles.
* Every other name the test reads that neither the problem nor the test defines (MBPP's ``Pair``,
  MBPP/927's ``root``) is looked up in the answer *when the test reads it*: plain data comes back
  as a fresh copy, any other object as an ``AnswerObject``, a module as the judge's own module of
  that name, an exception class as a stand-in class of the judge's (below).
* An ``AnswerObject`` is equal to itself alone and has no truth value (so an always-equal object
  decides nothing), but the test may call it, read its attributes, call its methods, take its
  ``len``, iterate it, index it, test membership in it and take its ``str``: each of those asks the
  answer and gets plain data or another handle back, just as a plain run would get from the
  object, while every comparison stays in the judge.
* What a call does to its arguments comes back with its result: the answer's process sends the
  new contents of every list, dict, set and bytearray it was given (only when something changed)
  and the judge writes them into the test's own objects, so an answer that sorts in place is
  seen to; a result that *is* an argument, or two references to one object, keep their identity.
* A test that captures stdout (``contextlib.redirect_stdout``) gets what the answer printed
  during each call.
* The answer's exceptions come back as plain data (nearest built-in ancestor, raw class name,
  message, frames, ``args``, attributes, the answer's classes between the two); the judge raises
  an instance of a stand-in class it makes itself, a subclass of that built-in with the answer's
  class names, so ``except ValueError``, ``except ParseError`` (the answer's class, read by the
  test) and ``e.args``/``e.code`` all behave as in a plain run, and it remembers which exceptions
  were the answer's.
* A value too large for the channel (past a quarter of ``--memory-mb``) or for the judge's memory
  ends the test as a ``MemoryError`` (a resource error), never as the answer's bug.
* The problem's own helpers (HumanEval/32's ``poly``, /38's ``encode_cyclic``) come from the
  problem's prompt (its code before ``def <entry_point>``), run here: an answer that redefines
  them changes only its own copy; if that code fails here the test fails, it never falls back to
  the answer's helpers.
* The judge runs under a uid of its own (as root) and is not dumpable: the answer can neither
  signal, ``prlimit``, renice, re-pin nor ptrace it; its verdict is decided and serialised here and
  leaves on a socket only the worker holds. One judge process serves every answer of its worker,
  one at a time, with a fresh namespace and channel per answer.

Covered: every way the answer's code can act on the verdict from inside an interpreter (audit
hooks, stream methods the reporter calls, entry points that are not functions, return values
with behaviour, ``sys.modules``, redefined helpers, frame/traceback/``gc`` walks, ctypes on its
own memory), because none of that interpreter decides anything; forged bytes on its socket
(a malformed message is a ``RuntimeError`` verdict, never a pass); its exit before every test
ran, even when the test swallows it (``EarlyExit``).

Not covered (docs/sandbox.md lists them with the differential test's disagreements): a test that
passes something other than plain data to the answer (a lambda, an object of the test's class)
gets a ``TypeError``; equality, order and truth of the answer's own objects (``==`` between two
of them, ``isinstance`` against its classes); an honest answer that keeps an argument and
changes it in a *later* call; a row without its prompt takes the helpers the test calls from the
answer.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import sys
import types

from . import codec

ANSWER_FILE = "<answer>"
TEST_FILE = "<test>"
PRELUDE_FILE = "<problem>"
MAX_TEXT = 8000
MAX_NAME = 200
MAX_TRACEBACK_FRAMES = 40


class AnswerEnded(BaseException):
    """The answer's process exited (``SystemExit``), died or broke the protocol: no call can be
    answered any more. A BaseException so that ``except Exception`` in a test cannot swallow it;
    the verdict does not depend on it being raised anyway (``Channel.ended``)."""


class ResourceLimit(BaseException):
    """A value was too large for the channel or for the judge's memory: the test ends as a
    ``MemoryError`` whatever it catches (``Channel.resource``)."""


_OPS = {"len": int, "contains": bool, "str": str, "iter": list, "getitem": None}


class Channel:
    """The judge's end of the socket to the answer's process."""

    def __init__(self, fd: int, exception_names: frozenset, cap: int = codec.MAX_MESSAGE):
        self.fd, self.exception_names = fd, exception_names
        self.reader = codec.Reader(fd, cap)
        self.ended = None          # None, or ("exit", info) / ("gone", why) / ("protocol", why)
        self.resource = None       # why a value could not cross, when one could not
        self.errors: dict = {}     # id(exception raised in the test) -> (exception, info)
        self.handles: dict = {}    # handle id -> AnswerObject (one per object of the answer: identity holds)
        self.standins: dict = {}   # the answer's exception class id -> the judge's stand-in class

    # --- the wire ----------------------------------------------------------------------------------

    def _resolve(self, hid: int, name: str):
        obj = self.handles.get(hid)
        if obj is None:
            obj = self.handles[hid] = AnswerObject(hid, name, self)
        return obj

    def receive(self, table: list | None = None):
        """The next reply, checked for shape; sets ``ended`` and returns None when there is none.
        ``table``: the containers of the request, which the reply may refer to."""
        try:
            data = self.reader.recv()
        except codec.CodecError as e:
            self.ended = ("protocol", str(e))
            return None
        except OSError as e:
            data, why = None, str(e)
        else:
            why = "it closed its end of the channel"
        if data is None:
            self.ended = ("gone", why)
            return None
        try:
            msg = codec.decode(data, self._resolve, list(table or ()))
        except codec.CodecError as e:
            if "MemoryError" in str(e):
                self._too_large(f"the judge ran out of memory reading a value of {len(data)} bytes")
            self.ended = ("protocol", str(e))
            return None
        except MemoryError:
            self._too_large(f"the judge ran out of memory reading a value of {len(data)} bytes")
        if type(msg) is not tuple or not msg:
            msg = ()
        kind = msg[0] if msg else None
        if kind == "ready" and len(msg) == 1:
            return msg
        if kind == "value" and len(msg) == 4 and (msg[3] is None or type(msg[3]) is str):
            return msg
        if kind == "name" and len(msg) == 3 and msg[1] in ("missing", "module", "excclass", "value"):
            return msg
        if kind == "limit" and len(msg) == 2 and type(msg[1]) is str:
            self._too_large(msg[1])
        if kind in ("raise", "exit") and len(msg) in (2, 4):
            info = check_info(msg[1], self.exception_names)
            if info is not None:
                if kind == "exit" or info[0] == "SystemExit":  # however it was sent, an exit ends the answer
                    self.ended = ("exit", info)
                    return ("exit", info)
                if len(msg) == 2:  # the module did not load: nothing was called
                    return ("raise", info, None, None)
                if msg[3] is None or type(msg[3]) is str:
                    return ("raise", info, msg[2], msg[3])
        self.ended = ("protocol", "a reply of an unknown shape")
        return None

    def _too_large(self, why: str):
        self.resource = why
        raise ResourceLimit(why)

    def request(self, message: tuple, what: str):
        """Send ``message``; (reply, the request's containers). Raises ``AnswerEnded`` when the
        answer cannot reply any more, ``TypeError`` when the test sent something not plain."""
        if self.ended is not None:
            raise AnswerEnded(self.ended[0])
        table: list = []
        try:
            payload = codec.encode(message, None, table)
        except codec.CodecError as e:
            raise TypeError(f"the test passed {what} something that is not plain data: {e}") from None
        if len(payload) > self.reader.cap:
            self._too_large(f"the test's arguments to {what} took {len(payload)} bytes; the channel carries "
                            f"at most {self.reader.cap}")
        try:
            codec.send(self.fd, payload)
        except OSError as e:
            self.ended = ("gone", str(e))
            raise AnswerEnded("gone") from None
        msg = self.receive(table)
        if msg is None or msg[0] == "exit":
            raise AnswerEnded(self.ended[0])
        if msg[0] == "ready":
            self.ended = ("protocol", "'ready' twice")
            raise AnswerEnded("protocol")
        return msg, table

    # --- what the test does with the answer ----------------------------------------------------------

    def call(self, target, args: tuple, kwargs: dict):
        """Call the answer's ``target`` (a name, an ``AnswerObject``, or (object, method name))."""
        capture = sys.stdout is not sys.__stdout__  # the test redirected stdout: it wants the prints
        name = target if type(target) is str else getattr(target, "type_name", None) or "a method"
        msg, table = self.request(("call", target, capture, args, kwargs), f"{name}()")
        if msg[0] not in ("value", "raise"):
            return self._protocol("a call answered with " + repr(msg[0]))
        self._write_back(table, msg[2])
        if msg[3]:
            sys.stdout.write(msg[3])
        if msg[0] == "value":
            return msg[1]
        raise self.exception(msg[1])

    def lookup(self, name: str):
        """(kind, value) of the answer's global ``name``."""
        msg, _ = self.request(("get", name), name)
        return self._named(msg)

    def getattr(self, obj: AnswerObject, attr: str):
        msg, _ = self.request(("getattr", obj, attr), attr)
        kind, value = self._named(msg)
        if kind == "missing":
            raise AttributeError(f"{obj.type_name!r} object has no attribute {attr!r}")
        return self._bind(kind, value)

    def op(self, obj: AnswerObject, what: str, arg=None):
        """``len``, ``iter``, ``getitem``, ``contains`` or ``str`` of an object of the answer: the
        answer computes it, the judge checks that the result has the type Python requires."""
        msg, _ = self.request(("op", obj, what, arg), what)
        if msg[0] == "raise":
            raise self.exception(msg[1])
        if msg[0] != "value":
            return self._protocol(f"{what} answered with {msg[0]!r}")
        want = _OPS[what]
        if want is not None and type(msg[1]) is not want:
            raise TypeError(f"{what}() of an object of the answer's class {obj.type_name!r} gave "
                            f"{type(msg[1]).__name__}, not {want.__name__}")
        return msg[1]

    def _named(self, msg):
        if msg[0] == "raise":
            raise self.exception(msg[1])
        if msg[0] != "name":
            return self._protocol(f"a lookup answered with {msg[0]!r}")
        return msg[1], msg[2]

    def _bind(self, kind: str, value):
        """What the test gets for a name or attribute of the answer of this kind."""
        if kind == "module":
            if type(value) is not str or not all(p.isidentifier() for p in value.split(".")):
                return self._protocol("a module name that is not one")
            try:
                return importlib.import_module(value)  # the judge's own copy, never the answer's
            except BaseException as e:  # noqa: BLE001 - an import error is the test's NameError-like failure
                raise ImportError(f"the answer's module {value!r} cannot be imported by the judge: {e}") from None
        if kind == "excclass":
            return self.standin(value)
        return value

    def _protocol(self, why: str):
        self.ended = ("protocol", why)
        raise AnswerEnded("protocol")

    def _write_back(self, table: list, sync) -> None:
        """Put the new contents of the call's argument containers into the test's own objects."""
        if sync is None:
            return
        if type(sync) is not list or len(sync) != len(table):
            self._protocol("write-back of another shape than the call's arguments")
        for obj, new in zip(table, sync):
            if new is None:
                continue
            kind = type(obj)
            if (kind is list and type(new) is list) or (kind is bytearray and type(new) is bytes):
                obj[:] = new
            elif kind in (dict, set) and type(new) is kind:
                obj.clear()
                obj.update(new)
            else:
                self._protocol("write-back of another type than the argument")

    # --- the answer's exceptions, as the judge's ---------------------------------------------------------

    def standin(self, chain) -> type:
        """The judge's class for the answer's exception class ``chain`` describes: (built-in
        ancestor, [(class id, name) from the class up to that ancestor])."""
        if type(chain) is not tuple or len(chain) != 2:
            return self._protocol("an exception class of an unknown shape")
        ancestor, classes = chain
        parent = getattr(builtins, ancestor, None) if ancestor in self.exception_names else None
        if not (isinstance(parent, type) and issubclass(parent, BaseException)):
            parent = Exception
        for cid, name in reversed(classes):
            cls = self.standins.get(cid)
            if cls is None:
                try:
                    cls = type(name, (parent,), {"__module__": "__answer__", "__qualname__": name,
                                                 "__str__": _answer_str})
                except TypeError:  # a built-in that cannot be subclassed: the ancestor stands in
                    cls = parent
                self.standins[cid] = cls
            parent = cls
        return parent

    def exception(self, info) -> BaseException:
        """A fresh exception of the judge's for the answer's ``info``, remembered as the answer's."""
        exc = rebuild(info, self.standin((info[0], info[7])) if info[7] else None)
        self.errors[id(exc)] = (exc, info)
        return exc


def _answer_str(self) -> str:
    text = self.__dict__.get("_answer_str")
    return text if type(text) is str else BaseException.__str__(self)


class Remote:
    """A function of the answer, by name, as the test sees it (``candidate``)."""

    __slots__ = ("__name__", "__qualname__", "_channel")

    def __init__(self, channel: Channel, name: str):
        self._channel = channel
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args, **kwargs):
        return self._channel.call(self.__name__, args, kwargs)

    def __repr__(self):
        return f"<the answer's {self.__name__}>"


class AnswerObject(codec.Handle):
    """An object the answer kept (see ``codec.Handle``: equal to itself alone, no truth value).
    What the test may do with it besides is computed by the answer and comes back as plain data
    or another handle: call it, read an attribute or call a method, ``len``, iterate, index,
    ``in``, ``str``."""

    __slots__ = ("_channel",)

    def __init__(self, id: int, type_name: str, channel: Channel):
        super().__init__(id, type_name)
        self._channel = channel

    def __call__(self, *args, **kwargs):
        return self._channel.call(self, args, kwargs)

    def __getattr__(self, attr: str):
        if attr.startswith("__"):  # Python's own probes (copy, numpy, pickle): not the answer's to answer
            raise AttributeError(attr)
        return self._channel.getattr(self, attr)

    def __len__(self):
        return self._channel.op(self, "len")

    def __iter__(self):
        return iter(self._channel.op(self, "iter"))

    def __getitem__(self, key):
        return self._channel.op(self, "getitem", key)

    def __contains__(self, item):
        return self._channel.op(self, "contains", item)

    def __str__(self):
        return self._channel.op(self, "str")


class Names(dict):
    """The test's builtins: Python's, then, for a name neither the problem, the test nor Python
    defines, the answer's (looked up each time the test reads it: the answer's global may change
    between two calls). A module the judge already imported is its own."""

    def __init__(self, channel: Channel):
        super().__init__(builtins.__dict__)
        self.channel = channel

    def __missing__(self, name: str):
        module = sys.modules.get(name)
        if isinstance(module, types.ModuleType):
            return module
        kind, value = self.channel.lookup(name)
        if kind == "missing":
            raise KeyError(name)  # Python makes it the NameError a plain run gives
        value = self.channel._bind(kind, value)
        if kind in ("module", "excclass"):
            self[name] = value  # these do not change: one round trip
        return value


def check_info(info, exception_names):
    """An exception description from the answer, checked and trimmed; None if malformed."""
    if type(info) is not tuple or len(info) != 8:
        return None
    ancestor, raw, message, frames, syntax, args, attrs, chain = info
    if type(ancestor) is not str or type(raw) is not str or type(message) is not str or type(frames) is not list:
        return None
    if type(args) is not tuple or type(attrs) is not dict or not all(type(k) is str for k in attrs):
        return None
    if type(chain) is not list or not all(type(c) is tuple and len(c) == 2 and type(c[0]) is int
                                          and type(c[1]) is str for c in chain):
        return None
    if ancestor not in exception_names or not isinstance(getattr(builtins, ancestor, None), type):
        ancestor = "Exception"
    clean = []
    for f in frames[:2 * MAX_TRACEBACK_FRAMES]:
        if type(f) is not tuple or len(f) != 3 or type(f[0]) is not str or type(f[1]) is not int or type(f[2]) is not str:
            return None
        clean.append((f[0][:MAX_NAME], f[1], f[2][:MAX_NAME]))
    if syntax is not None:
        if (type(syntax) is not tuple or len(syntax) != 4
                or not all(v is None or type(v) is int for v in syntax[:2])
                or not (syntax[2] is None or type(syntax[2]) is str) or type(syntax[3]) is not str):
            return None
        syntax = (syntax[0], syntax[1], syntax[2][:MAX_TEXT] if syntax[2] else None, syntax[3][:MAX_TEXT])
    chain = [(cid, name[:MAX_NAME]) for cid, name in chain[:MAX_TRACEBACK_FRAMES]]
    return (ancestor, raw[:MAX_NAME], message[:MAX_TEXT], clean, syntax, args, attrs, chain)


def rebuild(info, standin: type | None = None):
    """A fresh exception of the judge's carrying the answer's ``args``, attributes and message:
    an instance of ``standin`` (for the answer's own classes) or of the built-in class ``info``
    names."""
    cls = standin or getattr(builtins, info[0])
    args, attrs, message = info[5], info[6], info[2]
    exc = None
    for c in cls.__mro__:
        if issubclass(c, BaseException):
            for call_args in (args, (message,)):
                try:
                    exc = c(*call_args)
                    break
                except BaseException:  # noqa: BLE001 - e.g. UnicodeDecodeError wants five arguments
                    continue
            if exc is not None:
                break
    if exc is None:
        exc = Exception(message)
    for key, value in attrs.items():
        try:
            setattr(exc, key, value)
        except (AttributeError, TypeError):
            pass
    if standin is not None and type(exc) is standin:
        try:
            if BaseException.__str__(exc) != message:
                exc.__dict__["_answer_str"] = message  # the answer's own __str__, as text
        except BaseException:  # noqa: BLE001 - a str() of the answer's args that fails: keep the message
            exc.__dict__["_answer_str"] = message
    return exc


# --- running the test ---------------------------------------------------------------------------------

def evaluate(code: str, test: str, test_code, prelude_code, entry_point: str, fd: int, names: dict,
             exception_names, cap: int = codec.MAX_MESSAGE) -> dict:
    """Wait for the answer's module to load, run the test against it over ``fd``; the report.

    Called once per answer in a long-lived judge process: everything of this run lives in this
    call's locals (a fresh namespace, a fresh channel), so nothing of one answer stays for the
    next but what the test itself leaves in modules it imports."""
    channel = Channel(fd, frozenset(exception_names), cap)
    sources = {ANSWER_FILE: code, TEST_FILE: test}
    first = channel.receive()
    if first is not None and first[0] == "raise":  # the answer's module did not load
        return {"error": answer_error(first[1], [], sources)}
    if first is not None and first[0] != "ready":
        channel.ended = channel.ended or ("protocol", "a value before 'ready'")
    if channel.ended is not None:
        return _ended_verdict(channel, sources, names)
    try:
        if test_code is None:
            test_code = compile(test, TEST_FILE, "exec", dont_inherit=True)
    except BaseException as e:  # the problem's test does not compile: not the answer's fault, but no pass
        return {"error": _own_error(e, sources, None)}
    namespace = {"__name__": "__test__", "__builtins__": Names(channel)}
    try:
        if prelude_code is not None:
            try:
                exec(prelude_code, namespace)
            except BaseException as e:  # never go on without the problem's helpers: the answer's would stand in
                if channel.resource is not None:
                    return {"error": _resource_error(channel)}
                return {"error": _own_error(e, sources, _test_frames(e))}
        candidate = Remote(channel, entry_point)
        namespace[entry_point] = candidate
        try:
            exec(test_code, namespace)
            check = namespace.get("check")
            if check is not None:  # otherwise the test's own top-level asserts were the test
                check(candidate)
        except BaseException as e:
            if isinstance(e, MemoryError) and id(e) not in channel.errors:  # the judge's own memory
                channel.resource = channel.resource or "the judge ran out of memory holding the test's values"
            if channel.resource is not None:
                return {"error": _resource_error(channel)}
            if channel.ended is not None:
                return _ended_verdict(channel, sources, names)
            return {"error": _verdict_error(e, channel, sources, names)}
    finally:
        namespace.clear()  # the test's objects (and any cycles through them) go now, not at the next run
    if channel.resource is not None:  # even when the test swallowed it
        return {"error": _resource_error(channel)}
    if channel.ended is not None:  # the test swallowed the answer's exit: still not a pass
        return _ended_verdict(channel, sources, names)
    return {"ok": True}


def _resource_error(channel: Channel) -> dict:
    """A value that could not cross: a resource error (``MemoryError``), not the answer's bug."""
    return {"type": "MemoryError", "error_class": None, "line": None, "traceback": None,
            "message": f"a value too large for the sandbox: {channel.resource}"[:MAX_TEXT]}


def _ended_verdict(channel: Channel, sources: dict, names: dict) -> dict:
    kind, detail = channel.ended
    if kind == "exit":
        return {"error": exit_error(detail, sources, names)}
    if kind == "gone":
        return {"gone": True}
    return {"error": {"type": "RuntimeError", "error_class": None, "traceback": None, "line": None,
                      "message": f"the answer's process broke the call protocol: {detail}"[:MAX_TEXT]}}


def exit_error(info, sources: dict, names: dict) -> dict:
    """``SystemExit`` (or a subclass) ended the answer before every test ran: ``EarlyExit``."""
    fields = answer_error(info, [], sources)
    message = f"{info[1]}({info[2]}) before every test ran"
    fields.update(type=names["early_exit"], error_class=None, message=message[:MAX_TEXT])
    return fields


def _verdict_error(e: BaseException, channel: Channel, sources: dict, names: dict) -> dict:
    test_frames = _test_frames(e)
    mine = channel.errors.get(id(e))
    if mine is not None and mine[0] is e:
        return answer_error(mine[1], test_frames, sources)
    if isinstance(e, AssertionError) and test_frames and test_frames[-1][0] == TEST_FILE:
        failed = _assertion_source(sources[TEST_FILE], test_frames[-1][1])
        message = _message(e) or f"assertion failed: {failed}"
        return {"type": names["wrong_result"], "error_class": None, "message": message[:MAX_TEXT],
                "traceback": _traceback(test_frames, sources, f"AssertionError: {message}"),
                "line": None, "failed_test": failed}
    return _own_error(e, sources, test_frames)


def _own_error(e: BaseException, sources: dict, test_frames) -> dict:
    """An exception of the test itself (e.g. a ``TypeError`` from using an answer's handle)."""
    cls = type(e)
    ancestor = next((c.__name__ for c in cls.__mro__ if getattr(builtins, c.__name__, None) is c), "BaseException")
    message = _message(e)
    raw = cls.__name__[:MAX_NAME]
    frames = test_frames or []
    if isinstance(e, SyntaxError) and not frames:
        return {"type": ancestor, "error_class": raw, "message": message, "line": None,
                "traceback": f"{raw}: {message} (in the problem's test)"}
    return {"type": ancestor, "error_class": raw, "message": message, "line": None,
            "traceback": _traceback(frames, sources, f"{raw}: {message}" if message else raw)}


def _message(e: BaseException) -> str:
    try:
        return str(e)[:MAX_TEXT]
    except BaseException:
        return ""


def answer_error(info, test_frames, sources: dict) -> dict:
    """The verdict's error fields for an exception of the answer (``info`` already checked)."""
    ancestor, raw, message, frames, syntax = info[:5]
    line = None
    for fname, lineno, _ in frames:
        if fname == ANSWER_FILE:
            line = lineno
    if syntax is not None and not frames:  # the answer did not compile
        lineno, offset, text, msg = syntax
        lines = [f'  File "{ANSWER_FILE}", line {lineno}']
        text = text if text is not None else _source_line(sources, ANSWER_FILE, lineno)
        if text:
            stripped = text.rstrip("\n")
            indent = len(stripped) - len(stripped.lstrip())
            lines.append(f"    {stripped.strip()}")
            if offset is not None and offset >= 1:
                lines.append("    " + " " * min(max(0, offset - 1 - indent), MAX_TEXT) + "^")
        lines.append(f"{raw}: {msg}")
        return {"type": ancestor, "error_class": raw, "message": msg, "line": lineno,
                "traceback": "\n".join(lines)[:4 * MAX_TEXT]}
    tail = f"{raw}: {message}" if message else raw
    return {"type": ancestor, "error_class": raw, "message": message, "line": line,
            "traceback": _traceback(list(test_frames) + list(frames), sources, tail)}


def _test_frames(e: BaseException):
    out = []
    tb = e.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == TEST_FILE:
            out.append((TEST_FILE, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return out


def _source_line(sources: dict, filename: str, lineno) -> str:
    lines = sources.get(filename, "").splitlines()
    if lineno and 1 <= lineno <= len(lines):
        return lines[lineno - 1].strip()[:MAX_TEXT]
    return ""


def _format_frames(frames, sources) -> list[str]:
    lines, i = [], 0
    while i < len(frames):  # collapse runs of one frame (recursion) the way Python does
        j = i
        while j + 1 < len(frames) and frames[j + 1] == frames[i]:
            j += 1
        for _ in range(min(j - i + 1, 3)):
            fname, lineno, func = frames[i]
            lines.append(f'  File "{fname}", line {lineno}, in {func}')
            src = _source_line(sources, fname, lineno)
            if src:
                lines.append(f"    {src}")
        if j - i + 1 > 3:
            lines.append(f"  [Previous line repeated {j - i + 1 - 3} more times]")
        i = j + 1
    if len(lines) > 2 * MAX_TRACEBACK_FRAMES:
        lines = lines[:MAX_TRACEBACK_FRAMES] + ["  ..."] + lines[-MAX_TRACEBACK_FRAMES:]
    return lines


def _traceback(frames, sources, tail: str) -> str:
    body = _format_frames(frames, sources)
    head = ["Traceback (most recent call last):"] if body else []
    return "\n".join(head + body + [tail[:MAX_TEXT]])[:4 * MAX_TEXT]


def _assertion_source(test: str, lineno: int) -> str:
    """The whole ``assert`` statement of the test at ``lineno`` (asserts span lines)."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _source_line({TEST_FILE: test}, TEST_FILE, lineno)
    best = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and node.lineno <= lineno <= (node.end_lineno or node.lineno):
            if best is None or node.lineno >= best.lineno:
                best = node
    if best is None:
        return _source_line({TEST_FILE: test}, TEST_FILE, lineno)
    return (ast.get_source_segment(test, best) or "")[:MAX_TEXT]


@functools.lru_cache(maxsize=1024)  # a problem's prompt repeats for each of its answers
def prelude_of(prompt: str | None, entry_point: str) -> str | None:
    """The problem's own code before ``def <entry_point>`` in its prompt (its imports and helper
    functions), when that part is Python; else None."""
    if not prompt:
        return None
    marker = f"def {entry_point}("
    cut = None
    pos = 0
    while True:
        i = prompt.find(marker, pos)
        if i < 0:
            break
        if i == 0 or prompt[i - 1] == "\n":
            cut = i
            break
        pos = i + 1
    if not cut:
        return None
    head = prompt[:cut]
    try:
        tree = ast.parse(head)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    stubs = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
             and all(_is_stub(stmt) for stmt in node.body)]
    if stubs:  # a signature the answer is to fill in: the problem does not define it, the answer does
        tree.body = [node for node in tree.body if node not in stubs]
        head = ast.unparse(tree)
    return head if head.strip() else None


def _is_stub(stmt) -> bool:
    return isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                                          and (isinstance(stmt.value.value, str) or stmt.value.value is Ellipsis))


__all__ = ["AnswerEnded", "Channel", "Remote", "answer_error", "check_info", "evaluate", "exit_error", "prelude_of"]
