"""The shape of a sandbox job: the one home of the plain dicts the pool hands the workers.

A job crosses a process boundary (``ipc``'s framing), so it stays a plain dict of JSON-able
values; these constructors are the only places that spell its keys, so the grader's
``make_job``, reference timing's one-case stdio jobs (``builder.engine.references``), the pool's
start-up probe and the pool's per-case stdio runs cannot drift apart.
Host side only; standard library only, like the rest of this package.

- ``function_job``: a function problem's whole test -- the worker runs ``check(<entry_point>)``
  from ``test`` in the judge, with ``prelude`` (the problem's own helpers) defined there first.
- ``stdio_job``: a stdio problem, all its cases; the pool runs it as one ``stdio_case`` per case
  and compares the output itself, so the expected output never enters the sandbox.
- ``stdio_case``: one case of a stdio job, as the worker receives it.

``timeout`` is the wall-clock limit in seconds of one run (the whole test, or one case); None
leaves the pool's ``SandboxSettings.timeout_s``. ``cpu_limit`` is the run's CPU-time limit in
seconds (the per-problem limit, ``GraderConfig.run_limits``); None: only the wall clock bounds it.
"""

from __future__ import annotations

FUNCTION = "function"
STDIO = "stdio"
# The per-run limit keys of a job: a stdio job hands each of them on to every one of its cases.
LIMITS = ("timeout", "cpu_limit")


def function_job(code: str, test: str, entry_point: str, *, prelude: str | None = None,
                 timeout: float | None = None, cpu_limit: float | None = None) -> dict:
    """A function problem's job: ``code`` is the answer, ``test`` defines ``check(candidate)``."""
    return {"kind": FUNCTION, "code": code, "test": test, "entry_point": entry_point, "prelude": prelude,
            "timeout": timeout, "cpu_limit": cpu_limit}


def stdio_job(code: str, inputs: list[str], outputs: list[str], *, timeout: float | None = None,
              cpu_limit: float | None = None) -> dict:
    """A stdio problem's job: the program runs once per ``inputs`` entry, compared with ``outputs``."""
    return {"kind": STDIO, "code": code, "inputs": list(inputs), "outputs": list(outputs), "timeout": timeout,
            "cpu_limit": cpu_limit}


def stdio_case(job: dict, stdin: str) -> dict:
    """One case of the stdio ``job``: its program and limits (``LIMITS``), this case's input and
    nothing of the expected output."""
    return {"kind": STDIO, "code": job["code"], "stdin": stdin, **{k: job.get(k) for k in LIMITS}}
