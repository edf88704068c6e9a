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
"""

from __future__ import annotations

import ast
import re

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


__all__ = ["PYTHON_LABELS", "extract_code"]
