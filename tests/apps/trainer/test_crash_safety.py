"""A trainer killed at any moment never leaves a folder the waiter accepts, and a rerun
completes it; a rerun of a completed build changes nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

import modelshare
from modelshare import FolderState, IntegrityError

from .conftest import QUICK, REPO, run_trainer, trainer_env


def kill_when(settings: dict, stop) -> None:
    """Run the trainer and SIGKILL it as soon as its log shows an event for which stop() is true."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer"],
        env=trainer_env(**settings),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    stdout = proc.stdout
    assert stdout is not None  # piped above
    try:
        for line in stdout:
            if line.startswith("{") and stop(json.loads(line)):
                proc.send_signal(signal.SIGKILL)
                break
        else:
            pytest.fail("the trainer finished before the kill point")
    finally:
        proc.wait(timeout=60)
        stdout.close()
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


def test_a_second_attempt_on_the_same_folder_never_changes_the_complete_one(tmp_path, planted_dir):
    """Overlapping Job pods (a node lost, a pod replaced while the old one runs): the second trainer
    starts mid-run of the first, the first publishes, and while the second runs on and finishes,
    the complete folder verifies at every look and never changes. Each is held (SIGSTOP) after its
    first trial until the other has reached its point, so that this order does not depend on how
    fast each starts on a busy machine (the second once started so late that it found the folder
    complete)."""
    folder = tmp_path / "13"
    settings = {"MODELFOLDER": folder, "BUILD_NUMBER": "13", "DATA_DIR": planted_dir, **QUICK}

    def start():
        return subprocess.Popen(
            [sys.executable, "-m", "trainer"],
            env=trainer_env(**settings),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def events(proc):
        for line in proc.stdout:
            if line.startswith("{"):
                yield json.loads(line)

    def until_trial(stream) -> None:
        next(event for event in stream if event["event"] == "tune-trial")

    first = start()
    second = None
    try:
        first_events = events(first)
        until_trial(first_events)  # the first is mid-run: tuning
        first.send_signal(signal.SIGSTOP)
        second = start()
        until_trial(events(second))  # the second is past its start-up check of the folder, tuning
        second.send_signal(signal.SIGSTOP)
        first.send_signal(signal.SIGCONT)
        list(first_events)
        assert first.wait(timeout=120) == 0
        assert modelshare.folder_state(folder) is FolderState.COMPLETE
        digest = modelshare.model_sha256(folder)
        snapshot = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        second.send_signal(signal.SIGCONT)
        looks, deadline = 0, time.monotonic() + 120
        while second.poll() is None and time.monotonic() < deadline:
            modelshare.verify(folder, build="13")  # raises on any size or sha256 mismatch
            looks += 1
        second_events = list(events(second))
        assert second.wait(timeout=10) == 0, second_events
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
            if proc is not None:
                proc.stdout.close()
    assert looks > 0
    assert [e for e in second_events if e["event"] == "published-by-another-attempt"]
    assert modelshare.model_sha256(folder) == digest
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == snapshot
    assert sorted(p.name for p in tmp_path.iterdir()) == ["13"]  # no staging folder left behind


def test_a_complete_folder_of_another_release_is_refused_and_kept(tmp_path, small_dir):
    """One build id, one release: the id re-used by other code (its record long retired) must not
    pair new images with the old model, nor retrain over it."""
    folder = tmp_path / "14"
    settings = {
        "MODELFOLDER": folder,
        "BUILD_NUMBER": "14",
        "DATA_DIR": small_dir,
        **QUICK,
        "GIT_SHA": "aaaa111",
        "TRAINER_IMAGE": "registry/trainer@sha256:01",
    }
    assert run_trainer(**settings).returncode == 0
    digest = modelshare.model_sha256(folder)
    for other in ({"GIT_SHA": "bbbb222"}, {"TRAINER_IMAGE": "registry/trainer@sha256:02"}):
        run = run_trainer(**{**settings, **other, "TERMINATION_LOG": tmp_path / "termination"})
        assert run.returncode == 4, run.stdout
        message = (tmp_path / "termination").read_text()
        assert (
            "already holds a model of another release" in message and "deploy under a new build id" in message
        )
        assert modelshare.model_sha256(folder) == digest
    assert run_trainer(**settings).event("already-complete")["exit_code"] == 0
