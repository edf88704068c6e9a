"""Stage 1 -- problems: every benchmark or dataset becomes one table in the ``problems`` schema.

``sources`` reads them (HumanEval, MBPP, local files, saved datasets, Hub repos) into that table
through ``columns`` (which source column is which problem column) and ``mbpp`` (MBPP's asserts as a
``check(candidate)``); ``quality`` flags the problems whose tests cannot fail an answer, and
``python -m builder.problems SOURCE`` prints that report; ``benchmarks`` reads the paper's
evaluation sets (HumanEval+, MBPP+, LiveCodeBench); ``examples`` is a bundled set of right and
broken answers for demos and benchmarks.
"""
