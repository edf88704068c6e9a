"""Run by ``test_sampling_vllm`` with the vLLM environment's Python: one vLLM engine on the tiny model,
several ``generate`` calls through ``VLLMBackend``, and what they returned as JSON on stdout for the
test to check. One engine for all of them, because starting one is what takes time.

    python tests/vllm_probe.py MODEL_DIR
"""

from __future__ import annotations

import dataclasses
import json
import sys

from builder.generation.backends import Request, SamplingParams, get_backend
from builder.generation.sample import SampleConfig, sample_table
from builder.problems.sources import load_problems

# what test_sampling_vllm's build samples (its command line's settings), here in one call
BUILD = SampleConfig(backend="vllm", prompt_format="chat", n=2, max_new_tokens=16)

# ~390 tokens each: 8 prompts x n=4 are ~12,500 prompt tokens, far over one engine step's token
# budget, so the scheduler must spread them over steps (what crashed seeded sampling on CPU)
LONG = "def f(x):\n    return x + 1\n" * 30


def main() -> None:
    backend = get_backend("vllm", model=sys.argv[1], enforce_eager=True)
    requests = [Request("text", text="def add(a, b):\n"),
                Request("chat", messages=({"role": "user", "content": "Write a function."},))]
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=24, seed=3)
    many = [Request(f"long/{i}", text=LONG + f"# {i}\n") for i in range(8)]
    out = {
        "answers": backend.generate(requests, params, progress=False),
        "reversed": backend.generate(requests[::-1], params, progress=False)[::-1],
        "alone": backend.generate(requests[:1], params, progress=False),
        "seed4": backend.generate(requests, dataclasses.replace(params, seed=4), progress=False),
        "stopped": backend.generate(requests, dataclasses.replace(params, stop=("e", "\n")), progress=False),
        "greedy": backend.generate(requests, dataclasses.replace(params, temperature=0.0, n=2), progress=False),
        "chat_prompt": backend.prompt_text(requests[1]),
        "long_prompt_tokens": len(backend.prompt(many[0])["prompt_token_ids"]),
        "many": backend.generate(many, params, progress=False),
    }
    table = sample_table(load_problems("humaneval", limit=3, quiet=True), backend, BUILD, progress=False)
    out["build"] = [[r["problem_id"], r["sample_index"], r["response"]] for r in table.to_pylist()]
    backend.close()
    print(json.dumps(out))


if __name__ == "__main__":  # vLLM spawns its engine process, which imports this module again
    main()
