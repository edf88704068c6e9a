"""A tiny MBPP-like dataset the trainer's tests train on: real Python answers, each labelled with
the error it really raises, as samples rows, as a Hub-layout dataset folder (``write_dataset``) and
as a schedule over them (``make``). ``test_schedule``, ``test_feed``, ``test_train_e2e``, the model
card's and the callbacks' tests and ``benchmarks/trainer_feed.py`` share it.
"""

from __future__ import annotations

import pathlib

import pyarrow as pa

import schemas
from builder.grading import taxonomy
from builder.io import write_parquet
from trainer import schedule as S
from trainer.data import problems_from_samples

# --- a tiny MBPP-like split -----------------------------------------------------------------------
# problem id -> (prompt, test, entry point, passed answers, failed answers with the error each raises)
TRAIN = {
    "add": ('def add(a, b):\n    """Return the sum of a and b."""\n',
            "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n", "add",
            ["    return a + b\n", "    return b + a\n", "    return sum((a, b))\n"],
            [("    return a - b\n", "WrongResult"), ("    return a + c\n", "NameError"),
             ("    return a +\n", "SyntaxError"), ("    return a * b\n", "WrongResult"),
             ("    return str(a) + b\n", "TypeError"), ("    return a - b\n", "WrongResult")]),  # a duplicate
    "first": ('def first(xs):\n    """Return the first item of the list xs."""\n',
              "def check(candidate):\n    assert candidate([4, 5]) == 4\n", "first",
              ["    return xs[0]\n", "    return xs[:1][0]\n"],
              [("    return xs[len(xs)]\n", "IndexError"), ("    return xs[1]\n", "WrongResult"),
               ("    return xs[-1]\n", "WrongResult"), ("    return xs.first()\n", "AttributeError")]),
    "mean": ('def mean(xs):\n    """Return the arithmetic mean of xs."""\n',
             "def check(candidate):\n    assert candidate([1, 2]) == 1.5\n", "mean",
             ["    return sum(xs) / len(xs)\n", "    total = sum(xs)\n    return total / len(xs)\n"],
             [("    return sum(xs) / 0\n", "ZeroDivisionError"), ("    return sum(xs) // len(xs)\n", "WrongResult"),
              ("    return sum(xs) / len(x)\n", "NameError"), ("    return sum(xs) / len(xs\n", "SyntaxError"),
              ("    return sum(xs) / len(xs) + 1\n", "WrongResult")]),
    "is_even": ('def is_even(n):\n    """Return True when n is even."""\n',
                "def check(candidate):\n    assert candidate(2) is True\n    assert candidate(3) is False\n", "is_even",
                ["    return n % 2 == 0\n", "    return not n % 2\n"],
                [("    return n % 2 == 1\n", "WrongResult"), ("    retrun n % 2 == 0\n", "SyntaxError"),
                 ("    return n % 0 == 0\n", "ZeroDivisionError")]),
    "concat": ('def concat(a, b):\n    """Join the strings a and b."""\n',
               "def check(candidate):\n    assert candidate('x', 'y') == 'xy'\n", "concat",
               ["    return f'{a}{b}'\n", "    return ''.join([a, b])\n"],
               [("    return str(b) + a\n", "WrongResult"), ("    return a + 1\n", "TypeError")]),
    # filtered out: no failed answer / a single failed answer / no passed answer (and its answers'
    # texts are first's: merge.py's de-duplication keeps them there)
    "square": ('def square(x):\n    """Return x squared."""\n',
               "def check(candidate):\n    assert candidate(3) == 9\n", "square", ["    return x * x\n"], []),
    "neg": ('def neg(x):\n    """Return -x."""\n', "def check(candidate):\n    assert candidate(2) == -2\n", "neg",
            ["    return -x\n"], [("    return x\n", "WrongResult")]),
    "last": ('def last(xs):\n    """Return the last item of xs."""\n',
             "def check(candidate):\n    assert candidate([1, 2]) == 2\n", "last",
             [], [("    return xs[0]\n", "WrongResult"), ("    return xs[len(xs)]\n", "IndexError")]),
}
KEPT = ["add", "first", "mean", "is_even", "concat"]  # in sample order: >= 2 passed and >= 2 failed distinct answers

VALIDATION = {
    "double": ('def double(x):\n    """Return 2 * x."""\n', "def check(candidate):\n    assert candidate(2) == 4\n", "double"),
    "inc": ('def inc(x):\n    """Return x + 1."""\n', "def check(candidate):\n    assert candidate(1) == 2\n", "inc"),
    "head": ('def head(s):\n    """Return the first character of s."""\n',
             "def check(candidate):\n    assert candidate('ab') == 'a'\n", "head"),
}

CARD = """---
configs:
- config_name: samples
  data_files:
  - split: train
    path: data/samples/train-*.parquet
- config_name: problems
  data_files:
  - split: validation
    path: data/problems/validation-*.parquet
---
# tiny ap2o test dataset
"""


def sample_rows() -> list[dict]:
    rows = []
    for pid, (prompt, test, entry, passed, failed) in TRAIN.items():
        answers = [(a, None) for a in passed] + list(failed)
        for i, (answer, error) in enumerate(answers):
            rows.append({"problem_id": pid, "source": "test", "split": "train", "kind": "function",
                         "prompt": prompt, "test": test, "entry_point": entry, "completion": prompt + answer,
                         "sample_index": i, "prompt_format": "completion", "passed": error is None,
                         "status": taxonomy.status_of(error), "error_type": error,
                         "error_category": taxonomy.category_of(error)})
    return rows


def write_dataset(folder: pathlib.Path) -> pathlib.Path:
    """A Hub-layout dataset folder (samples/train + problems/validation + card) that
    ``datasets.load_dataset(folder, "samples")`` reads."""
    samples = schemas.conform(pa.Table.from_pylist(sample_rows()), schemas.SAMPLES)
    write_parquet(samples, folder / "data/samples/train-00000-of-00001.parquet")
    problems = [{"problem_id": pid, "source": "test", "split": "validation", "kind": "function", "prompt": p,
                 "test": t, "entry_point": e} for pid, (p, t, e) in VALIDATION.items()]
    write_parquet(schemas.conform(pa.Table.from_pylist(problems), schemas.PROBLEMS),
                  folder / "data/problems/validation-00000-of-00001.parquet")
    (folder / "README.md").write_text(CARD)
    return folder


def samples_table(rows=None) -> pa.Table:
    return schemas.conform(pa.Table.from_pylist(sample_rows() if rows is None else rows), schemas.SAMPLES)


def make(method=S.AP2O_L2H, epochs=3, rows=None, batching=None, **kw) -> S.Schedule:
    config = S.ScheduleConfig(method=method, **kw)
    problems, _ = problems_from_samples(samples_table(rows), config)
    return S.Schedule(problems, config, epochs, batching)


def dpo_trainer(tiny_model_dir, out, feed, **kw):
    """TRL's ``DPOTrainer`` on ``feed`` with the tiny model and a LoRA adapter, a few steps."""
    # here, not at the top: test_schedule and the dataset's users run without TRL
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOTrainer

    from trainer.config import ModelArguments
    from trainer.trl_config import AP2ODPOConfig

    args = AP2ODPOConfig(output_dir=str(out), max_length=128, report_to="none", logging_steps=1, learning_rate=1e-3,
                         seed=0, **{"per_device_train_batch_size": 2, "max_steps": 4, "save_strategy": "no", **kw})
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = DPOTrainer(model=model, args=args, train_dataset=feed.dataset(), processing_class=tok,
                         peft_config=ModelArguments(model_name_or_path=str(tiny_model_dir)).peft_config())
    feed.attach(trainer)
    return trainer
