"""Benchmark: the same prompts through vLLM, llama.cpp's server (openai backend) and transformers.

Claim (issue 19): on CPU, vLLM samples several times faster than the backends used before it.
Every backend answers the same chat prompts (the first ``--limit`` problems of ``--problems``,
``--n`` answers each, temperature 1.0, ``--max-new-tokens``, the chat format's stop strings)
through ``builder.generation.sample.sample_problems``, the function ``ap2o-build`` runs. Each runs in
a process of its own, one after another, so that none competes with another for the cores:

- ``vllm``: ``--backend vllm`` as a user runs it (compiled model); ``vllm-eager``: the same with
  ``enforce_eager=True`` (no compile warm-up); ``vllm-multiprocess``: the same with vLLM's engine
  in a process of its own (``VLLM_ENABLE_V1_MULTIPROCESSING=1``, vLLM's default, which the backend
  turns off on CPU);
- ``llama``: ``scripts/llama_server.py`` (llama.cpp, ``--n_threads``) on 127.0.0.1 serving the
  GGUF, sampled by the openai backend (8 requests in flight);
- ``transformers``: ``--backend transformers`` on the plain folder (fp32 on CPU, 16 sequences a batch).

Per backend: start-up (building the backend: imports, loading, vLLM's warm-up; for llama.cpp,
server start until it answers), sampling wall time, answers/s and generated tokens/s (tokens of
the returned answers, counted with the model's tokenizer, so every backend is counted alike),
and each ratio to the baseline (``--baseline``, default transformers) from the same run.

    python benchmarks/sampling.py --model FOLDER --gguf FILE.gguf [--limit 16 --n 4 --max-new-tokens 256]
    python benchmarks/sampling.py --model FOLDER --gguf FILE.gguf --smoke     # smallest size: does it run

Run it in the vLLM environment (docs/build.md); ``--llama-python`` names a Python that has
llama-cpp-python (default: this one). vLLM's CPU threads follow its own settings
(``VLLM_CPU_OMP_THREADS_BIND``, ``VLLM_CPU_NUM_OF_RESERVED_CPU``); state them with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builder.generation.backends import SamplingParams, get_backend
from builder.generation.sample import sample_problems
from builder.problems.sources import load_problems

# transformers (seconds) is imported in the child that counts tokens; the parent only starts children.

BACKENDS = ("vllm", "vllm-eager", "vllm-multiprocess", "llama", "transformers")


def measure(args: argparse.Namespace) -> dict:
    """Build one backend, sample, count: the child process's whole job."""
    from transformers import AutoTokenizer

    problems = load_problems(args.problems, split=args.split, limit=args.limit)
    params = SamplingParams(n=args.n, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens, seed=0)
    server = None
    start = time.perf_counter()
    if args.one == "llama":
        port = _free_port()
        server = subprocess.Popen([args.llama_python, str(ROOT / "scripts" / "llama_server.py"), "--model", args.gguf,
                                   "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(args.threads),
                                   "--n_ctx", "4096"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/v1"
        _wait_for(url, server)
        backend = get_backend("openai", base_url=url, model=None, concurrency=8)
    elif args.one == "transformers":
        backend = get_backend("transformers", model=args.model, batch_size=16)
    else:
        if args.one == "vllm-multiprocess":  # the backend's CPU default is the engine in this process
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
        backend = get_backend("vllm", model=args.model, **({"enforce_eager": True} if args.one == "vllm-eager" else {}))
    started = time.perf_counter() - start
    try:
        start = time.perf_counter()
        table = sample_problems(problems, backend, params, "chat", progress=False)
        sampled = time.perf_counter() - start
    finally:
        backend.close()
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    responses = table.column("response").to_pylist()
    tokens = sum(len(tokenizer(r, add_special_tokens=False).input_ids) for r in responses)
    return {"backend": args.one, "startup_s": started, "sample_s": sampled, "answers": len(responses), "tokens": tokens}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, server: subprocess.Popen, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"llama.cpp server exited with {server.returncode} (is llama-cpp-python installed "
                             "for --llama-python?)")
        try:
            urllib.request.urlopen(url + "/models", timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    server.terminate()
    raise SystemExit(f"llama.cpp server did not answer within {limit_s:.0f} s")


def run_child(args: argparse.Namespace, backend: str, out: pathlib.Path) -> dict | None:
    """One backend in a fresh process; its figures, or None (with its stderr's end) if it failed."""
    cmd = [sys.executable, __file__, "--one", backend, "--json", str(out)] + _shared_flags(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        print(f"{backend}: failed (exit {proc.returncode}):\n{tail}", file=sys.stderr)
        return None
    return json.loads(out.read_text())


def _shared_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--model", args.model, "--problems", args.problems, "--limit", str(args.limit), "--n", str(args.n),
             "--max-new-tokens", str(args.max_new_tokens), "--threads", str(args.threads),
             "--llama-python", args.llama_python]
    if args.split:
        flags += ["--split", args.split]
    if args.gguf:
        flags += ["--gguf", args.gguf]
    return flags


def report(rows: list[dict], baseline: str) -> None:
    base = next((r for r in rows if r["backend"] == baseline), None)
    print(f"\n{'backend':18s}{'start-up s':>11s}{'sample s':>10s}{'answers':>9s}{'tokens':>8s}"
          f"{'tok/s':>8s}{'answers/s':>10s}{'x tok/s':>9s}{'x start-up':>11s}")
    for r in rows:
        tps, aps = r["tokens"] / r["sample_s"], r["answers"] / r["sample_s"]
        ratio = f"{tps / (base['tokens'] / base['sample_s']):.2f}" if base else "-"
        start_ratio = f"{r['startup_s'] / base['startup_s']:.2f}" if base else "-"
        print(f"{r['backend']:18s}{r['startup_s']:>11.1f}{r['sample_s']:>10.1f}{r['answers']:>9d}{r['tokens']:>8d}"
              f"{tps:>8.1f}{aps:>10.2f}{ratio:>9s}{start_ratio:>11s}")
    if base:
        print(f"(ratios: each backend / {baseline}, same run)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="plain Hugging Face folder (vllm, transformers, token counts)")
    parser.add_argument("--gguf", help="the same model as GGUF, for llama.cpp (without it: no llama row)")
    parser.add_argument("--problems", default="humaneval",
                        help="a problem source as ap2o-build takes it (an MBPP save_to_disk folder: docs/build.md's figures)")
    parser.add_argument("--split", default=None, help="the source's split (default: all of them)")
    parser.add_argument("--limit", type=int, default=16, help="problems")
    parser.add_argument("--n", type=int, default=4, help="answers per problem")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp's --n_threads")
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated, from {', '.join(BACKENDS)}")
    parser.add_argument("--baseline", default="transformers")
    parser.add_argument("--llama-python", default=sys.executable, help="a Python with llama-cpp-python[server]")
    parser.add_argument("--smoke", action="store_true", help="2 problems x 2 answers x 16 tokens: does it run")
    parser.add_argument("--one", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.limit, args.n, args.max_new_tokens = 2, 2, 16
    if args.one:
        pathlib.Path(args.json).write_text(json.dumps(measure(args)))
        return 0
    chosen = [b for b in args.backends.split(",") if b]
    unknown = set(chosen) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if "llama" in chosen and not args.gguf:
        print("llama: skipped (no --gguf)", file=sys.stderr)
        chosen.remove("llama")
    print(f"{args.limit} problems x {args.n} answers, chat format, temperature 1.0, {args.max_new_tokens} new tokens; "
          f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in chosen:
            row = run_child(args, backend, pathlib.Path(tmp) / f"{backend}.json")
            if row:
                rows.append(row)
                print(f"{backend}: start-up {row['startup_s']:.1f} s, {row['tokens']} tokens in {row['sample_s']:.1f} s "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
    report(rows, args.baseline)
    return 0 if len(rows) == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
