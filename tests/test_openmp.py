"""Every console script loads torch with OpenMP's passive wait policy unless the user chose one.

Why it matters: libgomp reads OMP_WAIT_POLICY once, when torch is first imported; its default
spinning made greedy generation with the tiny model ~20x slower on a CPU shared with other work."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import {module}, os, sys; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"


def _probe(module: str, **env) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], env={**clean, **env},
                         capture_output=True, text=True, timeout=300, check=True)
    return out.stdout.split()


@pytest.mark.parametrize("module", ["builder.cli", "trainer.evaluation.cli"])
def test_entry_points_set_passive_waiting_before_torch_loads(module):
    assert _probe(module) == ["PASSIVE", "False"]  # set, and torch not loaded yet: it will read it


def test_the_trainers_entry_point_sets_it_too():
    assert _probe("trainer.train")[0] == "PASSIVE"


def test_a_policy_the_user_chose_wins():
    assert _probe("builder.cli", OMP_WAIT_POLICY="ACTIVE")[0] == "ACTIVE"
