"""The error taxonomy: what ``error_type``, ``error_class`` and ``error_category`` hold. One place.

An error type is the name of the *built-in* exception class that ended the answer's own code, or
one of the synthetic types below for endings that are not an exception of the answer. A class the
answer (or a library) defines is labelled by its nearest built-in ancestor (``class
ParseError(ValueError)`` is a ``ValueError``; a direct ``Exception`` subclass is ``Exception``) and
its own name goes to ``error_class``: otherwise every name a model invents would become a row of
the error notebook. The set is closed: ``EXCEPTION_TYPES`` plus ``SYNTHETIC_TYPES``. Categories
come from the real class (a subclass of ``SyntaxError`` is ``compile``), never from a name the
answer chose (its own class named ``SyntaxError`` raised at runtime is an ``Exception``, runtime).
Every consumer (notebook, pairs, schedule, evaluation reports) reads these names from here rather
than spelling them again; the sandbox gets ``EXCEPTION_TYPES`` from the host with its settings.
"""

from __future__ import annotations

import builtins

# Synthetic error types: endings the interpreter does not name with an exception of the answer.
WRONG_RESULT = "WrongResult"   # an assertion of the *test* failed: the answer ran, the result was wrong
TIMEOUT = "Timeout"            # wall or CPU limit hit (also when the answer swallows the signal)
EARLY_EXIT = "EarlyExit"       # exit()/sys.exit/os._exit/SystemExit before every test ran; never a pass
CRASH = "Crash"                # killed by a signal: segfault, out-of-memory kill, ...
OUTPUT_LIMIT = "OutputLimit"   # a stdio answer printed more than the cap
NO_CODE = "NoCode"             # nothing to run: empty answer or no code block
# the sandbox failed, not the answer: a signal or a changed limit reached the judge, or the judge
# died before it reported (the answer runs under another uid and cannot do either); never a pass
SANDBOX_ERROR = "SandboxError"

SYNTHETIC_TYPES = (WRONG_RESULT, TIMEOUT, EARLY_EXIT, CRASH, OUTPUT_LIMIT, NO_CODE, SANDBOX_ERROR)

# How the run ended (the ``status`` column).
STATUS_PASSED = "passed"
STATUS_FAILED = "failed"       # an exception (of the answer or of the test) ended it
STATUS_TIMEOUT = "timeout"
STATUS_CRASHED = "crashed"
STATUS_EXITED = "exited"
STATUS_NO_CODE = "no_code"
STATUSES = (STATUS_PASSED, STATUS_FAILED, STATUS_TIMEOUT, STATUS_CRASHED, STATUS_EXITED, STATUS_NO_CODE)

# error_category groups types the way the paper speaks of them (compilation vs runtime errors).
COMPILE, RUNTIME, WRONG, TIME, RESOURCE, EXIT, NOCODE = (
    "compile", "runtime", "wrong_result", "timeout", "resource", "exit", "no_code")
CATEGORIES = (COMPILE, RUNTIME, WRONG, TIME, RESOURCE, EXIT, NOCODE)

# The built-in exception classes, by name: the only exception names an error type can be.
EXCEPTION_TYPES = tuple(sorted(
    name for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException) and not name.startswith("_")))

# Longest error_class / error_message kept (a 3 MB class name is an answer's, not a label).
MAX_CLASS_NAME = 200
MAX_MESSAGE = 8000
MAX_TRACEBACK = 32000

_CATEGORY_OF = {
    WRONG_RESULT: WRONG,
    TIMEOUT: TIME,
    CRASH: RESOURCE,
    OUTPUT_LIMIT: RESOURCE,
    SANDBOX_ERROR: RESOURCE,
    EARLY_EXIT: EXIT,
    NO_CODE: NOCODE,
}

# The types the design names explicitly; tests keep one case per entry.
KNOWN_EXCEPTION_TYPES = (
    "SyntaxError", "IndentationError", "NameError", "TypeError", "ValueError", "IndexError",
    "KeyError", "AttributeError", "ZeroDivisionError", "RecursionError", "MemoryError",
    "ModuleNotFoundError", "AssertionError",
)


def nearest_builtin(cls: type) -> str:
    """The error type of an exception class: the first built-in class in its MRO."""
    for c in cls.__mro__:
        if c.__name__ in EXCEPTION_TYPES and getattr(builtins, c.__name__) is c:
            return c.__name__
    return "BaseException"


def category_of(error_type: str | None) -> str | None:
    """The category of an error type, from the built-in class it names (a subclass of
    ``SyntaxError`` is ``compile``, ``MemoryError`` is ``resource``); any other name is runtime."""
    if error_type is None:
        return None
    if error_type in _CATEGORY_OF:
        return _CATEGORY_OF[error_type]
    cls = getattr(builtins, error_type, None) if error_type in EXCEPTION_TYPES else None
    if cls is not None and issubclass(cls, SyntaxError):
        return COMPILE
    if cls is not None and issubclass(cls, MemoryError):
        return RESOURCE
    return RUNTIME


def status_of(error_type: str | None) -> str:
    """The ``status`` that goes with an error type (``passed`` for None)."""
    if error_type is None:
        return STATUS_PASSED
    return {TIMEOUT: STATUS_TIMEOUT, CRASH: STATUS_CRASHED, SANDBOX_ERROR: STATUS_CRASHED, EARLY_EXIT: STATUS_EXITED,
            NO_CODE: STATUS_NO_CODE}.get(error_type, STATUS_FAILED)
