"""A trainer killed at any moment never leaves a folder the waiter accepts, and a rerun
completes it; a rerun of a completed build changes nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

import modelshare
from modelshare import FolderState, IntegrityError

from .conftest import QUICK, REPO, run_trainer, trainer_env


def kill_when(settings: dict, stop) -> None:
    """Run the trainer and SIGKILL it as soon as its log shows an event for which stop() is true."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer"], env=trainer_env(**settings), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("{") and stop(json.loads(line)):
                proc.send_signal(signal.SIGKILL)
                break
        else:
            pytest.fail("the trainer finished before the kill point")
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    "stop",
    [
        lambda e: e["event"] == "read",
        lambda e: e["event"] == "tune-trial",
        lambda e: e["event"] == "write-file",  # the first artifact is on disk
        lambda e: e.get("file") == "model/model.json",  # the last artifact: metrics and manifest next
    ],
    ids=["after-read", "while-tuning", "first-artifact", "last-artifact"],
)
def test_sigkill_never_leaves_an_acceptable_folder_and_a_rerun_completes(tmp_path, small_dir, stop):
    folder = tmp_path / "11"
    settings = {"MODELFOLDER": folder, "BUILD_NUMBER": "11", "DATA_DIR": small_dir, **QUICK}
    kill_when(settings, stop)
    if modelshare.folder_state(folder) is FolderState.COMPLETE:  # the kill landed after the last write
        modelshare.verify(folder, build="11")
    else:
        with pytest.raises(IntegrityError):
            modelshare.verify(folder, build="11")
    run = run_trainer(**settings)
    assert run.returncode == 0, run.stdout + run.stderr
    modelshare.verify(folder, build="11")


def test_rerun_of_a_complete_build_is_a_no_op(tmp_path, small_dir):
    folder = tmp_path / "12"
    settings = {"MODELFOLDER": folder, "BUILD_NUMBER": "12", "DATA_DIR": small_dir, **QUICK}
    assert run_trainer(**settings).returncode == 0

    def snapshot():
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}

    before = snapshot()
    # even with other data: a completed release is never retrained or touched
    run = run_trainer(**{**settings, "DATA_DIR": tmp_path / "elsewhere"})
    assert run.returncode == 0 and run.event("already-complete")["build"] == "12"
    assert snapshot() == before
