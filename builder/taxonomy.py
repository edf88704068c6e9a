"""The error taxonomy: what ``error_type`` and ``error_category`` hold. One place for it.

An error type is the name of the exception class that ended the answer's own code (an open set:
``NameError``, ``TypeError``, any user-defined class...), or one of the synthetic types below for
endings that are not an exception of the answer. Every consumer (notebook, pairs, schedule,
evaluation reports) reads these names from here rather than spelling them again.
"""

from __future__ import annotations

# Synthetic error types: endings the interpreter does not name with an exception of the answer.
WRONG_RESULT = "WrongResult"   # an assertion of the *test* failed: the answer ran, the result was wrong
TIMEOUT = "Timeout"            # wall or CPU limit hit (also when the answer swallows the signal)
EARLY_EXIT = "EarlyExit"       # exit()/sys.exit/os._exit/SystemExit before every test ran; never a pass
CRASH = "Crash"                # killed by a signal: segfault, out-of-memory kill, ...
OUTPUT_LIMIT = "OutputLimit"   # a stdio answer printed more than the cap
NO_CODE = "NoCode"             # nothing to run: empty answer or no code block

SYNTHETIC_TYPES = (WRONG_RESULT, TIMEOUT, EARLY_EXIT, CRASH, OUTPUT_LIMIT, NO_CODE)

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

_CATEGORY_OF = {
    "SyntaxError": COMPILE,
    "IndentationError": COMPILE,
    "TabError": COMPILE,
    WRONG_RESULT: WRONG,
    TIMEOUT: TIME,
    "MemoryError": RESOURCE,
    CRASH: RESOURCE,
    OUTPUT_LIMIT: RESOURCE,
    EARLY_EXIT: EXIT,
    NO_CODE: NOCODE,
}

# The types the design names explicitly; tests keep one case per entry.
KNOWN_EXCEPTION_TYPES = (
    "SyntaxError", "IndentationError", "NameError", "TypeError", "ValueError", "IndexError",
    "KeyError", "AttributeError", "ZeroDivisionError", "RecursionError", "MemoryError",
    "ModuleNotFoundError", "AssertionError",
)


def category_of(error_type: str | None) -> str | None:
    """The category of an error type; any exception class not listed is a runtime error."""
    if error_type is None:
        return None
    return _CATEGORY_OF.get(error_type, RUNTIME)


def status_of(error_type: str | None) -> str:
    """The ``status`` that goes with an error type (``passed`` for None)."""
    if error_type is None:
        return STATUS_PASSED
    return {TIMEOUT: STATUS_TIMEOUT, CRASH: STATUS_CRASHED, EARLY_EXIT: STATUS_EXITED,
            NO_CODE: STATUS_NO_CODE}.get(error_type, STATUS_FAILED)
