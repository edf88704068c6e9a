"""The manual (docs/, mkdocs.yml) builds as a site with every internal link and anchor resolved, its
mermaid diagrams drawn, every page reachable from the index and the nav, and its column tables the
schemas' own; and nothing in the repository points at a file outside it."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
needs_mkdocs = pytest.mark.skipif(shutil.which("mkdocs") is None, reason="mkdocs is not installed (the dev extra)")


def _build(site: pathlib.Path, **env: str) -> None:
    done = subprocess.run(["mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    if shutil.which("mkdocs") is None:
        pytest.skip("mkdocs is not installed (the dev extra)")
    out = tmp_path_factory.mktemp("site")
    _build(out)
    return out


def test_the_docs_build_strictly(site):
    assert (site / "sandbox" / "index.html").is_file()


def test_mermaid_fences_become_diagrams_with_mermaids_script(site):
    fences = {p.stem for p in DOCS.glob("*.md") if "```mermaid" in p.read_text()}
    assert {"method", "development"} <= fences
    mermaid = yaml.safe_load((REPO / "mkdocs.yml").read_text())["extra"]["mermaid"]
    for page in fences:
        html = (site / page / "index.html").read_text()
        diagram = re.search(r'<pre class="mermaid">(.*?)</pre>', html, flags=re.DOTALL)
        assert diagram and diagram.group(1).lstrip().startswith("flowchart"), page
        assert f'<script src="{mermaid}"></script>' in html and "mermaid.initialize" in html
    for html in site.rglob("*.html"):
        assert "language-mermaid" not in html.read_text(), html  # no diagram left as a code block


MERMAID_JS = os.environ.get("MKDOCS_MERMAID_JS")  # a local mermaid.min.js (npm's `mermaid` package, dist/)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@needs_mkdocs
@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and MERMAID_JS and os.path.isfile(MERMAID_JS or "")),
                    reason="needs chromium and MKDOCS_MERMAID_JS=path/to/mermaid.min.js (offline: no CDN)")
def test_a_real_browser_draws_the_diagrams(tmp_path):
    """Headless Chromium runs mermaid on the built page: each diagram becomes an SVG."""
    _build(tmp_path / "site", MKDOCS_MERMAID=pathlib.Path(MERMAID_JS).resolve().as_uri())
    page = (tmp_path / "site" / "method" / "index.html").as_uri()
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                           "--virtual-time-budget=10000", "--dump-dom", page],
                          capture_output=True, text=True, timeout=120, check=False)
    drawn = re.findall(r'<pre class="mermaid" data-processed="true"><svg[^>]*class="flowchart"', done.stdout)
    assert len(drawn) == (DOCS / "method.md").read_text().count("```mermaid"), done.stdout[-2000:]
    assert "Error taxonomy" in done.stdout and "ap2o-build: steps 1-3" in done.stdout  # the diagram's own text


def _nav_pages() -> list[str]:
    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]
    return [next(iter(item.values())) for item in nav]


def test_every_page_is_in_the_nav_the_index_and_the_readme():
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert sorted(_nav_pages()) == pages
    index = (DOCS / "index.md").read_text().split("## Pages", 1)[1]
    readme = (REPO / "README.md").read_text().split("## Documentation", 1)[1]
    for page in pages:
        if page != "index.md":
            assert f"]({page})" in index, page
            assert f"](docs/{page})" in readme, page


def test_the_column_tables_are_the_schemas():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_tables", REPO / "scripts" / "docs_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    text = (DOCS / "dataset.md").read_text()
    assert text == tables.render(text), "docs/dataset.md drifted from schemas/: run python scripts/docs_tables.py"
    import schemas

    marked = re.findall(r"<!-- columns: (\w+) -->", text)
    assert sorted(marked) == sorted(schemas.SCHEMAS), marked
    for config in schemas.SCHEMAS:
        assert f"### `{config}`" in text


def test_the_wide_notebooks_fixed_columns_are_the_cards():
    from builder.dataset.card import _WIDE_HELP

    section = (DOCS / "dataset.md").read_text().split("### `notebook_by_problem`", 1)[1].split("\n### ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| \w+ \| (.*?) \|$", section, flags=re.MULTILINE))
    assert rows == _WIDE_HELP


# Paths that lead out of the repository: the shared folder beside a checkout and the design note
# that lived there. Spelt in pieces so that this file does not match itself.
OUTSIDE = re.compile("|".join([r"\.\./" + "shared", "/work/" + "shared", "/work/" + "models", "DESIGN" + r"\.md",
                               "DESIGN" + r"[ ,]+step", "DESIGN" + ":",
                               r"parents?(\[\d\])?\s*/\s*\"" + "shared\""]))  # that folder spelt in code


def test_no_tracked_file_points_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    hits = []
    for name in files:
        path = REPO / name
        if not path.is_file() or path.suffix in (".parquet", ".png", ".gguf"):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        hits += [f"{name}:{text[:m.start()].count(chr(10)) + 1}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert not hits, "\n".join(hits)
