"""`python -m modelshare.promote` as the promote Job runs it: a real process copying a real model folder
from the source stack's share into this stack's, refusing a damaged source file or a build below this
stack's own gate within seconds, with the reason as its termination message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import modelshare
from modelshare import FolderState
from modelshare.manifest import copy_verified
from modelshare.promote import promote
from tests.apps.modelfolder import metrics, write_model_folder

REPO = Path(__file__).resolve().parents[3]
# A refusal is decided by verifying the source and reading its metrics: seconds, not the waiter's
# rollout deadline (10-15 min). Generous for a loaded 2-core machine; the folders here are small.
REFUSAL_BOUND_SECONDS = 10
GATE_VARIABLES = ("GATE_MIN_NDCG", "GATE_MIN_LIFT", "GATE_CHAMPION_MODELFOLDER", "GATE_CHAMPION_TOLERANCE")


class Run:
    def __init__(self, completed: subprocess.CompletedProcess, seconds: float, termination_log: Path):
        self.code, self.seconds = completed.returncode, seconds
        self.events = [json.loads(line) for line in completed.stdout.splitlines()]
        self.stderr = completed.stderr
        self.message = termination_log.read_text() if termination_log.exists() else ""


def run_promote(source: Path, dest: Path, build: str = "7", **env: str) -> Run:
    termination_log = dest.parent / f"termination-{dest.name}"
    environment = {k: v for k, v in os.environ.items() if k not in GATE_VARIABLES}
    environment.update(
        SOURCE_MODELFOLDER=str(source),
        MODELFOLDER=str(dest),
        BUILD_NUMBER=build,
        TERMINATION_LOG=str(termination_log),
        **env,
    )
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "modelshare.promote"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Run(completed, time.monotonic() - started, termination_log)


@pytest.fixture
def shares(tmp_path):
    """The source stack's share holding build 7 (nDCG 0.30, lift 3.0) and this stack's empty share."""
    source_share, own_share = tmp_path / "dev", tmp_path / "prod"
    own_share.mkdir()
    write_model_folder(source_share / "7", "7", metrics_doc=metrics(ndcg=0.30, popular_ndcg=0.10))
    return source_share, own_share


def listing(share: Path) -> list[str]:
    return sorted(p.name for p in share.iterdir() if not p.name.startswith("termination-"))


def test_a_build_passing_this_stacks_gate_is_copied_verified_and_completed(shares):
    source_share, own_share = shares
    run = run_promote(source_share / "7", own_share / "7", GATE_MIN_NDCG="0.25", GATE_MIN_LIFT="2")
    assert run.code == 0, run.stderr
    assert run.events[-1]["event"] == "copied"
    assert modelshare.verify(own_share / "7", build="7")
    assert modelshare.model_sha256(own_share / "7") == modelshare.model_sha256(source_share / "7")
    assert listing(own_share) == ["7"]  # published in one rename: no staging folder left
    # The Job times its own copy (gate, copy, publish) in its last log line and its message.
    seconds = run.events[-1]["seconds"]
    assert 0 <= seconds < 60
    assert f"promoted from {source_share / '7'}: copied in {seconds} s, every file verified" in run.message
    again = run_promote(source_share / "7", own_share / "7", GATE_MIN_NDCG="0.25", GATE_MIN_LIFT="2")
    assert again.code == 0 and again.events[-1]["event"] == "already-complete"


@pytest.mark.parametrize(
    ("gate", "failure"),
    [
        ({"GATE_MIN_NDCG": "0.35"}, "model.ndcg_at_k 0.3000 < GATE_MIN_NDCG 0.3500"),
        ({"GATE_MIN_NDCG": "0.1", "GATE_MIN_LIFT": "4"}, "lift_ndcg 3.0000 < GATE_MIN_LIFT 4.0000"),
    ],
)
def test_a_build_below_this_stacks_gate_is_refused_within_seconds_naming_the_gate(shares, gate, failure):
    source_share, own_share = shares
    run = run_promote(source_share / "7", own_share / "7", **gate)
    assert run.code == 5
    assert run.seconds < REFUSAL_BOUND_SECONDS
    assert run.message.startswith("promotion of build 7 refused: it is below this stack's quality gate")
    assert failure in run.message
    assert run.events[-1]["event"] == "gate-failed"
    assert listing(own_share) == []  # no complete.txt, no half-written or staging folder
    assert modelshare.folder_state(source_share / "7") is FolderState.COMPLETE  # the source is only read


def test_a_model_without_metrics_fails_a_set_gate_closed(tmp_path):
    source = tmp_path / "dev" / "7"
    write_model_folder(source, "7")
    (source / "metrics.json").unlink()
    modelshare.make_manifest(source, build="7", git_sha="0123abc")  # a manifest without metrics.json
    run = run_promote(source, tmp_path / "7", GATE_MIN_NDCG="0.1")
    assert run.code == 5 and "metrics.json has no numeric model.ndcg_at_k" in run.message
    assert not (tmp_path / "7").exists()


def test_a_damaged_source_file_fails_naming_the_file_and_leaves_no_complete_release(shares):
    source_share, own_share = shares
    damaged = source_share / "7" / "model" / "item_ids.json"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b" ")  # one byte, same size
    run = run_promote(source_share / "7", own_share / "7", GATE_MIN_NDCG="0.25")
    assert run.code == 1
    assert run.seconds < REFUSAL_BOUND_SECONDS
    assert f"{damaged} has sha256" in run.message
    assert run.message.startswith("promotion of build 7 from")
    # The release folder holds only the failure, which its waiter reports; nothing half-copied.
    assert modelshare.folder_state(own_share / "7") is FolderState.FAILED
    assert [p.name for p in (own_share / "7").iterdir()] == ["failed.txt"]
    assert listing(own_share) == ["7"]


def test_a_malformed_gate_is_a_configuration_error_naming_the_variable(shares):
    source_share, own_share = shares
    run = run_promote(source_share / "7", own_share / "7", GATE_MIN_NDCG="high")
    assert run.code == 2 and "GATE_MIN_NDCG" in run.message
    assert listing(own_share) == []


def test_a_destination_of_another_model_is_refused(tmp_path):
    source, dest = tmp_path / "dev" / "7", tmp_path / "prod" / "7"
    write_model_folder(source, "7", seed=1)
    write_model_folder(dest, "7", seed=2)
    with pytest.raises(modelshare.IntegrityError, match="holds a different model for build 7"):
        promote(source, dest, "7")


def test_two_files_are_copied_at_once_so_one_files_read_overlaps_the_others_hash(shares, monkeypatch):
    source_share, own_share = shares
    both_copying = threading.Barrier(2, timeout=10)  # broken, and the promotion fails, if one waits alone
    copied = []

    def copy_in_pairs(source, target, entry):
        if len(copied) < 2:
            copied.append(source.name)
            both_copying.wait()
        copy_verified(source, target, entry)

    monkeypatch.setattr(modelshare.promote, "copy_verified", copy_in_pairs)
    assert promote(source_share / "7", own_share / "7", "7") == "copied"
    files = json.loads((source_share / "7" / "manifest.json").read_text())["files"]
    largest = sorted(files, key=lambda rel: -files[rel]["bytes"])[:2]
    assert sorted(copied) == sorted(Path(rel).name for rel in largest)  # largest first
    modelshare.verify(own_share / "7", "7")


def test_a_failed_file_stops_the_copy_after_the_running_one_ends_and_leaves_nothing(shares, monkeypatch):
    source_share, own_share = shares
    started, finished = [], []

    def slow_largest_damaged_second(source, target, entry):
        started.append(source.name)
        if len(started) == 2:
            raise modelshare.IntegrityError(f"{source} has sha256 0, the manifest says 1")
        time.sleep(0.5)
        copy_verified(source, target, entry)
        finished.append(source.name)

    monkeypatch.setattr(modelshare.promote, "copy_verified", slow_largest_damaged_second)
    with pytest.raises(modelshare.IntegrityError, match="has sha256 0"):
        promote(source_share / "7", own_share / "7", "7")
    # Raised once the running copy had ended (nothing writes into the removed staging folder), and
    # the files not yet started were never copied.
    assert finished == started[:1]
    assert len(started) < len(json.loads((source_share / "7" / "manifest.json").read_text())["files"])
    assert listing(own_share) == []
