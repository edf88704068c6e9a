"""The import layers of pyproject.toml's ``[tool.importlinter]`` hold, and the check can fail.

Why a test: CI runs the README's test command only, so the contracts are enforced here. The
second test makes a copy of the tree with one import that runs against the layers and checks that
``lint-imports`` refuses it: a check that could not fail would prove nothing.
"""

from __future__ import annotations

import ast
import importlib
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import builder

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "builder", "schemas", "cards")
LINT = shutil.which("lint-imports") or str(pathlib.Path(sys.executable).with_name("lint-imports"))

pytestmark = pytest.mark.skipif(not os.path.exists(LINT), reason="import-linter is not installed (the dev extra)")


def lint(root: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the tree under test, ahead of the installed one
    return subprocess.run([LINT, "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def copy_tree(dest: pathlib.Path) -> pathlib.Path:
    for name in PACKAGES:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "data", "*.parquet"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_import_contracts_are_kept():
    out = lint(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def lint_with(tmp_path: pathlib.Path, module: str, line: str) -> subprocess.CompletedProcess:
    """``lint-imports`` on a copy of the tree with ``line`` appended to ``module`` (a path)."""
    root = copy_tree(tmp_path)
    with open(root / module, "a") as f:
        f.write(line)
    return lint(root)


def test_schemas_importing_the_builder_breaks_the_layers(tmp_path):
    out = lint_with(tmp_path, "schemas/__init__.py", "\nimport builder.grading.taxonomy  # noqa: E402,F401 - the back import under test\n")
    assert out.returncode != 0
    assert "trainer -> builder -> schemas, never back BROKEN" in out.stdout


def test_two_builder_modules_importing_each_other_break_the_circle_rule(tmp_path):
    out = lint_with(tmp_path, "builder/grading/taxonomy.py", "\n\ndef _circle():\n    from builder import pipeline  # noqa: F401 - the circle under test\n")
    assert out.returncode != 0
    assert "no import circles inside a package BROKEN" in out.stdout


@pytest.mark.parametrize("line", ["from builder.grading.grader import Grader", "from builder.engine.config import EngineConfig"])
def test_the_trainer_reaching_into_a_stage_breaks_the_public_surface_rule(tmp_path, line):
    out = lint_with(tmp_path, "trainer/metrics_probe.py", f"{line}  # noqa: F401 - the import under test\n")
    assert out.returncode != 0
    assert "the trainer uses the builder's public surface only BROKEN" in out.stdout


def test_the_builders_public_names_are_its_imports():
    """``builder.__all__`` lists exactly the names ``builder/__init__.py`` imports from its stages,
    and each of them is the object its module defines (nothing re-bound on the way)."""
    tree = ast.parse(pathlib.Path(builder.__file__).read_text())
    imported = {(a.asname or a.name): (node.module, a.name) for node in tree.body
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("builder.") for a in node.names}
    assert sorted(imported) == sorted(builder.__all__)
    for name, (module, attr) in imported.items():
        assert getattr(builder, name) is getattr(importlib.import_module(module), attr)


def test_no_test_module_imports_another_or_edits_sys_path():
    """What tests share lives in helper modules (``tiny_dataset``, ``tiny_models``, ``servers``,
    ``processes``, ...), found through pytest's ``pythonpath``; a test module imported by another
    would run its tests' module-level code twice and tie the two files' names together."""
    offences = []
    for path in sorted((REPO / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offences += [f"{path.name}: imports {n}" for n in names if n.startswith("test_") or n == "conftest"]
            if isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.path":
                offences.append(f"{path.name}:{node.lineno}: sys.path")
    assert offences == []
