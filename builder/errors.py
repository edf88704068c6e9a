"""Errors the command lines turn into one clear line and a non-zero exit (no traceback), and the
waits that let a Ctrl-C reach them (``wait_first``, ``join``)."""

from __future__ import annotations

import errno
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait

from builder.progress import quiet_libraries, quiet_library_warnings

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_TERMINATED = 143   # 128 + SIGTERM
# an output the machine cannot take: said in one line, like a bad input (nothing was half-written:
# every output goes through a temporary name, removed when the write fails)
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


# How long the main thread blocks in one wait at most. polars (which the dataset stages import)
# replaces Python's SIGINT handler with its own, which chains to Python's but is installed with
# SA_RESTART: the kernel then resumes an untimed lock wait after the signal instead of ending it, and
# Python raises KeyboardInterrupt only once the main thread runs again. An untimed wait for answers
# that loop until their 600-s limit kept Ctrl-C from taking effect for those ten minutes.
WAKE_S = 1.0


def wait_first(pending: Iterable[Future]) -> tuple[set[Future], set[Future]]:
    """``concurrent.futures.wait(pending, return_when=FIRST_COMPLETED)`` for the main thread: it
    wakes at least every ``WAKE_S`` seconds, so a Ctrl-C is raised within that time."""
    pending = set(pending)
    while True:
        done, pending = wait(pending, timeout=WAKE_S, return_when=FIRST_COMPLETED)
        if done or not pending:
            return done, pending


def join(thread: threading.Thread) -> None:
    """``thread.join()`` for the main thread, woken as ``wait_first`` is."""
    while thread.is_alive():
        thread.join(WAKE_S)


class UserError(Exception):
    """Bad input from the user (a missing column, a malformed row, a broken path...).

    The message must name what is wrong and where (file, line, column)."""


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread so that every ``finally`` runs (the sandbox's
    workers are killed and its temporary directory removed, temporary outputs are deleted)."""


def _terminate(signum, frame):
    raise Terminated()


def _disk_message(e: OSError) -> str | None:
    text = str(e)
    if e.errno in FULL_OR_READ_ONLY or "No space left on device" in text or "Read-only file system" in text:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        return f"cannot write{where}: {e.strerror or text.splitlines()[0]}"
    return None


def run_command(prog: str, body: Callable[[], int | None], *, on_interrupt: str = "interrupted") -> int:
    """Run a command's body and map its endings to exit statuses, the same for every console
    script: ``UserError`` -> one line on stderr and 2, a full or read-only disk -> one line and 2,
    Ctrl-C -> 130, SIGTERM -> 143 after the same cleanup as Ctrl-C; anything else is a bug and
    keeps its traceback. Before the body (and so before any library is imported), the libraries'
    progress bars get the commands' rule: drawn only on a terminal, and the library warnings no
    user can act on are hidden (``builder.progress``)."""
    quiet_libraries()
    quiet_library_warnings()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        return int(body() or 0)
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: {on_interrupt}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"{prog}: {on_interrupt.replace('interrupted', 'terminated', 1)}", file=sys.stderr)
        return EXIT_TERMINATED
    except OSError as e:
        message = _disk_message(e)
        if message is None:
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
