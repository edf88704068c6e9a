"""Benchmark: one quiz of the same policy sampled with transformers (the default) and with vLLM.

Claim (docs/train.md, ``--quiz-backend``): vLLM's engine starts anew at every quiz, so it pays only
when the quiz's sampling takes transformers longer than that start. Both runs are ``trainer.quiz.run_quiz``
as the trainer calls it, on the same model object, problems and settings, graded by the same sandbox;
the vLLM one writes the model out and samples it in ``--quiz-vllm-python`` (``trainer.quiz_vllm``).
Printed per backend: the quiz's wall time, pass@1, and the ratio to transformers from the same run.

    python benchmarks/quiz_backends.py --model FOLDER --problems MBPP --split validation --limit 8 \\
        --max-new-tokens 128 --prompt-format chat --quiz-vllm-python .venv-vllm/bin/python

Run it in the training environment with this checkout on ``PYTHONPATH`` (the vLLM process inherits
it). The transformers quiz runs first, then vLLM's; state the load average (printed) with the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from builder.grading.grader import Grader
from builder.problems.sources import load_problems
from trainer.config import QuizConfig
from trainer.data import QUIZ_COLUMNS

# transformers and trainer.quiz (which loads transformers) are imported once the arguments are read:
# --help and a mistyped flag answer at once.


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a plain model folder (the policy)")
    parser.add_argument("--problems", required=True, help="problem set, as ap2o-build's --problems")
    parser.add_argument("--split", default=None)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.01)
    parser.add_argument("--prompt-format", default="chat")
    parser.add_argument("--batch-size", type=int, default=16, help="transformers: sequences per generate call")
    parser.add_argument("--quiz-vllm-python", default=None)
    parser.add_argument("--vllm-args", nargs="*", default=["enforce_eager=true"])
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.quiz import run_quiz

    rows = load_problems(args.problems, split=args.split, limit=args.limit, quiet=True).to_pylist()
    problems = [{k: r.get(k) for k in QUIZ_COLUMNS} for r in rows]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype="float32").eval()
    common = {"quiz_temperature": args.temperature, "quiz_max_new_tokens": args.max_new_tokens,
              "quiz_prompt_format": args.prompt_format, "quiz_batch_size": args.batch_size}
    configs = {"transformers": QuizConfig(**common),
               "vllm": QuizConfig(**common, quiz_backend="vllm", quiz_vllm_python=args.quiz_vllm_python,
                                  quiz_vllm_args=args.vllm_args or None)}
    results = {}
    with Grader(configs["transformers"].grader_config()) as grader:
        for name, config in configs.items():
            start = time.perf_counter()
            result = run_quiz(model, tokenizer, problems, config, grader, step=0, seed=0)
            results[name] = (time.perf_counter() - start, result.pass_at_1)
            print(f"{name}: {results[name][0]:.1f} s, pass@1 {result.pass_at_1:.3f} "
                  f"(load average after: {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    base = results["transformers"][0]
    print(f"\n{len(problems)} problems x 1 answer, {args.max_new_tokens} new tokens, {args.prompt_format}, "
          f"temperature {args.temperature}")
    print("| quiz backend | wall | pass@1 | x transformers (speed) |\n| --- | --- | --- | --- |")
    for name, (seconds, score) in results.items():
        print(f"| {name} | {seconds:.1f} s | {score:.3f} | {base / seconds:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
