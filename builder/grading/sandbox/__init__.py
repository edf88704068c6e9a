"""The sandbox that runs untrusted answers (its threat model: docs/sandbox.md).

Two halves live here. The *worker side* (``worker``, its zygote and the judge it forks; ``child``,
the answer's process; ``judge``; ``codec``, the plain-data format between those two; ``limits``,
``seccomp``, ``meter``, ``ipc``) runs
inside the sandbox, imported as a stand-alone package from a read-only bind of this directory, so
it uses the standard library only and imports nothing from ``builder``. The *host side*
(``pool``, ``jobs``: the plain dicts it hands the workers, ``bwrap``, ``view``: what an answer may
see, ``cgroup``, ``compare``) starts and feeds the workers. This ``__init__`` stays empty on purpose: the
worker imports it as ``ap2o_sandbox`` where ``builder`` does not exist.
"""
