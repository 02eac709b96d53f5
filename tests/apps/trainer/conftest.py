"""Shared fixtures: planted-structure data, and running ``python -m trainer`` as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from trainer import sample

REPO = Path(__file__).resolve().parents[3]
TRAINER_VARIABLES = ("MODELFOLDER", "BUILD_NUMBER", "DATA_DIR", "GIT_SHA", "TRAINER_IMAGE", "TERMINATION_LOG")
TRAINER_PREFIXES = ("BLOB_STORAGE_", "TRAIN_", "TUNE_", "EVAL_", "HOLDOUT_", "EASE_", "GATE_")

# Planted data used by most tests: ~40 rows per user, 30 taste clusters (see trainer.sample).
PLANTED = {"rows": 40_000, "seed": 3, "files": 2}


@dataclass
class Run:
    returncode: int
    events: list[dict]
    stdout: str
    stderr: str

    def event(self, name: str) -> dict:
        found = [e for e in self.events if e["event"] == name]
        assert found, f"no {name!r} event in the trainer's log:\n{self.stdout}\n{self.stderr}"
        return found[-1]


def trainer_env(**settings) -> dict:
    """The test's own environment minus any trainer setting, plus ``settings``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in TRAINER_VARIABLES and not key.startswith(TRAINER_PREFIXES)
    }
    env.update({key: str(value) for key, value in settings.items()})
    return env


def run_trainer(timeout: float = 300, **settings) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", "trainer"],
        env=trainer_env(**settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return Run(proc.returncode, events, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def planted_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("planted")
    sample.write(folder, PLANTED["rows"], files=PLANTED["files"], seed=PLANTED["seed"])
    return folder


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory) -> Path:
    """Small planted data for runs whose subject is not model quality (fast tuning)."""
    folder = tmp_path_factory.mktemp("small")
    sample.write(folder, 6_000, files=2, seed=5)
    return folder


# Quick settings for runs that test plumbing, not selection.
QUICK: dict[str, Any] = {"TUNE_TRIALS_PER_FAMILY": 1, "TRAIN_FAMILIES": "als-plain,ease"}
