#!/usr/bin/env python
"""Write the column tables of docs/dataset.md from ``schemas`` (one place for every column).

Each table sits between ``<!-- columns: CONFIG -->`` and ``<!-- /columns -->``; this script
replaces what is between them with ``builder.dataset.card.schema_columns_table(CONFIG)``.
``tests/test_docs.py`` fails when a table differs from what this script would write, so a changed
column shows up there: run ``python scripts/docs_tables.py`` and commit the page.
"""

from __future__ import annotations

import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "dataset.md"
BLOCK = re.compile(r"(<!-- columns: (\w+) -->\n)(.*?)(<!-- /columns -->)", re.DOTALL)


def render(text: str) -> str:
    """``text`` with every marked block holding its config's table."""
    from builder.dataset.card import schema_columns_table

    return BLOCK.sub(lambda m: f"{m[1]}\n{schema_columns_table(m[2])}\n\n{m[4]}", text)


def main() -> int:
    sys.path.insert(0, str(REPO))
    text = PAGE.read_text(encoding="utf-8")
    new = render(text)
    if new != text:
        PAGE.write_text(new, encoding="utf-8")
        print(f"updated {PAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
