"""Stage 3 -- grading: run each answer against its problem's tests in the sandbox, get a typed verdict.

``grader`` is the one entry point (``Grader``, ``grade_table``), ``sandbox`` the isolation it runs
in (threat model in ``sandbox/__init__.py`` and docs/sandbox.md), ``taxonomy`` what an error type
is, and ``grade`` the ``ap2o-build grade`` command.
"""
