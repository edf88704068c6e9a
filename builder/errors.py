"""Errors the command lines turn into one clear line and a non-zero exit (no traceback)."""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class UserError(Exception):
    """Bad input from the user (a missing column, a malformed row, a broken path...).

    The message must name what is wrong and where (file, line, column)."""


def run_command(prog: str, body: Callable[[], int | None], *, on_interrupt: str = "interrupted") -> int:
    """Run a command's body and map its endings to exit statuses, the same for every console
    script: ``UserError`` -> one line on stderr and 2, Ctrl-C -> 130; anything else is a bug and
    keeps its traceback. Before the body (and so before any library is imported), the libraries'
    progress bars get the commands' rule: drawn only on a terminal, and the library warnings no
    user can act on are hidden (``builder.progress``)."""
    from builder.progress import quiet_libraries, quiet_library_warnings

    quiet_libraries()
    quiet_library_warnings()
    try:
        return int(body() or 0)
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: {on_interrupt}", file=sys.stderr)
        return EXIT_INTERRUPTED
