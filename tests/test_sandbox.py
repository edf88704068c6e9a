"""Adversarial answers: one property of the sandbox each (docs/sandbox.md).

Each test runs a hostile answer through the real grader and then checks the host (files,
sockets, processes, this very process) or the verdict. Properties that need namespaces are
skipped, with the reason, where bubblewrap does not work; docs/sandbox.md says what is then not
covered.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import sys
import tempfile
import textwrap
import threading
import time

import pytest
from processes import descendants
from sandboxed import grade_one

from builder.grading import taxonomy
from builder.grading.grader import Grader, GraderConfig
from builder.grading.sandbox import bwrap, pool

REPO = pathlib.Path(__file__).resolve().parents[1]
LIMIT = 1.0
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
RIGHT = "def add(a, b):\n    return a + b\n"
HAS_BWRAP = bwrap.available(pool.PACKAGE_DIR) is None
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap does not work here: no namespaces")
# the uids this process's graders give answers (other processes' graders use other ranges)
SANDBOX_UIDS = {pool.Worker._uid(i) for i in range(16)}


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _sandbox_processes() -> list[int]:
    """Processes running under one of our answer uids (as root, answers get uids of their own),
    but the workers' long-lived judges, which run under that uid between answers."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid in SANDBOX_UIDS and _comm(int(entry)) != "ap2o-judge":
                    found.append(int(entry))
            except OSError:
                pass
    return found


def _sandbox_tree() -> list[int]:
    """Our descendants but the judges (started on a worker's first function answer, again after a
    run that ended without its report): the workers, zygotes and bubblewraps, and any leftover."""
    return [p for p in descendants() if _comm(p) != "ap2o-judge"]


@pytest.fixture(scope="module", autouse=True)
def host_is_unharmed_afterwards():
    """After every test of this module (and every grader closed): no answer process, no sandbox
    worker and no sandbox temp directory is left behind."""
    tmp = pathlib.Path(tempfile.gettempdir())
    ours = f"ap2o-sandbox-{os.getpid()}-*"  # other processes' graders may come and go meanwhile
    dirs_before = set(tmp.glob(ours))
    yield
    deadline = time.monotonic() + 5
    while (_sandbox_processes() or descendants()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sandbox_processes() == []
    assert descendants() == []
    assert set(tmp.glob(ours)) <= dirs_before


GRADER_SETTINGS = {"timeout_s": LIMIT}  # conftest's `grader`


def D(code: str) -> str:
    return textwrap.dedent(code)


# --- time ------------------------------------------------------------------------------------------

def test_infinite_loop_is_killed_at_the_deadline(grader):
    v = grade_one(grader, "def add(a, b):\n    while True:\n        pass\n", TEST, "add")
    # the worker's own-time clock ended it (not the host's watchdog); how much wall time that took
    # depends on the load, which the limit leaves out (meter.py): no bound on it here
    assert (v.error_type, v.error_message) == (taxonomy.TIMEOUT, f"no result within {LIMIT:g} s")
    assert v.runtime_s >= LIMIT


def test_loop_that_swallows_every_exception_is_still_a_timeout(grader):
    v = grade_one(grader, """
        def add(a, b):
            while True:
                try:
                    while True:
                        pass
                except BaseException:
                    pass
    """, TEST, "add")
    assert v.error_type == taxonomy.TIMEOUT


def test_program_that_ignores_the_timeout_signals_is_still_a_timeout(grader):
    # a stdio program runs on the main thread, so it can install signal handlers
    program = D("""
        import signal
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGXCPU, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(s, signal.SIG_IGN)
        while True:
            pass
    """)
    v = grader.grade([{"completion": program, "inputs": [""], "outputs": [""]}])[0]
    assert v.error_type == taxonomy.TIMEOUT


# --- resources -------------------------------------------------------------------------------------

def test_memory_bomb_hits_the_address_space_limit(grader):
    v = grade_one(grader, """
        hoard = []
        def add(a, b):
            while True:
                hoard.append(bytes(256 * 1024 * 1024))
    """, TEST, "add")
    assert v.error_type == "MemoryError"


def test_fork_bomb_is_contained_and_leaves_no_process(grader):
    v = grade_one(grader, """
        import os
        def add(a, b):
            while True:
                try:
                    if os.fork() == 0:
                        os.setsid()  # try to leave the process group that gets killed
                except OSError:
                    pass
    """, TEST, "add")
    assert not v.passed
    assert _sandbox_processes() == []
    assert len(_sandbox_tree()) == 2 * (4 if HAS_BWRAP else 2)  # just the workers, zygotes (and bwraps)


def test_daemonized_process_does_not_survive_its_answer(grader, tmp_path):
    v = grade_one(grader, D("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
    """) + RIGHT, TEST, "add")
    assert v.passed
    assert _sandbox_processes() == []
    assert len(_sandbox_tree()) == 2 * (4 if HAS_BWRAP else 2)


def test_huge_stdout_is_drained_and_capped(grader):
    v = grade_one(grader, """
        import sys
        def add(a, b):
            chunk = "z" * (1 << 20)
            for _ in range(16):  # 16 MiB: far over what is kept, small enough for a busy machine
                sys.stdout.write(chunk)
            print("end")
            return a + b
    """, TEST, "add")
    assert v.passed  # a function answer's prints never decide its verdict
    assert v.stdout.endswith("end\n") and len(v.stdout) <= GraderConfig().stdout_keep_bytes


def test_answer_cannot_raise_its_own_limits(grader):
    v = grade_one(grader, D("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    """) + RIGHT, TEST, "add")
    assert v.error_type in ("ValueError", "PermissionError")


# --- files, secrets, network, other processes ------------------------------------------------------

def test_files_outside_the_scratch_dir_are_untouched(grader, tmp_path):
    marker = tmp_path / "marker.txt"
    marker.write_text("intact")
    intruder = REPO / "ap2o-sandbox-was-here.txt"
    v = grade_one(grader, f"""
        import os, shutil
        def add(a, b):
            for attempt in (lambda: os.remove({str(marker)!r}),
                            lambda: open({str(marker)!r}, "w").write("pwned"),
                            lambda: shutil.rmtree({str(tmp_path)!r}),
                            lambda: open({str(intruder)!r}, "w").write("pwned"),
                            lambda: open("scratch-file.txt", "w").write("mine")):
                try:
                    attempt()
                except OSError:
                    pass
            return a + b
    """, TEST, "add")
    if not HAS_BWRAP and not (os.geteuid() == 0 and pool._python_shared()):
        pytest.skip("without bubblewrap or a uid of its own, an answer can write what we can")
    assert v.passed
    assert marker.read_text() == "intact"
    assert not intruder.exists()


@needs_bwrap
def test_home_root_and_working_tree_are_not_visible(grader):
    home = pathlib.Path.home()
    # the one thing of ours an answer may see under home: the way down to the Python it runs on
    python = pathlib.Path(sys.base_prefix)
    allowed = {python.relative_to(home).parts[0]} if python.is_relative_to(home) else set()
    # the tree's parent too, unless the sandbox provides a directory of that name itself (a clone
    # under /tmp has /tmp as parent, and the answer's private /tmp exists)
    ours = [REPO, REPO / "pyproject.toml"] + ([REPO.parent] if str(REPO.parent) not in ("/", "/tmp") else [])
    v = grade_one(grader, f"""
        import os
        def add(a, b):
            seen = [p for p in ({", ".join(repr(str(p)) for p in ours)}, "/home/" + str(os.getuid()))
                    if os.path.exists(p)]
            for d in ("/home", {str(home)!r}):
                if os.path.isdir(d):
                    seen += sorted(set(os.listdir(d)) - {allowed!r})
            return a + b if not seen else seen
    """, TEST, "add")
    assert v.passed, v


def test_environment_secret_is_not_readable(monkeypatch):
    secret = "ap2o-secret-7f3a9c"
    monkeypatch.setenv("AP2O_TEST_SECRET", secret)
    code = f"""
        import os
        def add(a, b):
            print(dict(os.environ))
            for path in ("/proc/self/environ", "/proc/1/environ", "/proc/{os.getpid()}/environ",
                         "/proc/%d/environ" % os.getppid()):
                try:
                    print(open(path, "rb").read())
                except OSError as e:
                    print(path, e)
            return a + b
    """
    with Grader(GraderConfig(timeout_s=LIMIT, workers=1)) as g:
        v = grade_one(g, code, TEST, "add")
    if not HAS_BWRAP and not (os.geteuid() == 0 and pool._python_shared()):
        pytest.skip("without bubblewrap or a uid of its own, /proc/<our pid>/environ is readable")
    assert v.passed
    assert "AP2O_TEST_SECRET" not in v.stdout and secret not in v.stdout


@needs_bwrap
def test_network_is_unreachable(grader):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        v = grade_one(grader, f"""
            import socket
            def add(a, b):
                try:
                    s = socket.create_connection(("127.0.0.1", {port}), timeout=0.5)
                    s.sendall(b"pwned")
                    return "connected"
                except OSError:
                    return a + b
        """, TEST, "add")
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()
    assert v.passed


def test_killing_the_parent_harms_neither_the_grader_nor_us(grader):
    me = os.getpid()
    v = grade_one(grader, f"""
        import os, signal
        def add(a, b):
            for pid in (os.getppid(), {me}, 1):
                for sig in (signal.SIGKILL, signal.SIGTERM):
                    try:
                        os.kill(pid, sig)
                    except OSError:
                        pass
            try:
                os.killpg({os.getpgid(me)}, signal.SIGKILL)
            except OSError:
                pass
            return a + b
    """, TEST, "add")
    assert os.getpid() == me  # still here
    assert v.error_type in (None, taxonomy.CRASH)
    assert grade_one(grader, RIGHT, TEST, "add").passed  # and the pool still grades


# --- reward hacks ----------------------------------------------------------------------------------

def test_sys_exit_zero_before_the_tests_is_early_exit(grader):
    assert grade_one(grader, "import sys\nsys.exit(0)\n" + RIGHT, TEST, "add").error_type == taxonomy.EARLY_EXIT


def test_os_exit_zero_before_the_tests_is_early_exit(grader):
    v = grade_one(grader, "import os\ndef add(a, b):\n    os._exit(0)\n", TEST, "add")
    assert (v.passed, v.error_type) == (False, taxonomy.EARLY_EXIT)


def test_always_equal_object_does_not_pass(grader):
    v = grade_one(grader, """
        class Anything:
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
            def __bool__(self):
                return True
        def add(a, b):
            return Anything()
    """, TEST, "add")
    assert v.error_type == taxonomy.WRONG_RESULT


def test_builtin_subclass_compares_as_its_plain_value(grader):
    cheat = "class Int(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
    assert grade_one(grader, cheat + "def add(a, b):\n    return Int(0)\n", TEST, "add").error_type == taxonomy.WRONG_RESULT
    assert grade_one(grader, cheat + "def add(a, b):\n    return Int(a + b)\n", TEST, "add").passed


def test_patched_builtins_and_modules_do_not_rig_the_test(grader):
    test = "import math\ndef check(candidate):\n    assert abs(candidate(2, 3) - 5) < 1e-9\n    assert math.isclose(candidate(1, 1), 2)\n"
    v = grade_one(grader, """
        import builtins, math
        builtins.abs = lambda x: 0
        math.isclose = lambda *a, **k: True
        def add(a, b):
            builtins.abs = lambda x: 0
            math.isclose = lambda *a, **k: True
            return 0
    """, test, "add")
    assert v.error_type == taxonomy.WRONG_RESULT


def test_fake_module_for_a_test_that_relies_on_the_prompts_imports(grader):
    test = "def check(candidate):\n    assert math.isclose(candidate(2, 3), 5)\n"  # no import of its own
    v = grade_one(grader, """
        import math as real
        class FakeMath:
            def isclose(self, *args, **kwargs):
                return True
        math = FakeMath()
        def add(a, b):
            return 0
    """, test, "add")
    assert v.error_type == taxonomy.WRONG_RESULT


def test_what_the_answer_does_to_its_arguments_the_test_sees_as_in_a_plain_run(grader):
    # a plain run shares the test's list with the answer: so does the sandbox (the new contents
    # come back with the reply). A test that computes its expectation from an argument after the
    # call (the second one) is as weak here as in a plain run: the verdict is the plain run's.
    in_place = "def check(candidate):\n    xs = [3, 1, 2]\n    assert candidate(xs) is None\n    assert xs == [1, 2, 3]\n"
    assert grade_one(grader, "def sort_list(xs):\n    xs.sort()\n", in_place, entry_point="sort_list").passed
    after = "def check(candidate):\n    xs = [3, 1, 2]\n    assert candidate(xs) == sorted(xs)\n"
    v = grade_one(grader, "def sort_list(xs):\n    xs.clear()\n    return []\n", after,
                  entry_point="sort_list")
    assert v.passed  # [] == sorted([]) after the call, in a plain run too


def test_the_answers_frames_memory_and_neighbours_hold_no_test(grader):
    # everything an answer can walk or open: its frames, every object of its heap, the other
    # processes it can see (the judge, the worker); finding the test would let it pass
    v = grade_one(grader, """
        import gc, os, sys, types
        def add(a, b):
            found = []
            frame = sys._getframe()
            while frame is not None:
                if frame.f_code.co_name == "check" or "candidate" in frame.f_locals:
                    found.append(frame)
                frame = frame.f_back
            for obj in gc.get_objects():
                if isinstance(obj, types.FunctionType) and obj.__name__ == "check":
                    found.append(obj)
                elif isinstance(obj, dict) and ("test" in obj and "entry_point" in obj or "check" in obj):
                    found.append(obj)
            for pid in filter(str.isdigit, os.listdir("/proc")):
                if int(pid) != os.getpid():
                    for what in ("mem", "environ", "fd"):
                        try:
                            (os.listdir if what == "fd" else open)(f"/proc/{pid}/{what}")
                            found.append((pid, what))
                        except OSError:
                            pass
            return a + b if found else None  # would pass: it saw the test (or could have)
    """, TEST, "add")
    if not HAS_BWRAP and os.geteuid() != 0:
        pytest.skip("without bubblewrap or root, the answer shares our uid and can open our /proc files")
    assert v.error_type == taxonomy.WRONG_RESULT, v


def test_forged_report_is_not_a_pass(grader):
    v = grade_one(grader, """
        import os, marshal
        fake = marshal.dumps({"ok": True})
        for fd in range(3, 1024):
            for prefix in (b"", os.urandom(16)):
                try:
                    os.write(fd, prefix + fake)
                except OSError:
                    pass
        os._exit(0)
    """, TEST, "add")
    assert not v.passed


def test_thread_left_running_changes_nothing(grader):
    v = grade_one(grader, D("""
        import threading
        def spin():
            while True:
                pass
        threading.Thread(target=spin).start()
    """) + RIGHT, TEST, "add")
    assert v.passed and v.runtime_s < LIMIT


# --- placement -------------------------------------------------------------------------------------

CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
AFFINITY_TEST = "def check(candidate):\n    assert candidate() == 1\n"
AFFINITY = "import os\ndef cores():\n    return len(os.sched_getaffinity(0))\n"


@pytest.mark.skipif(len(CORES) < 2, reason="pinning needs two cores to choose from")
def test_answers_of_a_pinned_worker_run_on_one_core(grader):
    assert grade_one(grader, AFFINITY, AFFINITY_TEST, "cores").passed


@pytest.mark.skipif(len(CORES) < 2, reason="pinning needs two cores to choose from")
def test_unpinned_workers_leave_placement_to_the_scheduler():
    with Grader(GraderConfig(timeout_s=LIMIT, workers=1, pin_workers=False)) as g:
        v = grade_one(g, AFFINITY, AFFINITY_TEST, "cores")
    assert v.error_type == taxonomy.WRONG_RESULT


def test_inherited_descriptors_are_closed_but_the_kept_ones(tmp_path):
    from builder.grading.sandbox.worker import _close_all_but

    out = tmp_path / "left"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the file
        try:
            fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(12)]
            _close_all_but({0, 1, 2, fds[6]})
            left = sorted(int(n) for n in os.listdir("/proc/self/fd"))  # the listing's own descriptor is one of them
            out.write_text(" ".join(map(str, left)) + f" kept {fds[6]}")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    *left, _, kept = out.read_text().split()
    assert [int(x) for x in left if int(x) != int(kept)][:3] == [0, 1, 2] and kept in left and len(left) == 5


# --- without bubblewrap ----------------------------------------------------------------------------

def test_rlimits_only_mode_still_grades_and_contains_time_and_memory():
    with Grader(GraderConfig(timeout_s=LIMIT, workers=1, isolation="rlimits")) as g:
        assert not g.isolated
        verdicts = g.grade([
            {"completion": RIGHT, "test": TEST, "entry_point": "add"},
            {"completion": "def add(a, b):\n    while True:\n        pass\n", "test": TEST, "entry_point": "add"},
            {"completion": "x = bytearray(8 * 1024 ** 3)\n" + RIGHT, "test": TEST, "entry_point": "add"},
            {"completion": "import os\nos._exit(0)\n", "test": TEST, "entry_point": "add"},
        ])
    assert [v.error_type for v in verdicts] == [None, taxonomy.TIMEOUT, "MemoryError", taxonomy.EARLY_EXIT]


def test_missing_bubblewrap_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(bwrap, "available", lambda package_dir: "bubblewrap (bwrap) is not installed")
    monkeypatch.setattr(pool, "_warned", False)
    with pytest.warns(RuntimeWarning, match="bubblewrap"):
        assert pool.resolve_isolation("auto") is False
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pool.resolve_isolation("auto") is False  # no second warning
    with pytest.raises(pool.SandboxError, match="not installed"):
        pool.resolve_isolation("bwrap")


def test_stdio_program_cannot_find_the_expected_output_in_memory(grader):
    program = D("""
        import sys
        frame, answer = sys._getframe(), "nothing"
        while frame is not None:
            for value in list(frame.f_locals.values()):
                if isinstance(value, dict) and value.get("outputs"):
                    answer = value["outputs"][0]
            frame = frame.f_back
        print(answer)
    """)
    v = grader.grade([{"completion": program, "inputs": ["7\n"], "outputs": ["secret-42"]}])[0]
    assert v.error_type == taxonomy.WRONG_RESULT and "nothing" in v.failed_test


# --- the host side survives its workers ---------------------------------------------------------------

def _kill_worker_soon(g: Grader, sig: int, delay: float = 0.2) -> threading.Thread:
    """Send ``sig`` to the worker process itself (inside bubblewrap, when there is one)."""
    def kill():
        time.sleep(delay)
        for w in g._pool._workers:
            # the first Python below the pool's child (which is bwrap, when there is one); the
            # answers below it are forks of the worker and come and go meanwhile
            for pid in [w.proc.pid, *pool.descendants(w.proc.pid)]:
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        argv0 = f.read().split(b"\0")[0]
                except OSError:
                    continue
                if os.path.basename(argv0).startswith(b"python"):
                    os.kill(pid, sig)
                    break

    t = threading.Thread(target=kill)
    t.start()
    return t


def test_a_worker_that_dies_mid_answer_is_replaced_and_the_answer_is_a_crash():
    with Grader(GraderConfig(timeout_s=LIMIT, workers=1)) as g:
        killer = _kill_worker_soon(g, signal.SIGKILL)
        v = grade_one(g, "import time\ndef add(a, b):\n    time.sleep(0.6)\n    return a + b\n", TEST, "add")
        killer.join()
        assert (v.error_type, v.status) == (taxonomy.CRASH, "crashed")
        assert grade_one(g, RIGHT, TEST, "add").passed


def test_a_worker_that_stops_answering_is_replaced_and_the_answer_is_a_timeout():
    with Grader(GraderConfig(timeout_s=LIMIT, workers=1)) as g:
        killer = _kill_worker_soon(g, signal.SIGSTOP)  # frozen: alive but silent
        v = grade_one(g, "import time\ndef add(a, b):\n    time.sleep(0.6)\n    return a + b\n", TEST, "add")
        killer.join()
        assert (v.error_type, v.status) == (taxonomy.TIMEOUT, "timeout")
        assert "restarted" in v.error_message
        assert grade_one(g, RIGHT, TEST, "add").passed


# --- one answer never changes another's verdict, never stops the run (issue 10, item 2) ---------------

LEFTOVERS = {
    "chmod of its scratch dir to 0": "import os\nos.chmod('.', 0)\n",
    "a 1,500-deep directory tree": D("""
        import os
        fd = os.open(".", os.O_RDONLY)
        for i in range(1500):
            os.mkdir("deep", dir_fd=fd)
            new = os.open("deep", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
    """),
    "unreadable directories full of files": D("""
        import os
        for d in ("a", "a/b", "a/b/c"):
            os.mkdir(d)
            for i in range(20):
                open(f"{d}/f{i}", "w").write("x")
        for d in ("a/b/c", "a/b", "a"):
            os.chmod(d, 0)
    """),
    "a symlink to the worker's own directory": "import os\nos.symlink('..', 'up')\nos.symlink('/', 'root')\n",
    "a file for the next answer to import": "open('helper_for_next.py', 'w').write('VALUE = 0')\n",
}
NEXT = ("import os\ndef add(a, b):\n    assert os.listdir('.') == [], os.listdir('.')\n"
        "    try:\n        import helper_for_next\n        return helper_for_next.VALUE\n"
        "    except ImportError:\n        return a + b\n")


@pytest.mark.parametrize("kind", sorted(LEFTOVERS))
def test_what_an_answer_leaves_changes_no_later_verdict(kind):
    with Grader(GraderConfig(timeout_s=5.0, workers=1)) as g:
        rows = [{"completion": LEFTOVERS[kind] + RIGHT, "test": TEST, "entry_point": "add"}]
        rows += [{"completion": NEXT, "test": TEST, "entry_point": "add"}] * 3
        verdicts = g.grade(rows)
    assert [v.error_type for v in verdicts] == [None] * 4, verdicts


def test_cleanup_removes_any_tree_without_following_links(tmp_path):
    from builder.grading.sandbox.worker import remove_tree

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    scratch = tmp_path / "base" / "a-1"
    scratch.mkdir(parents=True)
    fd = os.open(scratch, os.O_RDONLY)
    for _ in range(1500):  # deeper than PATH_MAX and Python's recursion limit
        os.mkdir("dddd", dir_fd=fd)
        new = os.open("dddd", os.O_RDONLY, dir_fd=fd)
        os.symlink(str(outside), "link", dir_fd=new)
        os.close(fd)
        fd = new
    os.close(fd)
    (scratch / "closed").mkdir()
    (scratch / "closed" / "f").write_text("x")
    os.chmod(scratch / "closed", 0)
    remove_tree(str(scratch))
    assert not scratch.exists() and list((tmp_path / "base").iterdir()) == []
    assert (outside / "keep.txt").read_text() == "keep"


def _zygote_of(g: Grader) -> int:
    """The worker's zygote: its oldest child (judges come and go, the zygote stays)."""
    w = g._pool._workers[0]
    for pid in [w.proc.pid, *pool.descendants(w.proc.pid)]:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if os.path.basename(f.read().split(b"\0")[0]).startswith(b"python"):
                worker = pid
                break
    kids = [p for p in pool.descendants(worker) if _ppid(p) == worker]
    return min(kids, key=_start_time)


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _start_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def test_a_broken_worker_labels_its_answer_and_the_run_goes_on():
    with Grader(GraderConfig(timeout_s=LIMIT, workers=1)) as g:
        os.kill(_zygote_of(g), signal.SIGKILL)  # what an answer under our uid could do to it
        verdicts = g.grade([{"completion": RIGHT, "test": TEST, "entry_point": "add"}] * 3)
    assert verdicts[0].error_type == taxonomy.CRASH and "replaced" in verdicts[0].error_message
    assert "zygote" in verdicts[0].traceback
    assert [v.passed for v in verdicts[1:]] == [True, True]


@pytest.mark.parametrize("sig", ["SIGSTOP", "SIGKILL", "SIGINT"])
def test_an_answer_cannot_signal_its_judge_worker_or_zygote(sig):
    # the judge runs under a uid of its own, the worker and zygote as root (issue 20, item 2)
    if os.geteuid() != 0 or not (HAS_BWRAP or pool._python_shared()):
        pytest.skip("without root the answer, its judge and its worker share one uid")
    killer = D(f"""
        import os, signal
        def add(a, b):
            reached = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                if int(pid) not in (os.getpid(), 1):
                    try:
                        os.kill(int(pid), signal.{sig})
                        reached.append(int(pid))
                    except OSError:
                        pass
            return a + b if not reached else reached
    """)
    with Grader(GraderConfig(timeout_s=LIMIT, workers=1)) as g:
        verdicts = g.grade([{"completion": c, "test": TEST, "entry_point": "add"} for c in (killer, RIGHT, RIGHT)])
    assert [v.passed for v in verdicts] == [True, True, True], verdicts


# --- the judge is out of the answer's reach; what reaches it anyway is never a pass (issue 20, item 2) ---

REACH = D("""
    import ctypes, os, resource, signal
    libc = ctypes.CDLL(None, use_errno=True)
    def add(a, b):
        reached = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            pid = int(pid)
            if pid in (os.getpid(), 1):
                continue
            for what, act in (("prlimit", lambda: resource.prlimit(pid, resource.RLIMIT_NOFILE, (0, 0))),
                              ("renice", lambda: os.setpriority(os.PRIO_PROCESS, pid, 19)),
                              ("re-pin", lambda: os.sched_setaffinity(pid, {min(os.sched_getaffinity(0))})),
                              ("ptrace", lambda: libc.ptrace(16, pid, None, None) == 0 or 1 / 0)):
                try:
                    act()
                    reached.append((pid, what))
                except (OSError, ZeroDivisionError):
                    pass
        return a + b if not reached else reached
""")


def test_an_answer_cannot_prlimit_renice_repin_or_ptrace_any_other_process():
    if os.geteuid() != 0 or not (HAS_BWRAP or pool._python_shared()):
        pytest.skip("without root the answer, its judge and its worker share one uid")
    with Grader(GraderConfig(timeout_s=LIMIT, workers=1)) as g:
        verdicts = g.grade([{"completion": c, "test": TEST, "entry_point": "add"} for c in (REACH, RIGHT)])
    assert [v.passed for v in verdicts] == [True, True], verdicts


SWALLOW = "def check(candidate):\n    try:\n        {act}\n    except BaseException:\n        pass\n" \
          "    assert candidate(2, 3) == 5\n"
FROM_THE_TEST = {
    "SIGINT": "import os, signal\n        os.kill(os.getpid(), signal.SIGINT)",
    "SIGTERM": "import os, signal\n        os.kill(os.getpid(), signal.SIGTERM)",
    "SIGTSTP": "import os, signal\n        os.kill(os.getpid(), signal.SIGTSTP)",
    "a lower RLIMIT_NOFILE": "import resource\n        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))",
}


@pytest.mark.parametrize("what", sorted(FROM_THE_TEST))
def test_a_signal_or_limit_that_reaches_the_judge_is_a_sandbox_error(grader, what):
    # the test is trusted code, run by the judge: it stands for any source (the answer can reach neither)
    test = SWALLOW.format(act=FROM_THE_TEST[what])
    v = grade_one(grader, RIGHT, test, "add")
    assert (v.passed, v.error_type) == (False, taxonomy.SANDBOX_ERROR), v
    assert v.error_category == taxonomy.RESOURCE and v.status == "crashed"
    assert grade_one(grader, RIGHT, TEST, "add").passed  # and the next answer gets a fresh judge


def _judges() -> list[int]:
    return [p for p in descendants() if _comm(p) == "ap2o-judge"]


@pytest.mark.parametrize("act", ["SIGINT", "SIGSTOP", "SIGTERM"])
def test_a_signal_from_outside_the_sandbox_is_a_sandbox_error(act):
    # the host reaches the judge while the answer sleeps: that test is never a pass
    slow = "import time\ndef add(a, b):\n    time.sleep(0.8)\n    return a + b\n"
    with Grader(GraderConfig(timeout_s=3.0, workers=1)) as g:
        assert grade_one(g, RIGHT, TEST, "add").passed  # the judge exists now

        def reach():
            time.sleep(0.3)
            for pid in _judges():
                os.kill(pid, getattr(signal, act))

        t = threading.Thread(target=reach)
        t.start()
        v = grade_one(g, slow, TEST, "add")
        t.join()
        assert (v.passed, v.error_type) == (False, taxonomy.SANDBOX_ERROR), v
        assert grade_one(g, RIGHT, TEST, "add").passed
