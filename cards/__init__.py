"""The card templates (``string.Template``) and what every card cites: read as package data."""

from __future__ import annotations

from importlib.resources import files

CITATION = "citation.bib"  # the AP2O paper's BibTeX: the dataset card and the model card cite it


def read(name: str) -> str:
    """A file of this package (a template, the citation, ``sources.yaml``) as text."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")


def ap2o_citation() -> str:
    """The AP2O paper's BibTeX entry, ending with a newline."""
    return read(CITATION).rstrip("\n") + "\n"
