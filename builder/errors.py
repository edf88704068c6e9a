"""Errors the command lines turn into one clear line and a non-zero exit (no traceback)."""


class UserError(Exception):
    """Bad input from the user (a missing column, a malformed row, a broken path...).

    The message must name what is wrong and where (file, line, column)."""
