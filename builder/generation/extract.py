"""The program to run, out of whatever a model answered.

Answers come in three shapes: a raw completion (the prompt plus its continuation: already a
program), a chat answer with the code in a markdown fence, and prose with no code at all. The
grader runs what ``extract_code`` returns as a whole program and labels ``None`` as ``NoCode``,
so the rules here decide between "a program with a syntax error" (a real error type the paper
counts) and "nothing to run" (not an error of the code). They are deliberately simple:

* the first fence labelled ``python``/``py``/``python3`` or unlabelled wins; a fence that is never
  closed runs to the end of the text (generation often stops mid-block);
* a raw completion that trails off into a fence (``...return x\\n```\\nExplanation``) keeps the
  code before the fence;
* text without a fence is a program if it compiles or if it has lines that look like Python
  (then a syntax error in it is the answer's error, not a missing answer); prose is ``None``.

``sanitize`` then reduces a chat answer's code to the answer itself, as EvalPlus does before it
grades: instruct models append a self-test harness (``check_solution()`` called at module level,
with expectations of their own), and run as written, a wrong expectation there would be recorded
as the answer's error.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterable
from types import SimpleNamespace

PYTHON_LABELS = frozenset({"", "python", "py", "python3", "py3"})

# A fence line: optional indentation, three or more backticks or tildes, an optional info string.
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n]*$", re.MULTILINE)

# Lines only code starts with. Prose rarely does: "Here is the code:" ends with a colon but does
# not start with a keyword followed by code.
_CODE_LINE = re.compile(
    r"^\s*(def \w+\s*\(|class \w+|import \w|from [\w.]+ import |return\b|for .+ in .+:|while .+:|"
    r"if .+:\s*$|elif .+:|else\s*:|try\s*:|except\b.*:|with .+:|@\w|print\(|"
    r"[A-Za-z_][\w.\[\]]*\s*(,\s*[A-Za-z_][\w.]*\s*)*[-+*/%|&^]?=\s*[^=\s])",
    re.MULTILINE,
)


def extract_code(text: str | None) -> str | None:
    """The program in ``text``, or ``None`` when there is nothing to run."""
    if text is None or not text.strip():
        return None
    fences = list(_FENCE.finditer(text))
    if fences:
        before = text[: fences[0].start()]
        if before.strip() and _is_code(before):
            return before
        block = _first_python_block(text, fences)
        if block is None or not block.strip():
            return None
        return block
    return text if _is_code(text) else None


def _first_python_block(text: str, fences: list[re.Match]) -> str | None:
    """Pair fence lines (opening, closing, opening, ...) and return the first Python block."""
    i = 0
    while i < len(fences):
        opening = fences[i]
        marker, label = opening.group(1), opening.group(2).lower()
        # the closing fence uses the same character and is at least as long (CommonMark)
        j = i + 1
        while j < len(fences) and not (fences[j].group(1)[0] == marker[0]
                                       and len(fences[j].group(1)) >= len(marker)
                                       and not fences[j].group(2)):
            j += 1
        start = opening.end() + 1
        end = fences[j].start() if j < len(fences) else len(text)
        if label in PYTHON_LABELS:
            return text[start:end] if start <= end else ""
        i = j + 1
    return None


def _is_code(text: str) -> bool:
    if _CODE_LINE.search(text):  # the common case, without paying for a parse
        return True
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    except (RecursionError, MemoryError):  # absurdly nested text: let the sandbox label it
        return True
    # "Sorry" or a lone string parses, but a program does something: any other statement counts
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Constant)))
               for node in tree.body)


# Top-level statements that define something an entry point can depend on. Everything else at
# module level (calls, prints, asserts, loops, main guards) is the model's driver code.
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def sanitize(code: str, entry_point: str | None, *, also: Iterable[str] = ()) -> str:
    """``code`` reduced to its imports and the top-level functions, classes and assignments that
    ``entry_point`` reaches by name -- the program EvalPlus grades (``evalplus.sanitize``, there
    built on tree-sitter). Kept statements keep their text and their order, imports first.
    ``also`` names more roots: the names the problem's own test uses (HumanEval/38's test calls
    ``encode_cyclic``, which the prompt defines next to the entry point but never calls; EvalPlus
    does not need it because its tests compare outputs, ours run the original ``check``).

    As in EvalPlus, the first definition of a name wins and a dependency is any identifier or
    attribute name used in a kept definition. Where this differs, it is so as not to record an
    error the model never made: a function is kept even without a ``return`` (EvalPlus drops it,
    which turns an in-place helper into a ``NameError``), and so is an assignment to several names
    (``a, b = ...``). The code is returned unchanged when it does not parse (the grader must label
    that ``SyntaxError``), when ``entry_point`` is not given (nothing to anchor on: a stdio program
    is its module-level code), or when the entry point is not defined at top level (no answer to
    single out, so the program runs as written). Pure and total: it never raises on model text."""
    if not entry_point or not code:
        return code
    try:
        with warnings.catch_warnings():  # "invalid escape sequence" and the like are not ours to print
            warnings.simplefilter("ignore")
            tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code
    imports: list[ast.stmt] = []
    defined: dict[str, ast.stmt] = {}  # name -> the statement that first defines it
    order: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
            continue
        names = _defined_names(node)
        fresh = [n for n in names if n not in defined]
        if not names or len(fresh) < len(names):  # EvalPlus: a redefinition is dropped
            continue
        for name in names:
            defined[name] = node
        order.append(node)
    if entry_point not in defined:
        return code
    try:
        keep = _reachable([entry_point, *also], defined)
    except (RecursionError, MemoryError):
        return code
    kept = imports + [node for node in order if id(node) in keep]
    return "\n".join(_source(code, node) for node in kept) + "\n"


def used_names(code: str | None) -> set[str]:
    """Every identifier and attribute name ``code`` uses; empty when it does not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return set(_used_names(ast.parse(code or "")))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()


def _defined_names(node: ast.stmt) -> list[str]:
    """The names a top-level statement binds, for the statements the sanitizer keeps: a def, a
    class, or an assignment to plain names (``x = ...``, ``a, b = ...``, ``x: int = ...``). An
    assignment into a subscript or an attribute defines nothing new and is driver code."""
    if isinstance(node, _DEFINITIONS):
        return [node.name]
    if isinstance(node, ast.Assign):
        names = [_target_names(t) for t in node.targets]
        return [] if any(n is None for n in names) else [x for n in names for x in n]
    if isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _target_names(target: ast.expr) -> list[str] | None:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    if isinstance(target, (ast.Tuple, ast.List)):
        parts = [_target_names(e) for e in target.elts]
        return None if any(p is None for p in parts) else [x for p in parts for x in p]
    return None


def _used_names(node: ast.AST):
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            yield sub.id
        elif isinstance(sub, ast.Attribute):
            yield sub.attr
        elif isinstance(sub, (ast.Global, ast.Nonlocal)):  # a module-level counter a function updates
            yield from sub.names


def _reachable(roots: list[str], defined: dict[str, ast.stmt]) -> set[int]:
    """Ids of the statements reachable from ``roots`` through the names they use."""
    seen, todo, keep = set(roots), list(roots), set()
    while todo:
        node = defined.get(todo.pop())
        if node is None or id(node) in keep:
            continue
        keep.add(id(node))
        for name in _used_names(node):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return keep


def _source(code: str, node: ast.stmt) -> str:
    """The exact text of a top-level statement, its decorators included (``ast`` places a
    decorated definition at its ``def`` line; a top-level decorator starts in column 0)."""
    decorators = getattr(node, "decorator_list", None)
    if decorators:
        node = SimpleNamespace(lineno=min(d.lineno for d in decorators), col_offset=0,
                               end_lineno=node.end_lineno, end_col_offset=node.end_col_offset)
    return ast.get_source_segment(code, node) or ""


__all__ = ["PYTHON_LABELS", "extract_code", "sanitize", "used_names"]
