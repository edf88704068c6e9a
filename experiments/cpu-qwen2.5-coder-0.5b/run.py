#!/usr/bin/env python
"""Qwen2.5-Coder-0.5B-Instruct (Q4 GGUF) through the whole loop on CPU: exam -> base eval ->
AP2O L2H (LoRA, quizzes) -> eval -> DPO with as many pairs -> eval -> results.json and a plot.

Why one staged script: the whole run needs hours on 2 cores, so it must survive being stopped.
Each stage's folder under ``work/`` is named by a hash of everything that decides its output (its
settings and the keys of the stages it reads), and a finished stage leaves ``DONE.json``. A rerun
skips finished stages and re-enters an unfinished one in the same folder, where the tools resume
by themselves (``ap2o-build run`` and ``ap2o-eval`` keep per-chunk checkpoints,
``ap2o-train --resume-from-checkpoint`` continues the schedule exactly). Change a setting and only
the stages downstream of it run again.

    python experiments/cpu-qwen2.5-coder-0.5b/run.py            # every stage, resuming
    python experiments/cpu-qwen2.5-coder-0.5b/run.py --smoke    # 4 problems end to end (minutes)
    python experiments/cpu-qwen2.5-coder-0.5b/run.py --until base

Only our console commands do the work (``ap2o-build run``, ``ap2o-train``, ``ap2o-eval``); this
file chooses settings, starts llama.cpp's server for the exam and collects the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
GGUF = os.environ.get("AP2O_GGUF", "/work/models/qwen/qwen2.5-coder-0.5b-instruct-q4.gguf")
MBPP = os.environ.get("AP2O_MBPP", str(REPO.parent / "shared" / "data" / "ap2o-mbpp"))
SERVED = "qwen2.5-coder-0.5b-instruct-q4"

# Every number that decides a result. See README.md for why each was chosen.
CONFIG = {
    "exam": {  # the model's chat replies to MBPP train problems, plus a few validation problems for the quiz
        "split": "train", "limit": 12, "validation_limit": 4, "n": 4, "temperature": 1.0, "top_p": 1.0,
        "max_new_tokens": 384, "seed": 0, "prompt_format": "chat", "stop": ["\n```\n"],
    },
    "eval": {  # held-out: the first 30 problems of MBPP test, greedy, one chat reply each
        "split": "test", "limit": 30, "n": 1, "temperature": 0.0, "max_new_tokens": 300,
        "prompt_format": "chat", "batch_size": 8, "seed": 0,
    },
    "train": {  # shared by both trained arms
        "epochs": 4, "batch": 1, "lr": 1e-4, "lora_r": 16, "lora_alpha": 32, "beta": 0.1,
        "max_length": 768, "validation_split": "validation", "seed": 42,
        "quiz_max_new_tokens": 256, "quiz_max_problems": 4,
    },
}
SMOKE = {
    "exam": {"limit": 3, "validation_limit": 2, "n": 3, "max_new_tokens": 160},
    "eval": {"limit": 3, "max_new_tokens": 96},
    "train": {"epochs": 2, "batch": 1, "quiz_max_new_tokens": 64, "quiz_max_problems": 2},
}
STAGES = ("exam", "model", "base", "ap2o-l2h", "eval-ap2o-l2h", "dpo", "eval-dpo", "report")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def key_of(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Stage:
    """A folder named by content; ``done`` once DONE.json (with the stage's wall time) exists."""

    def __init__(self, work: pathlib.Path, name: str, key: str) -> None:
        self.name, self.key, self.dir = name, key, work / f"{name}-{key}"

    @property
    def done(self) -> bool:
        return (self.dir / "DONE.json").exists()

    def info(self) -> dict:
        return json.loads((self.dir / "DONE.json").read_text())

    def finish(self, wall_s: float, **extra) -> None:
        prev = self.info().get("wall_s", 0.0) if self.done else 0.0
        (self.dir / "DONE.json").write_text(json.dumps({"wall_s": round(prev + wall_s, 1), **extra}, indent=2))


def run(cmd: list[str], logfile: pathlib.Path) -> float:
    """Run one of our console commands, its output appended to ``logfile``; the wall time back."""
    log("$ " + " ".join(cmd))
    t0 = time.time()
    with open(logfile, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    if rc != 0:
        sys.exit(f"failed (exit {rc}); see {logfile}")
    return time.time() - t0


# --- llama.cpp's server for the exam ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(logfile: pathlib.Path, threads: int):
    """llama.cpp's OpenAI server on the GGUF: about twice transformers' tokens/s on CPU, so the
    exam (the most answers) uses it. The python that has ``llama_cpp`` is $AP2O_LLAMA_PYTHON or
    this one (``pip install -e ".[server]"``)."""
    python = os.environ.get("AP2O_LLAMA_PYTHON", sys.executable)
    port = free_port()
    cmd = [python, "-m", "llama_cpp.server", "--model", GGUF, "--model_alias", SERVED, "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "4096", "--n_threads", str(threads), "--n_threads_batch", str(threads)]
    log(f"starting llama.cpp server on port {port}")
    with open(logfile, "a") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                sys.exit(f"llama.cpp server exited ({proc.returncode}); see {logfile}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url + "/models", timeout=2).read()
                break
            time.sleep(1)
        else:
            sys.exit("llama.cpp server did not answer in 10 minutes")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


# --- stages ----------------------------------------------------------------------------------------

def hf_model(st: Stage) -> None:
    """The GGUF dequantized once (``builder.modelpath``, as every command's ``--model FILE.gguf``
    does) and saved as a transformers folder. Every command accepts the GGUF itself, but reading
    its 151k-token vocabulary and dequantizing costs minutes on a busy CPU per load, and training
    and evaluation load the model five times."""
    import torch

    from builder.modelpath import load_causal_lm, load_tokenizer

    t0 = time.time()
    out = st.dir / "hf"
    tmp = st.dir / "hf.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    load_tokenizer(GGUF).save_pretrained(tmp)
    load_causal_lm(GGUF, dtype=torch.float32).save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    st.finish(time.time() - t0)


def problem_subset(st: Stage, c: dict) -> pathlib.Path:
    """The exam's problems as a ``save_to_disk`` folder: the first ``limit`` MBPP train problems and
    the first ``validation_limit`` validation problems. Why a folder of our own: ``--limit`` keeps
    the same number of problems in every split, and the trainer quizzes the problems config's
    ``validation`` split only if the build wrote one, which it does only for problems it sampled;
    so a few validation problems are sampled instead of as many as the training problems."""
    import datasets

    out = st.dir / "problems"
    if not (out / "dataset_dict.json").exists():
        src = datasets.load_from_disk(MBPP)
        sub = datasets.DatasetDict({"train": src["train"].select(range(c["limit"])),
                                    "validation": src["validation"].select(range(c["validation_limit"]))})
        tmp = st.dir / "problems.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        sub.save_to_disk(str(tmp))
        tmp.rename(out)
    return out


def exam(st: Stage, cfg: dict, args) -> None:
    c = cfg["exam"]
    out = st.dir / "dataset"
    problems = problem_subset(st, c)
    stops = [a for s in c["stop"] for a in ("--stop", s)]
    with llama_server(st.dir / "server.log", args.threads) as url:
        wall = run(["ap2o-build", "run", "--problems", str(problems), "--name", "mbpp", "--split", "train,validation",
                    "--backend", "openai", "--base-url", url, "--model", SERVED,
                    "--prompt-format", c["prompt_format"], "--n", str(c["n"]), "--temperature", str(c["temperature"]),
                    "--top-p", str(c["top_p"]), "--max-new-tokens", str(c["max_new_tokens"]), "--seed", str(c["seed"]),
                    *stops, "--concurrency", "2", "--chunk-problems", "4", "--work-dir", str(st.dir / "work"),
                    "--quiet", "--output", str(out)], st.dir / "log.txt")
    st.finish(wall)


def evaluate(st: Stage, cfg: dict, args, model: pathlib.Path, adapter: pathlib.Path | None) -> None:
    c = cfg["eval"]
    cmd = ["ap2o-eval", "--model", str(model), "--benchmark", MBPP, "--split", c["split"], "--limit", str(c["limit"]),
           "--n", str(c["n"]), "--k", "1", "--temperature", str(c["temperature"]),
           "--max-new-tokens", str(c["max_new_tokens"]), "--prompt-format", c["prompt_format"],
           "--backend", "transformers", "--batch-size", str(c["batch_size"]), "--seed", str(c["seed"]),
           "--no-progress", "--output", str(st.dir / "run")]
    if adapter is not None:
        cmd[3:3] = ["--adapter", str(adapter)]
    st.finish(run(cmd, st.dir / "log.txt"))


def train(st: Stage, cfg: dict, args, model: pathlib.Path, dataset: pathlib.Path, method: str,
          max_steps: int | None = None, epochs: int | None = None, quiz: bool = True) -> None:
    c = cfg["train"]
    out = st.dir / "out"
    cmd = ["ap2o-train", "--dataset", str(dataset), "--model", str(model), "--method", method, "--output-dir", str(out),
           "--per-device-train-batch-size", str(c["batch"]), "--learning-rate", str(c["lr"]),
           "--lora-r", str(c["lora_r"]), "--lora-alpha", str(c["lora_alpha"]), "--beta", str(c["beta"]),
           "--max-length", str(c["max_length"]), "--validation-split", c["validation_split"],
           "--seed", str(c["seed"]), "--quiz-max-problems", str(c["quiz_max_problems"]),
           "--quiz-max-new-tokens", str(c["quiz_max_new_tokens"]), "--report-to", "none",
           "--save-steps", "4", "--save-total-limit", "2", "--logging-steps", "1"]
    cmd += ["--num-train-epochs", str(epochs or c["epochs"])]
    if max_steps:
        cmd += ["--max-steps", str(max_steps)]
    if not quiz:  # without replay the quiz only picks best/, and the final adapter is what is evaluated
        cmd += ["--quiz-strategy", "no"]
    ckpts = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])) if out.exists() else []
    if ckpts:
        cmd += ["--resume-from-checkpoint", str(ckpts[-1])]
    wall = run(cmd, st.dir / "log.txt")
    eff = json.loads((out / "sample_efficiency.json").read_text())
    st.finish(wall, **eff)


def planned_pairs(dataset: pathlib.Path, cfg: dict) -> tuple[int, int]:
    """(pairs AP2O L2H consumes, distinct pairs DPO has): L2H takes one pair per kept problem per
    epoch (``trainer.schedule.Schedule``), read with the trainer's own loader and filter."""
    from trainer.data import load_training_data
    from trainer.schedule import Schedule, ScheduleConfig

    c = cfg["train"]
    td = load_training_data(str(dataset), ScheduleConfig(method="ap2o-l2h", schedule_seed=c["seed"]),
                            validation_split=c["validation_split"])
    ap2o = Schedule(td.problems, ScheduleConfig(method="ap2o-l2h", schedule_seed=c["seed"]), c["epochs"])
    dpo = Schedule(td.problems, ScheduleConfig(method="dpo", schedule_seed=c["seed"]), 1)
    return len(ap2o), dpo.available_pairs


# --- the numbers -----------------------------------------------------------------------------------

def per_problem(run_dir: pathlib.Path) -> dict[str, float]:
    """pass fraction per problem (n=1: 0 or 1) from an ap2o-eval run's samples."""
    import pyarrow.parquet as pq

    t = pq.read_table(run_dir / "samples.parquet", columns=["problem_id", "status"]).to_pylist()
    by: dict[str, list[int]] = {}
    for r in t:
        by.setdefault(r["problem_id"], []).append(r["status"] == "passed")
    return {p: sum(v) / len(v) for p, v in by.items()}


def bootstrap(arms: dict[str, dict[str, float]], reps: int = 10000, seed: int = 0) -> dict:
    """Paired bootstrap over problems: one resample of problem ids is shared by every arm, so the
    intervals of the differences account for problems being easy or hard for all arms alike."""
    ids = sorted(next(iter(arms.values())))
    rng = random.Random(seed)
    draws = {a: [] for a in arms}
    deltas = {a: [] for a in arms if a != "base"}
    for _ in range(reps):
        sample = [ids[rng.randrange(len(ids))] for _ in ids]
        means = {a: sum(v[i] for i in sample) / len(sample) for a, v in arms.items()}
        for a in arms:
            draws[a].append(means[a])
        for a, values in deltas.items():
            values.append(means[a] - means["base"])

    def ci(xs):
        xs = sorted(xs)
        return [round(xs[int(0.025 * len(xs))], 4), round(xs[int(0.975 * len(xs)) - 1], 4)]

    return {"ci95": {a: ci(x) for a, x in draws.items()}, "delta_ci95": {a: ci(x) for a, x in deltas.items()}}


def report(stages: dict[str, Stage], cfg: dict, work: pathlib.Path) -> dict:
    from trainer.evaluate import compare, load_run

    arms = {"base": stages["base"], "ap2o-l2h": stages["eval-ap2o-l2h"], "dpo": stages["eval-dpo"]}
    done = {a: s for a, s in arms.items() if s.done}
    results: dict = {"model": pathlib.Path(GGUF).name, "code": code_under_test(), "config": cfg,
                     "stages": {n: {"dir": str(s.dir.relative_to(HERE)), "done": s.done,
                                    **({"wall_s": s.info()["wall_s"]} if s.done else {})}
                                for n, s in stages.items() if n != "report"},
                     "pending": [a for a in arms if a not in done], "arms": {}}
    if stages["exam"].done:
        results["exam"] = exam_summary(stages["exam"].dir / "dataset")
    per = {a: per_problem(s.dir / "run") for a, s in done.items()}
    boot = bootstrap(per) if "base" in per else {"ci95": {}, "delta_ci95": {}}
    train_of = {"ap2o-l2h": stages["ap2o-l2h"], "dpo": stages["dpo"]}
    for a, s in done.items():
        m = load_run(s.dir / "run")
        arm = {"pass@1": m.get("pass@1"), "ci95": boot["ci95"].get(a), "problems": len(per[a]),
               "error_counts": m.get("error_counts"), "eval_wall_s": s.info()["wall_s"]}
        if a in train_of:
            t = train_of[a].info()
            arm.update(pairs_used=t.get("pairs_consumed"), distinct_pairs=t.get("distinct_pairs_consumed"),
                       pairs_available=t.get("pairs_available"), train_wall_s=t["wall_s"],
                       delta_vs_base=round(m["pass@1"] - results_base(done, per), 4) if "base" in per else None,
                       delta_ci95=boot["delta_ci95"].get(a))
        else:
            arm.update(pairs_used=0)
        results["arms"][a] = arm
    if done:
        compare([str(s.dir / "run") for s in done.values()], list(done), output=work / "compare")
        shutil.copy(work / "compare" / "error_counts.png", HERE / "error_counts.png")
    return results


def code_under_test() -> dict:
    """Which builder/trainer the commands ran: run with ``PYTHONPATH`` at a frozen worktree so that
    others' edits to the main tree during a long run cannot change the code mid-experiment."""
    import builder

    root = pathlib.Path(builder.__file__).resolve().parents[1]

    def git(*a):
        return subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True).stdout.strip()

    return {"tree": str(root), "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--", "builder", "trainer"))}


def results_base(done, per) -> float:
    v = per["base"]
    return sum(v.values()) / len(v)


def exam_summary(dataset: pathlib.Path) -> dict:
    import datasets

    samples = datasets.load_dataset(str(dataset), "samples")
    pairs = datasets.load_dataset(str(dataset), "pairs")
    rows = [r for split in samples.values() for r in split]
    passed = sum(r["status"] == "passed" for r in rows)
    by: dict[str, set] = {}
    for r in rows:
        by.setdefault(r["problem_id"], set()).add(r["status"] == "passed")
    errors: dict[str, int] = {}
    for r in rows:
        if r["status"] != "passed":
            errors[r["error_type"]] = errors.get(r["error_type"], 0) + 1
    return {"answers": len(rows), "problems": len(by), "passed": passed,
            "problems_with_pass_and_fail": sum(v == {True, False} for v in by.values()),
            "problems_without_a_pass": sum(v == {False} for v in by.values()),
            "error_counts": dict(sorted(errors.items(), key=lambda kv: -kv[1])),
            "pairs": sum(len(s) for s in pairs.values())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a few problems end to end, in work-smoke/")
    ap.add_argument("--until", choices=STAGES, default="report", help="stop after this stage")
    ap.add_argument("--only", choices=STAGES, help="run just this stage (its inputs must be done); "
                    "'report': only rewrite results.json and the plot from the finished stages")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp server threads")
    args = ap.parse_args()
    cfg = json.loads(json.dumps(CONFIG))
    if args.smoke:
        for block, over in SMOKE.items():
            cfg[block].update(over)
    work = HERE / ("work-smoke" if args.smoke else "work")
    work.mkdir(exist_ok=True)
    model = {"gguf": GGUF, "size": os.path.getsize(GGUF)}
    st: dict[str, Stage] = {}
    st["exam"] = Stage(work, "exam", key_of(model, MBPP, cfg["exam"]))
    st["model"] = Stage(HERE / "work", "model", key_of(model))  # shared with --smoke: the same weights
    st["base"] = Stage(work, "eval-base", key_of(model, MBPP, cfg["eval"]))
    st["ap2o-l2h"] = Stage(work, "train-ap2o-l2h", key_of(st["exam"].key, model, cfg["train"]))
    st["eval-ap2o-l2h"] = Stage(work, "eval-ap2o-l2h", key_of(st["base"].key, st["ap2o-l2h"].key))
    st["dpo"] = Stage(work, "train-dpo", key_of(st["exam"].key, model, cfg["train"], "dpo", "planned pairs", "no quiz"))
    st["eval-dpo"] = Stage(work, "eval-dpo", key_of(st["base"].key, st["dpo"].key))
    for name in STAGES[:-1]:
        s = st[name]
        if args.only and name != args.only:
            continue
        s.dir.mkdir(parents=True, exist_ok=True)
        lock = open(s.dir / "lock", "w")  # noqa: SIM115 - held until the stage is done
        # Two runs (a resume started while an --only run is busy) must not work in one folder.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if s.done:
            log(f"{name}: done ({s.dir.name}, {s.info()['wall_s']} s)")
        else:
            log(f"{name}: running in {s.dir}")
            hf = st["model"].dir / "hf"
            if name == "exam":
                exam(s, cfg, args)
            elif name == "model":
                hf_model(s)
            elif name == "base":
                evaluate(s, cfg, args, hf, None)
            elif name == "ap2o-l2h":
                train(s, cfg, args, hf, st["exam"].dir / "dataset", "ap2o-l2h", None)
            elif name == "dpo":
                # The same number of pairs as AP2O consumes: steps x the same batch, over as many
                # passes of DPO's pair list (the same kept problems) as that needs. Planned from the
                # dataset, not read from AP2O's run, so the two arms can train side by side;
                # report() checks that pairs_used came out equal.
                pairs, available = planned_pairs(st["exam"].dir / "dataset", cfg)
                train(s, cfg, args, hf, st["exam"].dir / "dataset", "dpo",
                      max_steps=-(-pairs // cfg["train"]["batch"]), epochs=-(-pairs // available), quiz=False)
            else:
                evaluate(s, cfg, args, hf, st[name.removeprefix("eval-")].dir / "out")
        lock.close()
        if name == args.until:
            break
    if args.only and args.only != "report":
        return 0
    results = report(st, cfg, work)
    target = HERE / ("results-smoke.json" if args.smoke else "results.json")
    target.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {target}: " + json.dumps({a: v.get("pass@1") for a, v in results["arms"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
