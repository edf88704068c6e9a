"""``ap2o-eval``: pass@k and error counts per type, for one checkpoint or side by side for several.

The paper judges training by two things (docs/method.md, step 7): pass@k with the unbiased estimator of
Chen et al. (k = 1, 5, 10 at temperature 0.6) and how many answers fail with each error type
before and after training (its Figure 2). This package produces both through the builder's own
engine (``builder.engine``: problems, sampling backends, prompts and the grader in checkpointed
chunks), so an evaluation grades answers exactly like the exam that built the training data.

    ap2o-eval --model PATH --benchmark humaneval --n 10 --k 1,5,10 --output runs/init
    ap2o-eval --model BASE --adapter runs/ap2o/checkpoint-400 --benchmark mbpp_copy --output runs/ap2o
    ap2o-eval --model BASE --adapter runs/ap2o/best --benchmark mbpp+ --output runs/ap2o-mbppplus
    ap2o-eval compare runs/init runs/dpo runs/ap2o --labels Init,DPO,AP2O --output runs/compare

The paper's benchmarks (``humaneval+``, ``mbpp+``, ``livecodebench``) come from
``builder.problems.benchmarks``; for EvalPlus the answers are graded twice, on the base tests and on the
plus tests, and ``metrics.json`` carries the base numbers at its top level and the plus numbers
(pass = base AND plus, EvalPlus's rule) under ``"plus"``. Settings not given follow the paper and
the trained run: see ``resolve``.

A run writes ``metrics.json``, ``samples.parquet`` (``schemas.ANSWERS``; ``samples_plus.parquet``
for the plus grades) and ``evalplus_samples.jsonl`` (``task_id``, ``solution``: the official
EvalPlus evaluator re-scores it). Sampled answers and grades are checkpointed per chunk of
problems under ``DIR/.ap2o-cache``, keyed by the content that determines them, so a rerun (after a
crash, or with more problems) redoes only what changed.

The modules, in the order a run uses them: ``run`` (``EvalConfig``, ``evaluate``: load the
benchmark, decide what was left open, sample and grade through the engine), ``metrics`` (pass@k,
error counts: pure functions of a graded table), ``export`` (the run folder's files, EvalPlus's
sample format), ``compare`` (runs side by side), ``cli`` (``ap2o-eval``).
"""
