"""MkDocs hooks of the manual (``hooks:`` in mkdocs.yml): draw the ```mermaid fences as diagrams.

Python-Markdown's ``fenced_code`` renders a ```mermaid block as ``<pre><code class="language-mermaid">``,
which a browser shows as code; mermaid.js draws the elements of class ``mermaid``. This hook turns
the one into the other (the text stays HTML-escaped: mermaid decodes it) and adds mermaid's script
to the pages that have a diagram, so the site needs no Markdown extension beyond what MkDocs ships.
The script comes from ``extra.mermaid`` in mkdocs.yml (a URL; ``MKDOCS_MERMAID`` in the environment
overrides it, e.g. with a local ``mermaid.min.js`` for an offline check: tests/test_docs.py).
"""

from __future__ import annotations

import os
import re

FENCE = re.compile(r'<pre><code class="language-mermaid">(.*?)</code></pre>', re.DOTALL)


def on_page_content(html: str, page, config, files) -> str:
    if not FENCE.search(html):
        return html
    source = os.environ.get("MKDOCS_MERMAID") or config["extra"]["mermaid"]
    return (FENCE.sub(r'<pre class="mermaid">\1</pre>', html)
            + f'\n<script src="{source}"></script>\n<script>mermaid.initialize({{startOnLoad: true}});</script>\n')
