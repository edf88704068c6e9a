"""The README's quickstart, run as written, with the tiny test model where it says ``MODEL``.

Why: the user path (build -> train -> evaluate -> publish) is the product. A unit test can pass
while the path a user follows breaks at a flag the README never named or at a step no test runs
end to end; this test fails whenever the README and the product drift apart. ``docs/index.md``
shows the same block, and must stay identical to the README's."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def quickstart(path: pathlib.Path) -> list[str]:
    """The command lines of the first bash block after the ``## Quickstart`` heading."""
    text = path.read_text(encoding="utf-8")
    section = text[text.index("\n## Quickstart"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, f"{path}: no bash block under '## Quickstart'"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_docs_home_shows_the_readmes_quickstart():
    assert quickstart(REPO / "docs" / "index.md") == quickstart(REPO / "README.md")


@pytest.mark.slow
def test_the_readme_quickstart_runs_as_written(tiny_model_dir, tmp_path):
    commands = quickstart(REPO / "README.md")
    assert [shlex.split(c)[:2] for c in commands] == [
        ["ap2o-build", "run"], ["ap2o-train", "--dataset"], ["ap2o-eval", "--model"], ["ap2o-build", "push"]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_TOKEN": ""}
    outputs = []
    for command in commands:
        argv = [str(tiny_model_dir) if a == "MODEL" else a for a in shlex.split(command)]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout + done.stderr)

    built, run, evaluated = tmp_path / "out" / "ap2o-humaneval", tmp_path / "runs" / "l2h", tmp_path / "runs" / "l2h-eval"
    assert "55.0%" in outputs[0] and (built / "data" / "pairs").is_dir()
    trained = json.loads((run / "ap2o_train.json").read_text())
    assert trained["method"] == "ap2o-l2h" and (run / "adapter_model.safetensors").is_file()
    assert "16 problems kept" in outputs[1] and "training LoRA adapters" in outputs[1]
    assert "model_name: l2h" in (run / "README.md").read_text()  # the model card the README promises
    # the quiz after each epoch keeps the best adapter, and ap2o-eval evaluates it and says so
    assert trained["best"]["step"] in (2, 4) and (run / "best" / "adapter_model.safetensors").is_file()
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["problems"] == 20 and "pass@1" in json.dumps(metrics)  # --limit 20: the CPU try's minute
    assert metrics["adapter"] == "runs/l2h/best" and metrics["checkpoint"]["which"] == "best"
    assert "checkpoint: runs/l2h/best, the best of the run" in outputs[2] and metrics["max_new_tokens"] == 1024
    assert "nothing was sent" in outputs[3]
