"""Stage 1 -- problems: every benchmark or dataset becomes one table in the ``problems`` schema.

``sources`` reads them (HumanEval, MBPP, local files, saved datasets, Hub repos) and reports their
quality; ``benchmarks`` reads the paper's evaluation sets (HumanEval+, MBPP+, LiveCodeBench);
``examples`` is a bundled set of right and broken answers for demos and benchmarks.
"""
