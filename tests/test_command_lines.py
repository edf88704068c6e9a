"""What the command lines show and do before any work: one name per setting on every stage, help in
plain words with the defaults a flagless run really uses, ``--version`` everywhere, the stages
listed when ``ap2o-build`` gets nothing, progress bars only on a terminal, and an output that
cannot be written refused in one line before anything starts."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
from synthetic_samples import humaneval_samples

from builder import progress
from builder.cli import STAGES, build_parser
from builder.cli import main as cli
from builder.flags import _shown, package_version

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _run(*argv: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout, check=False,
                          env={**ENV, **(env or {})})


def _stage_parser(stage: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[stage]


def _eval_parser() -> argparse.ArgumentParser:
    from trainer.evaluation.cli import run_parser

    return run_parser()


def _flags(parser: argparse.ArgumentParser) -> dict[tuple[str, str], set[str]]:
    """(group title, field) -> the option strings of every flag made from a config field."""
    out = {}
    for group in parser._action_groups:
        for action in group._group_actions:
            if action.option_strings and action.dest not in ("help", "version"):
                out[group.title, action.dest.rsplit(".", 1)[-1]] = set(action.option_strings)
    return out


def _parsers() -> dict[str, argparse.ArgumentParser]:
    return {**{f"ap2o-build {s}": _stage_parser(s) for s in STAGES}, "ap2o-eval": _eval_parser()}


# --- one name per setting, plain help ---------------------------------------------------------------

def test_a_setting_has_the_same_flags_on_every_command_that_takes_it():
    seen: dict[tuple[str, str], tuple[str, set[str]]] = {}
    for command, parser in _parsers().items():
        for key, options in _flags(parser).items():
            if key in seen:
                assert options == seen[key][1], (key, command, options, seen[key])
            else:
                seen[key] = (command, options)
    assert seen["pairs", "seed"][1] == {"--pairs-seed", "--pairs_seed"}  # run and notebook alike
    assert "--seed" not in _stage_parser("notebook")._option_string_actions


def test_help_is_plain_words_with_groups_named_for_what_they_set():
    for command, parser in _parsers().items():
        text = parser.format_help()
        assert "`" not in text, (command, re.findall(r".{30}`.{30}", text)[:3])
        titles = [g.title for g in parser._action_groups]
        assert not [t for t in titles if "Config" in t], (command, titles)
    assert {"sample", "grader", "pairs", "card", "problems"} <= {g.title for g in _stage_parser("run")._action_groups}
    assert "pairs" in {g.title for g in _stage_parser("notebook")._action_groups}
    assert "sample" in {g.title for g in _stage_parser("sample")._action_groups}


def test_run_help_shows_the_values_a_flagless_run_uses():
    """Every setting of the build that ``ap2o-build run --output DIR`` makes is in its flag's help,
    as the flag's default or as the embedded default build's value (the recipe, the recording)."""
    from builder.config import GROUP_CLASSES, GROUPS, resolve_config
    from builder.pipeline import PRESET

    used = resolve_config(argparse.Namespace()).to_dict()
    parser = _stage_parser("run")
    helps = {}
    for group in parser._action_groups:
        for action in group._group_actions:
            helps[group.title, action.dest.rsplit(".", 1)[-1]] = " ".join((action.help or "").split())
    checked = 0
    for g in GROUPS:
        for name, value in used[g].items():
            shown = _shown(value)
            if (g, name) not in helps or shown is None:
                continue
            text = helps[g, name]
            assert f"default: {shown})" in text or f"default: {shown};" in text or f"{PRESET}: {shown})" in text, (
                g, name, shown, text)
            checked += 1
    assert checked > 30 and GROUP_CLASSES
    flat = " ".join(parser.format_help().split())
    for words in ("(default: 100; embedded default build: 10)", "(default: 1024; embedded default build: 512)",
                  "(default: other; embedded default build: mit)"):
        assert words in flat


# --- --version, no arguments --------------------------------------------------------------------

def test_every_command_has_version():
    version = package_version()
    for argv in ([], ["run"], ["notebook"], ["push"]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
            build_parser().parse_args([*argv, "--version"])
        assert done.value.code == 0 and out.getvalue().strip().endswith(f"(ap2o-coder) {version}")
    done = _run("-m", "trainer.evaluation.cli", "--version")
    assert done.returncode == 0 and done.stdout.strip() == f"ap2o-eval (ap2o-coder) {version}"
    done = _run("-m", "trainer.evaluation.cli", "compare", "--version")
    assert done.returncode == 0 and f"(ap2o-coder) {version}" in done.stdout


def test_ap2o_train_has_version():
    done = _run("-m", "trainer.train", "--version", timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == f"ap2o-train (ap2o-coder) {package_version()}"


def test_ap2o_build_with_nothing_lists_its_stages(capsys):
    assert cli([]) == 2
    out = capsys.readouterr().out
    for stage, (_, help_) in STAGES.items():
        assert re.search(rf"^\s+{stage}\b", out, flags=re.MULTILINE), stage
        assert " ".join(help_.split()[:4]) in " ".join(out.split())
    assert "ap2o-build run --output DIR" in out


# --- progress bars --------------------------------------------------------------------------------

def test_bars_draw_only_on_a_terminal_unless_forced(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not progress.wanted() and progress.bar(total=1).disable
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert progress.wanted() and not progress.wanted(False) and progress.bar(total=1, disable=True).disable
    monkeypatch.setenv(progress.ENV, "0")
    assert not progress.wanted()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    monkeypatch.setenv(progress.ENV, "1")
    assert progress.wanted() and not progress.wanted(False)  # --quiet still wins


def test_a_piped_command_draws_no_bar_and_a_forced_one_does(tmp_path):
    import pyarrow.parquet as pq

    pq.write_table(humaneval_samples(4), tmp_path / "graded.parquet")
    quiet = _run("-m", "builder.cli", "notebook", str(tmp_path / "graded.parquet"), "--output", str(tmp_path / "a"),
                 env={progress.ENV: ""})
    assert quiet.returncode == 0, quiet.stderr
    assert "|" not in quiet.stderr and "notebook:" not in quiet.stderr
    drawn = _run("-m", "builder.cli", "notebook", str(tmp_path / "graded.parquet"), "--output", str(tmp_path / "b"),
                 env={progress.ENV: "1"})
    assert drawn.returncode == 0 and "notebook: 100%" in drawn.stderr


def test_counts_read_as_words():
    assert [progress.plural(n, "answer") for n in (0, 1, 2, 1000)] == ["0 answers", "1 answer", "2 answers",
                                                                        "1,000 answers"]
    assert progress.plural(1, "problem") == "1 problem"


# --- the embedded default's problem line ----------------------------------------------------------

def test_the_default_build_says_how_many_problems_it_builds_without_alarm(embedded_default):
    _, done = embedded_default
    line = next(x for x in done.stderr.splitlines() if x.startswith("problems:"))
    assert line == ("problems: humaneval: 164 read (test 164); 40 used "
                    "(the ones humaneval-qwen2.5-coder-0.5b-instruct.parquet has answers for)")
    assert "no answers" not in done.stderr and "164 used" not in done.stderr


# --- an output that cannot be written -------------------------------------------------------------

def _read_only(path: pathlib.Path, *argv: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``argv`` run with ``path`` mounted read-only (bubblewrap): a read-only file system, which root
    cannot write either (chmod would not stop the tests' root user)."""
    return subprocess.run(["bwrap", "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--ro-bind", str(path),
                           str(path), sys.executable, *argv], capture_output=True, text=True, timeout=timeout,
                          check=False, env=ENV)


def _bwrap_works(tmp: pathlib.Path) -> bool:
    if shutil.which("bwrap") is None:
        return False
    probe = subprocess.run(["bwrap", "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--ro-bind", str(tmp),
                            str(tmp), "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.fixture
def read_only(tmp_path) -> pathlib.Path:
    ro = tmp_path / "ro"
    ro.mkdir()
    if not _bwrap_works(ro):
        pytest.skip("bubblewrap cannot mount a read-only folder here")
    return ro


def _one_line(done: subprocess.CompletedProcess, flag: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Read-only file system" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_an_unwritable_output_is_one_line_before_any_work(read_only, tmp_path):
    import pyarrow.parquet as pq

    done = _read_only(read_only, "-m", "builder.cli", "run", "--output", str(read_only / "ds"))
    _one_line(done, "--output")
    assert not list(read_only.iterdir())
    pq.write_table(humaneval_samples(3), tmp_path / "graded.parquet")
    _one_line(_read_only(read_only, "-m", "builder.cli", "notebook", str(tmp_path / "graded.parquet"), "--output",
                         str(read_only / "nb")), "--output")
    _one_line(_read_only(read_only, "-m", "builder.cli", "sample", "--problems", "humaneval", "--backend", "file",
                         "--completions", str(tmp_path / "graded.parquet"), "--output", str(read_only / "s.parquet")),
              "--output")


def test_ap2o_eval_refuses_an_unwritable_output_before_sampling(read_only, tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"problem_id": "HumanEval/0", "completion": "    return False\\n"}\n')
    done = _read_only(read_only, "-m", "trainer.evaluation.cli", "--backend", "file", "--completions", str(answers),
                      "--benchmark", "humaneval", "--limit", "1", "--n", "1", "--k", "1", "--output",
                      str(read_only / "eval"))
    _one_line(done, "--output")
    assert "sampling" not in done.stderr


def test_ap2o_train_refuses_an_unwritable_output_dir(read_only, tmp_path):
    done = _read_only(read_only, "-m", "trainer.train", "--dataset", str(tmp_path), "--model", "m",
                      "--output-dir", str(read_only / "run"))
    _one_line(done, "--output-dir")


def test_ap2o_eval_says_one_answer_in_words(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"problem_id": "HumanEval/0", "completion": "    return False\\n"}\n')
    done = _run("-m", "trainer.evaluation.cli", "--backend", "file", "--completions", str(answers), "--benchmark",
                "humaneval", "--limit", "1", "--n", "1", "--k", "1", "--output", str(tmp_path / "eval"))
    assert done.returncode == 0, done.stderr
    assert "sampling 1 answer to each of 1 problem (humaneval)" in done.stderr
