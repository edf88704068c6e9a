"""Right answers get the verdict a plain run gives (issue 20, item 6): one class of honest answer
per test, graded by the real sandbox, where the judge sees the answer only through the codec.

Each case is a program that passes when the answer, the test and ``check(candidate)`` run in one
interpreter (``tests/test_differential.py`` checks that for real datasets); the property is that
the sandbox passes it too, while the forgeries of ``test_forgery.py`` still fail.
"""

from __future__ import annotations

import textwrap

import pytest
from sandboxed import grade_one

from builder.grading import taxonomy
from builder.grading.grader import Grader, GraderConfig

GRADER_SETTINGS = {"timeout_s": 10.0}  # conftest's `grader`


def plain_run(code: str, test: str, entry_point: str = "f") -> bool:
    """The reference: answer, test and check in one interpreter."""
    namespace: dict = {"__name__": "__plain__"}
    exec(textwrap.dedent(code) + "\n" + textwrap.dedent(test), namespace)  # noqa: S102 - our own test programs
    namespace["check"](namespace[entry_point])
    return True


CASES = {
    # MBPP/927 and /367: the test reads objects the answer builds at module level
    "names the answer defines (a tree)": ("""
        class Node:
            def __init__(self, data):
                self.data, self.left, self.right = data, None, None
        def max_height(node):
            return 0 if node is None else 1 + max(max_height(node.left), max_height(node.right))
        root = Node(1)
        root.left = Node(2)
        root.left.left = Node(3)
        root1 = Node(7)
        """, """
        def check(candidate):
            assert candidate(root) == 3
            assert candidate(root1) == 1
            assert root.data == 1 and root.left.data == 2 and root.right is None
        """, "max_height"),
    "another function of the answer": ("""
        def get_height(node):
            return 0 if node is None else 1 + max(get_height(node[0]), get_height(node[1]))
        def is_tree_balanced(node):
            return node is None or abs(get_height(node[0]) - get_height(node[1])) <= 1
        root = ((None, None), None)
        """, """
        def check(candidate):
            assert is_tree_balanced(root) == True
            assert candidate(root) == 2
        """, "get_height"),
    "arguments sorted and filled in place": ("""
        def f(xs, d, s, b):
            xs.sort()
            xs[0].append(9) if isinstance(xs[0], list) else None
            d["k"] = len(xs)
            s.add(5)
            b[0:1] = b"Z"
        """, """
        def check(candidate):
            inner = [0]
            xs, d, s, b = [[1], inner], {}, {1}, bytearray(b"ab")
            assert candidate(xs, d, s, b) is None
            assert xs == [[0, 9], [1]] and xs[0] is inner and inner == [0, 9]
            assert d == {"k": 2} and s == {1, 5} and b == bytearray(b"Zb")
        """, "f"),
    "a result that is its argument": ("""
        def f(xs):
            xs.append(len(xs))
            return xs
        """, """
        def check(candidate):
            xs = [1]
            ys = candidate(xs)
            assert ys is xs and xs == [1, 1]
        """, "f"),
    "aliasing inside a value": ("""
        def f():
            a = [1]
            c = []
            c.append(c)
            return [a, a], c
        """, """
        def check(candidate):
            (x, y), c = candidate()
            assert x is y and c[0] is c
            x.append(2)
            assert y == [1, 2]
        """, "f"),
    "a test that captures stdout": ("""
        def f(n):
            for i in range(n):
                print(i)
        """, """
        import contextlib, io
        def check(candidate):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                candidate(3)
            assert buf.getvalue() == "0\\n1\\n2\\n"
        """, "f"),
    "exception args and attributes": ("""
        class ParseError(ValueError):
            def __init__(self, msg, pos):
                super().__init__(msg, pos)
                self.pos = pos
        def f(x):
            if x == "key":
                raise KeyError("missing")
            raise ParseError("bad", 3)
        """, """
        def check(candidate):
            try:
                candidate("key")
            except KeyError as e:
                assert e.args == ("missing",) and str(e) == "'missing'"
            try:
                candidate("x")
            except ParseError as e:
                assert e.args == ("bad", 3) and e.pos == 3 and isinstance(e, ValueError)
            else:
                raise AssertionError("no error")
        """, "f"),
    "an exception class the test catches by its base": ("""
        class Base(Exception):
            pass
        class Special(Base):
            def __str__(self):
                return "special!"
        def f():
            raise Special()
        """, """
        def check(candidate):
            try:
                candidate()
            except Base as e:
                assert type(e).__name__ == "Special" and str(e) == "special!"
        """, "f"),
    "module constants the test reads": ("""
        TABLE = {"a": 1}
        SEEN = []
        def f(k):
            SEEN.append(k)
            return TABLE[k]
        """, """
        def check(candidate):
            assert candidate("a") == TABLE["a"] == 1
            candidate("a")
            assert SEEN == ["a", "a"]
        """, "f"),
    "instances, attributes and methods": ("""
        class Stack:
            def __init__(self):
                self.items = []
            def push(self, x):
                self.items.append(x)
                return self
            def __len__(self):
                return len(self.items)
            def __iter__(self):
                return iter(self.items)
            def __str__(self):
                return "Stack(%d)" % len(self.items)
        def f():
            return Stack()
        """, """
        def check(candidate):
            s = candidate()
            s.push(1).push(2)
            assert len(s) == 2 and list(s) == [1, 2] and s.items == [1, 2] and 2 in s
            assert str(s) == "Stack(2)" and s.items[-1] == 2
        """, "f"),
    "a generator the test iterates": ("""
        def f(n):
            return (i * i for i in range(n))
        """, """
        def check(candidate):
            assert list(candidate(4)) == [0, 1, 4, 9]
            assert sorted(candidate(3)) == [0, 1, 4]
        """, "f"),
    "a large return": ("""
        def f(n):
            return list(range(n))
        """, """
        def check(candidate):
            out = candidate(10_000_000)
            assert len(out) == 10_000_000 and out[-1] == 9_999_999
        """, "f"),
    "deep nesting": ("""
        def f(depth):
            out = []
            for _ in range(depth):
                out = [out]
            return out
        """, """
        def check(candidate):
            v = candidate(900)
            n = 0
            while v:
                v, n = v[0], n + 1
            assert n == 900
            assert candidate(150) == candidate(150)
        """, "f"),
    "a module the answer imported under another name": ("""
        import math as m
        def f(x):
            return m.sqrt(x)
        """, """
        def check(candidate):
            assert m.isclose(candidate(16), 4.0)
        """, "f"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_honest_answer_gets_the_plain_runs_verdict(grader, case):
    code, test, entry_point = CASES[case]
    assert plain_run(code, test, entry_point)  # the premise
    v = grade_one(grader, code, test, entry_point)
    assert v.passed, v


def test_a_value_too_large_for_the_sandbox_is_a_resource_error_not_the_answers_bug():
    # 30M references (240 MB packed) are more than the channel carries (a quarter of 768 MiB)
    code = "def f(n):\n    return [1] * n\n"
    test = "def check(candidate):\n    assert len(candidate(30_000_000)) == 30_000_000\n"
    with Grader(GraderConfig(timeout_s=30.0, workers=1, memory_mb=768)) as g:
        v = grade_one(g, code, test)
    assert (v.error_type, v.error_category) == ("MemoryError", taxonomy.RESOURCE), v
    assert "too large" in v.error_message


def test_what_the_test_cannot_see_still_decides_nothing(grader):
    # the answer's own objects keep no say over equality or truth: the forgery classes still fail
    code = """
        class Anything:
            def __eq__(self, other):
                return True
            def __bool__(self):
                return True
            def __len__(self):
                return 3
        def f():
            return Anything()
        """
    for test in ("def check(candidate):\n    assert candidate() == [1, 2, 3]\n",
                 "def check(candidate):\n    assert candidate()\n"):
        assert not grade_one(grader, code, test).passed


def test_a_test_that_copies_what_the_answer_returned_keeps_its_handle(grader):
    code = "class Box:\n    def __init__(self, v):\n        self.v = v\ndef f(v):\n    return [Box(v)]\n"
    test = "import copy\ndef check(candidate):\n    out = candidate(3)\n    again = copy.deepcopy(out)\n" \
           "    assert again[0] is out[0] and again[0].v == 3 and copy.copy(out[0]) is out[0]\n"
    assert grade_one(grader, code, test).passed
