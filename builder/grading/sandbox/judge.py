"""The judge: runs a function problem's test in a process of its own and reports the verdict.

Why a process of its own: an answer that shares an interpreter with the code that decides and
reports its verdict can reach that code (audit hooks, a ``flush`` the reporter calls, frame walks,
``sys.modules``, objects whose methods the test runs). Here the answer runs in another process
(``child.serve``) and the judge never runs a line of it:

* ``candidate`` (and every other name the test uses that neither the problem nor the test
  defines, such as MBPP's ``Pair``) is a ``Remote``: calling it sends the arguments over a socket
  to the answer's process and rebuilds the reply from bytes with ``codec.decode``, which makes
  only None/bool/int/float/complex/str/bytes/list/tuple/dict/set/frozenset and the judge's own
  opaque ``Handle``. An object that is not plain data stays in the answer's process; the test
  holds a handle that is equal to itself alone and has no truth value.
* The answer's exceptions come back as plain strings (nearest built-in ancestor, raw class name,
  message, frames); the judge raises a fresh instance of that built-in class in the test, so a
  test that expects ``ValueError`` still sees one, and remembers which exceptions were the
  answer's.
* The problem's own helpers (HumanEval/32's ``poly``, /38's ``encode_cyclic``) come from the
  problem's prompt (its code before ``def <entry_point>``), run here: an answer that redefines
  them changes only its own copy.
* The judge is not dumpable (so the answer's uid cannot ptrace it or open its /proc files), and
  its verdict is decided and serialised here and leaves on a socket only the worker holds. One
  judge process serves every answer of its worker, one at a time (a fork per answer costs more
  than the test), with a fresh namespace and channel per answer; the answer can kill or stop it
  (same uid): that is a ``Crash`` or a ``Timeout``, never a pass, and the worker starts a new one.

Covered: every way the answer's code can act on the verdict from inside an interpreter (audit
hooks, stream methods the reporter calls, entry points that are not functions, return values
with behaviour, ``sys.modules``, redefined helpers, frame/traceback/``gc`` walks, ctypes on its
own memory), because none of that interpreter decides anything; forged bytes on its socket
(a malformed message is a ``RuntimeError`` verdict, never a pass); its exit before every test
ran, even when the test swallows it (``EarlyExit``).

Not covered: a test that passes something other than plain data to the answer (a lambda, an
object of the test's class) gets a ``TypeError``; an honest answer whose value is not plain data
(a generator, ``Decimal``, a numpy array) fails a test that compares, iterates or reads it where
Python would have accepted it; a row without its prompt takes the helpers the test calls from the
answer; the judge shares the answer's uid, so the answer can kill or stop it (``Crash`` or
``Timeout``, never a pass).
"""

from __future__ import annotations

import ast
import builtins
import functools
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


class Channel:
    """The judge's end of the socket to the answer's process."""

    def __init__(self, fd: int, exception_names: frozenset):
        self.fd, self.exception_names = fd, exception_names
        self.reader = codec.Reader(fd)
        self.ended = None          # None, or ("exit", info) / ("gone", why) / ("protocol", why)
        self.errors: dict = {}     # id(exception raised in the test) -> (exception, info)

    def receive(self):
        """The next reply, checked for shape; sets ``ended`` and returns None when there is none."""
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
            msg = codec.decode(data)
        except codec.CodecError as e:
            self.ended = ("protocol", str(e))
            return None
        if type(msg) is tuple and msg and msg[0] == "ready" and len(msg) == 1:
            return msg
        if type(msg) is tuple and len(msg) == 2 and msg[0] == "value":
            return msg
        if type(msg) is tuple and len(msg) == 2 and msg[0] in ("raise", "exit"):
            info = check_info(msg[1], self.exception_names)
            if info is not None:
                if msg[0] == "exit" or info[0] == "SystemExit":  # however it was sent, an exit ends the answer
                    self.ended = ("exit", info)
                    return ("exit", info)
                return (msg[0], info)
        self.ended = ("protocol", "a reply of an unknown shape")
        return None

    def call(self, name: str, args: tuple, kwargs: dict):
        if self.ended is not None:
            raise AnswerEnded(self.ended[0])
        try:
            payload = codec.encode(("call", name, args, kwargs))
        except codec.CodecError as e:
            raise TypeError(f"the test passed {name}() something that is not plain data: {e}") from None
        try:
            codec.send(self.fd, payload)
        except OSError as e:
            self.ended = ("gone", str(e))
            raise AnswerEnded("gone") from None
        msg = self.receive()
        if msg is None or msg[0] == "exit":
            raise AnswerEnded(self.ended[0])
        if msg[0] == "value":
            return msg[1]
        if msg[0] == "ready":
            self.ended = ("protocol", "'ready' twice")
            raise AnswerEnded("protocol")
        info = msg[1]
        exc = rebuild(info)
        self.errors[id(exc)] = (exc, info)
        raise exc


class Remote:
    """A function of the answer, as the test sees it."""

    __slots__ = ("_channel", "__name__", "__qualname__")

    def __init__(self, channel: Channel, name: str):
        self._channel = channel
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args, **kwargs):
        return self._channel.call(self.__name__, args, kwargs)

    def __repr__(self):
        return f"<the answer's {self.__name__}>"


def check_info(info, exception_names):
    """An exception description from the answer, checked and trimmed; None if malformed."""
    if type(info) is not tuple or len(info) != 5:
        return None
    ancestor, raw, message, frames, syntax = info
    if type(ancestor) is not str or type(raw) is not str or type(message) is not str or type(frames) is not list:
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
    return (ancestor, raw[:MAX_NAME], message[:MAX_TEXT], clean, syntax)


def rebuild(info):
    """A fresh instance of the built-in class ``info`` names, carrying the answer's message."""
    cls = getattr(builtins, info[0])
    for c in cls.__mro__:
        if issubclass(c, BaseException):
            try:
                return c(info[2])
            except BaseException:  # e.g. UnicodeDecodeError wants five arguments
                continue
    return Exception(info[2])


# --- running the test ---------------------------------------------------------------------------------

def evaluate(code: str, test: str, test_code, prelude_code, entry_point: str, fd: int, names: dict,
             exception_names) -> dict:
    """Wait for the answer's module to load, run the test against it over ``fd``; the report.

    Called once per answer in a long-lived judge process: everything of this run lives in this
    call's locals (a fresh namespace, a fresh channel), so nothing of one answer stays for the
    next but what the test itself leaves in modules it imports."""
    channel = Channel(fd, frozenset(exception_names))
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
    namespace = {"__name__": "__test__", "__builtins__": builtins}
    if prelude_code is not None:
        try:
            exec(prelude_code, namespace)
        except BaseException as e:  # never go on without the problem's helpers: the answer's would stand in
            return {"error": _own_error(e, sources, _test_frames(e))}
    candidate = Remote(channel, entry_point)
    for name in _global_names(test_code):
        if name in namespace or hasattr(builtins, name) or not name.isidentifier() or name.startswith("__"):
            continue
        module = sys.modules.get(name)
        # a test leaning on the prompt's `import math` gets the judge's own module, never the answer's
        namespace[name] = module if isinstance(module, types.ModuleType) else Remote(channel, name)
    namespace[entry_point] = candidate
    try:
        exec(test_code, namespace)
        check = namespace.get("check")
        if check is not None:  # otherwise the test's own top-level asserts were the test
            check(candidate)
    except BaseException as e:
        if channel.ended is not None:
            return _ended_verdict(channel, sources, names)
        return {"error": _verdict_error(e, channel, sources, names)}
    finally:
        namespace.clear()  # the test's objects (and any cycles through them) go now, not at the next run
    if channel.ended is not None:  # the test swallowed the answer's exit: still not a pass
        return _ended_verdict(channel, sources, names)
    return {"ok": True}


def _global_names(code) -> list[str]:
    """Every name the test's code objects mention (a superset of the globals it reads)."""
    names, todo = [], [code]
    while todo:
        c = todo.pop()
        names.extend(c.co_names)
        todo.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    return names


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
    ancestor, raw, message, frames, syntax = info
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
