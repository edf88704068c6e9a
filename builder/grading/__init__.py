"""Stage 3 -- grading: run each answer against its problem's tests in the sandbox, get a typed verdict.

``grader`` is the one entry point (``Grader``, ``grade_table``), ``sandbox`` the isolation it runs
in (its threat model: docs/sandbox.md; ``sandbox/__init__.py`` says which module does what),
``taxonomy`` what an error type is, and ``grade`` the ``ap2o-build grade`` command.
"""
