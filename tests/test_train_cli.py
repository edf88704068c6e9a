"""``ap2o-train``'s command line: read and checked before torch, transformers or TRL is imported
(``trainer.arguments``), with TRL's script names, a short plain ``--help``, one line for every
mistake, and the training arguments TRL's own parser makes of the same flags."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import warnings

import pytest

from builder.errors import UserError
from trainer import arguments
from trainer.arguments import parse_command_line, training_arguments

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
HEAVY = ("torch", "transformers", "trl", "peft", "datasets")


def _python(code: str, *, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                          check=False, env={**ENV, **(env or {})}, cwd=REPO)


@pytest.fixture
def folders(tmp_path):
    """A dataset folder and a model folder that exist (step 1 checks paths, not contents)."""
    (tmp_path / "ds").mkdir()
    (tmp_path / "model").mkdir()
    return tmp_path


# --- nothing heavy before the arguments are checked ------------------------------------------------------

def test_reading_and_checking_a_command_line_imports_no_torch_transformers_or_trl(folders):
    done = _python(f"""
        import sys
        from trainer.train import preflight
        from trainer.arguments import parse_command_line
        line = parse_command_line(["--dataset", "{folders / 'ds'}", "--model", "{folders / 'model'}", "--output-dir",
                                   "{folders / 'out'}", "--method", "sft", "--learning-rate", "1e-4", "--bf16", "false",
                                   "--no-use-peft", "--quiz-timeout-s", "2", "--max_steps", "3"])
        preflight(line)
        try:
            parse_command_line(["--dataset", "x", "--model", "y", "--output-dir", "z", "--learnig-rate", "1"])
        except Exception as e:
            print(type(e).__name__)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
        print(loaded)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["UserError", "[]"]


def test_help_imports_none_of_them_and_is_short_plain_and_summarizes_trl():
    done = _python(f"""
        import sys
        from trainer.arguments import parse_command_line
        try:
            parse_command_line(["--help"])
        except SystemExit as e:
            assert e.code == 0
        print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}))
    """)
    assert done.returncode == 0, done.stderr
    help_text, loaded = done.stdout.rsplit("LOADED", 1)
    assert loaded.strip() == "[]"
    full = subprocess.run([sys.executable, "-m", "trainer.train", "--help-all"], capture_output=True, text=True,
                          timeout=300, env=ENV, cwd=REPO, check=False).stdout
    assert len(help_text.splitlines()) < len(full.splitlines()) / 2
    for group in ("data:", "model:", "schedule:", "quiz:", "training:"):
        assert f"\n{group}\n" in help_text
    assert "more of its settings are flags too (--help-all lists them)" in help_text
    assert "``" not in help_text and "[`" not in help_text  # no RST or markdown markup
    # TRL's settings this trainer does not change are summarized, not listed; --help-all has them
    assert "--adam-beta1" not in help_text and "--adam-beta1" in full
    assert "--quiz-timeout-s" in help_text and "--quiz-memory-mb FLOAT" not in help_text  # the grader's, summarized


def test_the_no_flag_of_a_boolean_says_what_it_does():
    parser = arguments.build_parser("ap2o-l2h")
    helps = {a.option_strings[0]: a.help for a in parser._actions if a.option_strings}
    assert helps["--no_use_peft"] != helps["--use_peft"]
    assert "every weight" in helps["--no_use_peft"]
    assert helps["--no_replay"] == "turn --replay off"


# --- TRL's names, our old ones ----------------------------------------------------------------------------

def test_trl_script_names_and_the_old_spellings_set_the_same_fields(folders):
    ds, model = str(folders / "ds"), str(folders / "model")
    trl = parse_command_line(["--dataset_name", ds, "--model_name_or_path", model, "--model_revision", "v2",
                              "--dataset-revision", "main", "--output_dir", "o"])
    old = parse_command_line(["--dataset", ds, "--model", model, "--model-revision", "v2", "--revision", "main",
                              "--output-dir", "o"])
    for line in (trl, old):
        assert (line.data.dataset_name, line.model.model_name_or_path) == (ds, model)
        assert (line.model.model_revision, line.data.dataset_revision) == ("v2", "main")  # the model's, the data's
        assert line.value("output_dir") == "o"


def test_a_recipe_with_the_old_keys_still_reads(folders, tmp_path):
    recipe = tmp_path / "old.yaml"
    recipe.write_text(f"dataset: {folders / 'ds'}\nmodel: {folders / 'model'}\nrevision: v1\noutput_dir: o\n"
                      "learning_rate: 1.0e-4\n")
    line = parse_command_line(["--config", str(recipe), "--learning-rate", "2e-4"])
    assert line.data.dataset_name == str(folders / "ds") and line.data.dataset_revision == "v1"
    targs = training_arguments(line)
    assert targs.learning_rate == 2e-4  # the flag over the recipe


def test_training_arguments_reach_trls_config_as_typed(folders):
    line = parse_command_line(["--dataset", str(folders / "ds"), "--model", str(folders / "model"), "--output-dir",
                               str(folders / "o"), "--learning_rate", "3e-4", "--bf16", "false", "--max-steps", "7",
                               "--lora-target-modules", "q_proj", "v_proj", "--no-use-peft", "--use-cpu",
                               "--report-to", "none", "--beta", "0.2"])
    assert not line.model.use_peft and line.model.lora_target_modules == ["q_proj", "v_proj"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated name of ours reaches transformers
        targs = training_arguments(line)
    assert (targs.learning_rate, targs.bf16, targs.max_steps, targs.use_cpu, targs.beta) == (3e-4, False, 7, True, 0.2)
    # the official train.py's gradient_checkpointing=False (TRL's default is True); no pinned memory without a GPU
    assert not targs.gradient_checkpointing and targs.dataloader_pin_memory is False
    assert targs.num_train_epochs == 0 and targs.warmup_steps == 0.1  # this trainer's defaults over TRL's


@pytest.mark.parametrize("method", ["ap2o-l2h", "sft"])
def test_the_source_read_table_is_the_real_config(method):
    """Step 1 reads TRL's fields from source; it must know exactly the fields the real class has, each
    taking values as TRL's parser takes them."""
    from trainer.trl_config import AP2ODPOConfig, AP2OSFTConfig

    real = arguments.args_of_class(AP2OSFTConfig if method == "sft" else AP2ODPOConfig)
    read = arguments.training_fields(method)
    assert set(read) == set(real)
    for name, arg in real.items():
        mine = read[name]
        assert (mine.kind, mine.convert, mine.negatable) == (arg.kind, arg.convert, arg.negatable), name
        if mine.choices:  # choices computed at import (log_level's) are left to TRL's parser in step 2
            assert tuple(map(str, mine.choices)) == tuple(map(str, arg.choices or ())), name


# --- one line for every mistake ----------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "says"), [
    ([], "--dataset-name (or --dataset) is required"),
    (["--dataset", "D", "--model", "M"], "--output-dir is required"),
    (["--dataset", "D", "--model", "M", "--output-dir", "o", "--learnig-rate", "1"],
     "unrecognized arguments: --learnig-rate 1 (did you mean --learning-rate?)"),
    (["--dataset", "D", "--model", "M", "--output-dir", "o", "--learning-rate", "fast"], "expected float, got 'fast'"),
    (["--dataset", "D", "--model", "M", "--output-dir", "o", "--bf16", "maybe"], "expected true or false"),
    (["--dataset", "D", "--model", "M", "--output-dir", "o", "--method", "ppo"], "unknown method 'ppo'"),
    (["--dataset", "D", "--model", "M", "--output-dir", "o", "--quiz-strategy", "often"], "quiz_strategy must be"),
])
def test_an_argument_error_is_one_user_error_line(argv, says):
    with pytest.raises(UserError, match=None) as e:
        parse_command_line(argv)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_recipe_key_nobody_knows_is_named(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: ap2o-l2h\nrounds: 4\n")
    with pytest.raises(UserError, match="unknown setting 'rounds'"):
        parse_command_line(["--config", str(recipe)])


def test_the_command_says_it_in_one_line_and_exit_2(folders):
    done = subprocess.run([sys.executable, "-m", "trainer.train", "--dataset", str(folders / "ds"), "--model",
                           str(folders / "model"), "--output-dir", str(folders / "o"), "--learnig-rate", "1"],
                          capture_output=True, text=True, timeout=300, env=ENV, cwd=REPO, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "ap2o-train: error: unrecognized arguments: --learnig-rate 1 (did you mean --learning-rate?)"]


# --- the output folder -----------------------------------------------------------------------------------

def _main(argv):
    from trainer import train

    return train.main(argv)


def test_a_folder_holding_an_earlier_run_is_refused_unless_overwritten_or_resumed(folders, capsys):
    out = folders / "run"
    (out / "checkpoint-4").mkdir(parents=True)
    (out / "ap2o_train.json").write_text(json.dumps({"kind": "run"}))
    argv = ["--dataset", str(folders / "ds"), "--model", str(folders / "model"), "--output-dir", str(out)]
    assert _main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds an earlier run" in err[0] and "--overwrite-output-dir replaces it" in err[0]
    assert f"--resume-from-checkpoint {out / 'checkpoint-4'} continues it" in err[0]
    # a checkpoint that is not one is named, with the ones there are
    assert _main([*argv, "--resume-from-checkpoint", str(out / "checkpoint-9")]) == 2
    assert "not a checkpoint folder" in capsys.readouterr().err
    assert (out / "ap2o_train.json").exists()  # nothing touched


def test_a_folder_of_other_files_is_never_written_into(folders, capsys):
    out = folders / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    argv = ["--dataset", str(folders / "ds"), "--model", str(folders / "model"), "--output-dir", str(out)]
    for extra in ([], ["--overwrite-output-dir"]):
        assert _main([*argv, *extra]) == 2
        assert "not an ap2o-train run" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


# --- a Hub id that cannot be had now -------------------------------------------------------------------------

def test_an_offline_hub_id_fails_at_once_in_one_line(folders):
    done = subprocess.run([sys.executable, "-m", "trainer.train", "--dataset", str(folders / "ds"), "--model",
                           "nobody/no-such-model", "--output-dir", str(folders / "o")],
                          capture_output=True, text=True, timeout=300, env=ENV, cwd=REPO, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        ("ap2o-train: error: --model nobody/no-such-model: no such folder, and not in the Hugging Face cache while "
        "HF_HUB_OFFLINE is set (download it first, `hf download nobody/no-such-model`, or pass a local folder)")]


def test_an_unknown_or_unreachable_hub_id_is_one_line(monkeypatch):
    from hub_standin import FakeHub
    from huggingface_hub import constants

    from builder.generation.modelpath import check_reachable

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeHub() as hub:
        hub.files["me/known"] = {"config.json": b"{}"}
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        check_reachable("me/known")  # one request, no error
        with pytest.raises(UserError, match="--model me/unknown: no such folder, nor a model on the Hub"):
            check_reachable("me/unknown")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(UserError, match=r"cannot reach http://127.0.0.1:9 \(ConnectError"):
        check_reachable("me/known")


def test_a_push_to_an_offline_hub_is_refused_before_any_work(folders, capsys):
    argv = ["--dataset", str(folders / "ds"), "--model", str(folders / "model"), "--output-dir",
            str(folders / "o"), "--push-to-hub", "--hub-model-id", "me/run"]
    assert _main(argv) == 2
    assert "--push-to-hub: the Hub is in offline mode" in capsys.readouterr().err
    assert not (folders / "o").exists()


def test_dataclass_defaults_of_ours_show_in_help():
    """The help's defaults are the dataclasses' (one place): a changed default cannot leave stale help."""
    from trainer.config import DPOSettings

    text = " ".join(arguments.build_parser("ap2o-l2h").format_help().split())
    beta = next(f for f in dataclasses.fields(DPOSettings) if f.name == "beta")
    assert f"DPO beta (paper: 0.1) (default: {beta.default})" in text


def test_a_cached_hub_model_passes_offline_without_a_request(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from builder.generation.modelpath import check_reachable

    for repo, name in (("me--cached", "config.json"), ("me--gguf-repo", "coder-q4.gguf")):  # as hf download leaves it
        snapshot = tmp_path / f"models--{repo}" / "snapshots" / ("c" * 40)
        snapshot.mkdir(parents=True)
        (snapshot / name).write_text("{}")
        (tmp_path / f"models--{repo}" / "refs").mkdir()
        (tmp_path / f"models--{repo}" / "refs" / "main").write_text("c" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    check_reachable("me/cached")
    check_reachable("me/gguf-repo", gguf_file="coder-q4.gguf")  # a GGUF repo has no config.json
    with pytest.raises(UserError, match="not in the Hugging Face cache"):
        check_reachable("me/gguf-repo")
