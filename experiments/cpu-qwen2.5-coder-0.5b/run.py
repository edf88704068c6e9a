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
# Where the model and the problems are: set by the user (README.md, "How to run"), never a path
# outside this repository by default.
GGUF = os.environ.get("AP2O_GGUF", "")  # the Q4 GGUF of Qwen2.5-Coder-0.5B-Instruct
MBPP = os.environ.get("AP2O_MBPP", "")  # MBPP as a save_to_disk folder (train, validation, test)
SERVED = "qwen2.5-coder-0.5b-instruct-q4"

# Every number that decides a result. See README.md for why each was chosen.
CONFIG = {
    "exam": {  # the model's chat replies to MBPP train problems, plus a few validation problems for the quiz
        "split": "train", "limit": 32, "validation_limit": 6, "n": 4, "temperature": 1.0, "top_p": 1.0,
        "max_new_tokens": 384, "seed": 0, "prompt_format": "chat", "stop": ["\n```\n"],
    },
    "eval": {  # held-out: the first 48 problems of MBPP test, greedy, one chat reply each
        "split": "test", "limit": 48, "n": 1, "temperature": 0.0, "max_new_tokens": 300,
        "prompt_format": "chat", "batch_size": 8, "seed": 0,
    },
    # The trained arms answer the first 32 of those 48 (two of ap2o-eval's 16-problem chunks): the
    # shared CPU ran ~90 s per LoRA step, and 48 would not have finished in the sitting. Every
    # comparison (pass@1, intervals, error counts, plot) is on the problems all arms answered;
    # greedy and chunked alike, base's first 32 answers are those a 32-problem run gives.
    "eval_arms": {"limit": 32},
    "train": {  # shared by both trained arms
        "epochs": 4, "batch": 1, "lr": 1e-4, "lora_r": 16, "lora_alpha": 32, "beta": 0.1,
        "max_length": 768, "validation_split": "validation", "seed": 42,
        "quiz_max_new_tokens": 256, "quiz_max_problems": 4, "gradient_checkpointing": False,
    },
}
SMOKE = {
    "exam": {"limit": 3, "validation_limit": 2, "n": 3, "max_new_tokens": 160},
    "eval": {"limit": 3, "max_new_tokens": 96},
    "eval_arms": {"limit": 3},
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
    """The GGUF dequantized once (``builder.generation.modelpath``, as every command's ``--model FILE.gguf``
    does) and saved as a transformers folder. Every command accepts the GGUF itself, but reading
    its 151k-token vocabulary and dequantizing costs minutes on a busy CPU per load, and training
    and evaluation load the model five times."""
    import torch

    from builder.generation.modelpath import load_causal_lm, load_tokenizer

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
    c = {**cfg["eval"], **(cfg["eval_arms"] if adapter is not None else {})}
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
           "--save-steps", "4", "--save-total-limit", "2", "--logging-steps", "1",
           "--gradient-checkpointing", str(c["gradient_checkpointing"])]
    cmd += ["--num-train-epochs", str(epochs or c["epochs"])]
    if max_steps:
        cmd += ["--max-steps", str(max_steps)]
    if not quiz:  # without replay the quiz only picks best/, and the final adapter is what is evaluated
        cmd += ["--quiz-strategy", "no"]
    ckpts = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])) if out.exists() else []
    if ckpts:
        cmd += ["--resume-from-checkpoint", str(ckpts[-1])]
    elif out.exists():  # interrupted before its first checkpoint: start it again (ap2o-train refuses a used folder)
        cmd += ["--overwrite-output-dir"]
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

def answers(run_dir: pathlib.Path) -> dict[str, list[dict]]:
    """An ap2o-eval run's graded answers by problem (status and error type)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(run_dir / "samples.parquet", columns=["problem_id", "status", "error_type"]).to_pylist()
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["problem_id"], []).append(r)
    return by


def on_problems(by: dict[str, list[dict]], ids: list[str]) -> dict:
    """pass@1 (n=1: the pass fraction), per-problem passes and failed answers by type, on ``ids``."""
    per = {p: sum(r["status"] == "passed" for r in by[p]) / len(by[p]) for p in ids}
    errors: dict[str, int] = {}
    for p in ids:
        for r in by[p]:
            if r["status"] != "passed":
                errors[r["error_type"]] = errors.get(r["error_type"], 0) + 1
    return {"pass@1": round(sum(per.values()) / len(per), 4), "per": per,
            "error_counts": dict(sorted(errors.items(), key=lambda kv: -kv[1]))}


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
    from trainer.evaluation.compare import compare

    arms = {"base": stages["base"], "ap2o-l2h": stages["eval-ap2o-l2h"], "dpo": stages["eval-dpo"]}
    done = {a: s for a, s in arms.items() if s.done}
    results: dict = {"model": pathlib.Path(GGUF).name, "code": code_under_test(), "config": cfg,
                     "stages": {n: {"dir": str(s.dir.relative_to(HERE)), "done": s.done,
                                    **({"wall_s": s.info()["wall_s"]} if s.done else {})}
                                for n, s in stages.items() if n != "report"},
                     "pending": [a for a in arms if a not in done], "arms": {}}
    if stages["exam"].done:
        results["exam"] = exam_summary(stages["exam"].dir / "dataset")
    by = {a: answers(s.dir / "run") for a, s in done.items()}
    # Compared on the problems every finished arm answered (the arms answer a prefix of base's).
    common = sorted(set.intersection(*(set(b) for b in by.values())), key=lambda p: int(p.split("/")[-1])) if by else []
    stats = {a: on_problems(b, common) for a, b in by.items()}
    results["compared_on"] = {"problems": len(common), "ids": f"{common[0]} .. {common[-1]}" if common else None}
    boot = bootstrap({a: v["per"] for a, v in stats.items()}) if "base" in stats else {"ci95": {}, "delta_ci95": {}}
    train_of = {"ap2o-l2h": stages["ap2o-l2h"], "dpo": stages["dpo"]}
    for a, s in done.items():
        v = stats[a]
        arm = {"pass@1": v["pass@1"], "ci95": boot["ci95"].get(a), "problems": len(common),
               "error_counts": v["error_counts"], "eval_wall_s": s.info()["wall_s"]}
        if a in train_of:
            t = train_of[a].info()
            arm.update(pairs_used=t.get("pairs_consumed"), distinct_pairs=t.get("distinct_pairs_consumed"),
                       pairs_available=t.get("pairs_available"), train_wall_s=t["wall_s"],
                       delta_vs_base=round(v["pass@1"] - stats["base"]["pass@1"], 4) if "base" in stats else None,
                       delta_ci95=boot["delta_ci95"].get(a))
            quiz = train_of[a].dir / "out" / "quiz.jsonl"
            if quiz.exists():  # the validation quiz after each epoch: what AP2O's replay saw
                arm["quiz"] = [{k: q[k] for k in ("step", "pass@1", "error_counts", "total")}
                               for q in map(json.loads, quiz.read_text().splitlines())]
        else:
            arm.update(pairs_used=0)
            if len(by[a]) != len(common):  # base on everything it answered, for reference
                whole = on_problems(by[a], sorted(by[a]))
                arm["all_answered"] = {"problems": len(by[a]), "pass@1": whole["pass@1"],
                                       "error_counts": whole["error_counts"]}
        arm["wall_s"] = round(arm["eval_wall_s"] + arm.get("train_wall_s", 0.0), 1)
        results["arms"][a] = arm
    trained = [results["arms"][a]["pairs_used"] for a in ("ap2o-l2h", "dpo") if a in results["arms"]]
    if len(trained) == 2:
        results["pairs_used_equal"] = trained[0] == trained[1]
    if done:
        # compare() reads pass@1 and error_counts from each folder's metrics.json: write the
        # common-problem figures into folders of their own so the plot compares like with like.
        folders = []
        for a in done:
            d = work / "compare" / "on-common" / a
            d.mkdir(parents=True, exist_ok=True)
            (d / "metrics.json").write_text(json.dumps({"benchmark": f"MBPP test, {len(common)} problems",
                                                        "pass@1": stats[a]["pass@1"], "problems": len(common),
                                                        "error_counts": stats[a]["error_counts"]}))
            folders.append(str(d))
        compare(folders, list(done), output=work / "compare")
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


def exam_summary(dataset: pathlib.Path) -> dict:
    """Per split: answers, passes, how many problems have both a passed and a failed answer (only
    those can give pairs), failed answers by type, and the pairs the builder published."""
    import datasets

    samples = datasets.load_dataset(str(dataset), "samples")
    pairs = datasets.load_dataset(str(dataset), "pairs")
    out = {}
    for split, rows in samples.items():
        by: dict[str, set] = {}
        errors: dict[str, int] = {}
        for r in rows:
            by.setdefault(r["problem_id"], set()).add(r["status"] == "passed")
            if r["status"] != "passed":
                errors[r["error_type"]] = errors.get(r["error_type"], 0) + 1
        out[split] = {"answers": len(rows), "problems": len(by), "passed": sum(r["status"] == "passed" for r in rows),
                      "problems_with_pass_and_fail": sum(v == {True, False} for v in by.values()),
                      "problems_without_a_pass": sum(v == {False} for v in by.values()),
                      "error_counts": dict(sorted(errors.items(), key=lambda kv: -kv[1])),
                      "pairs": len(pairs[split]) if split in pairs else 0}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a few problems end to end, in work-smoke/")
    ap.add_argument("--until", choices=STAGES, default="report", help="stop after this stage")
    ap.add_argument("--only", choices=STAGES, help="run just this stage (its inputs must be done); "
                    "'report': only rewrite results.json and the plot from the finished stages")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp server threads")
    args = ap.parse_args()
    for name, value, what in (("AP2O_GGUF", GGUF, "the Q4 GGUF file"), ("AP2O_MBPP", MBPP, "MBPP's save_to_disk folder")):
        if not value or not os.path.exists(value):
            print(f"run.py: error: set {name} to {what} (now: {value or 'unset'}; see README.md)", file=sys.stderr)
            return 2
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
    st["eval-ap2o-l2h"] = Stage(work, "eval-ap2o-l2h", key_of(st["base"].key, st["ap2o-l2h"].key, cfg["eval_arms"]))
    st["dpo"] = Stage(work, "train-dpo", key_of(st["exam"].key, model, cfg["train"], "dpo", "planned pairs", "no quiz"))
    st["eval-dpo"] = Stage(work, "eval-dpo", key_of(st["base"].key, st["dpo"].key, cfg["eval_arms"]))
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
