"""`python -m waiter` as the init container runs it: a real process polling a real folder."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import modelshare
from tests.apps.modelfolder import metrics, write_model_folder

REPO = Path(__file__).resolve().parents[3]
WAITER_VARIABLES = (
    "GATE_MIN_NDCG",
    "GATE_MIN_LIFT",
    "GATE_CHAMPION_MODELFOLDER",
    "GATE_CHAMPION_TOLERANCE",
    "WAIT_TIMEOUT_SECONDS",
    "POLL_INTERVAL_SECONDS",
    "TERMINATION_LOG",
    "GIT_SHA",
    "TRAINER_IMAGE",
)


class Waiter:
    def __init__(self, folder: Path, build: str = "7", **env: str):
        self.termination_log = folder.parent / f"termination-{folder.name}"
        environment = {k: v for k, v in os.environ.items() if k not in WAITER_VARIABLES}
        environment.update(
            MODELFOLDER=str(folder),
            BUILD_NUMBER=build,
            POLL_INTERVAL_SECONDS="0.05",
            TERMINATION_LOG=str(self.termination_log),
        )
        environment.update(env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "waiter"],
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict] = []

    def next_event(self) -> dict:
        stdout, stderr = self.process.stdout, self.process.stderr
        assert stdout is not None and stderr is not None  # both piped above
        line = stdout.readline()
        assert line, f"waiter ended without a further event: {stderr.read()}"
        self.events.append(json.loads(line))
        return self.events[-1]

    def finish(self, timeout: float = 20) -> int:
        stdout, stderr = self.process.communicate(timeout=timeout)
        self.events += [json.loads(line) for line in stdout.splitlines()]
        assert not stderr, stderr
        return self.process.returncode

    @property
    def last(self) -> dict:
        return self.events[-1]

    @property
    def message(self) -> str:
        return self.termination_log.read_text()


def run(folder: Path, build: str = "7", **env: str) -> Waiter:
    waiter = Waiter(folder, build, **env)
    waiter.finish()
    return waiter


def test_exits_0_once_the_folder_completes_while_it_waits(tmp_path):
    folder = tmp_path / "7"
    waiter = Waiter(folder, GATE_MIN_NDCG="0.25", GATE_MIN_LIFT="2")
    assert waiter.next_event()["state"] == "missing"
    model = write_model_folder(folder, "7", complete=False)
    assert waiter.next_event()["state"] == "incomplete"
    time.sleep(0.3)
    assert waiter.process.poll() is None, "the waiter must not pass an incomplete folder"
    modelshare.mark_complete(folder, "7")
    assert waiter.finish() == 0
    assert waiter.last["event"] == "ready" and waiter.last["model_sha256"] == modelshare.model_sha256(
        model.path
    )
    assert waiter.last["gate"] == [
        "model.ndcg_at_k 0.3000 >= GATE_MIN_NDCG 0.2500",
        "lift_ndcg 3.0000 >= GATE_MIN_LIFT 2.0000",
    ]
    assert "build 7 is complete and verified" in waiter.message


def test_failed_txt_stops_it_at_once_with_the_reason(tmp_path):
    folder = tmp_path / "7"
    waiter = Waiter(folder, WAIT_TIMEOUT_SECONDS="60")
    waiter.next_event()
    modelshare.mark_failed(folder, "data/2018/05/08/a.csv has no usable rows")
    started = time.monotonic()
    assert waiter.finish() == 3
    assert time.monotonic() - started < 5
    assert waiter.last["event"] == "training-failed"
    assert (
        "a.csv has no usable rows" in waiter.last["reason"] and "a.csv has no usable rows" in waiter.message
    )


def test_a_checksum_mismatch_exits_4_naming_the_file(tmp_path):
    model = write_model_folder(tmp_path / "7", "7")
    seen = model.path / "model" / "seen.npz"
    seen.write_bytes(seen.read_bytes() + b"\0")
    waiter = run(model.path)
    assert waiter.process.returncode == 4 and waiter.last["event"] == "integrity-error"
    assert "seen.npz has" in waiter.last["reason"] and "seen.npz has" in waiter.message


def test_a_folder_of_another_build_exits_4(tmp_path):
    model = write_model_folder(tmp_path / "7", "6")
    waiter = run(model.path, "7")
    assert waiter.process.returncode == 4 and "expected build '7'" in waiter.message


@pytest.mark.parametrize(
    "env, failure",
    [
        ({"GATE_MIN_NDCG": "0.35"}, "model.ndcg_at_k 0.3000 < GATE_MIN_NDCG 0.3500"),
        ({"GATE_MIN_LIFT": "3.5"}, "lift_ndcg 3.0000 < GATE_MIN_LIFT 3.5000"),
        ({"GATE_MIN_NDCG": "0.1", "GATE_MIN_LIFT": "4"}, "lift_ndcg 3.0000 < GATE_MIN_LIFT 4.0000"),
    ],
)
def test_a_model_below_the_floor_exits_5_with_the_numbers(tmp_path, env, failure):
    model = write_model_folder(tmp_path / "7", "7")
    waiter = run(model.path, **env)
    assert waiter.process.returncode == 5 and waiter.last["event"] == "gate-failed"
    assert failure in waiter.last["reason"] and failure in waiter.message


def test_without_metrics_a_gate_fails_closed(tmp_path):
    model = write_model_folder(tmp_path / "7", "7", metrics_doc={"k": 10, "model": {}})
    assert run(model.path).process.returncode == 0  # no gate set: nothing to hold it
    waiter = run(model.path, GATE_MIN_NDCG="0.1")
    assert waiter.process.returncode == 5 and "has no numeric model.ndcg_at_k" in waiter.message


def compared_with(champion, gain: float, lower: float, **more) -> dict:
    """metrics.json of a challenger the trainer compared with ``champion`` on its own test holdout."""
    paired = {
        "build": champion.build,
        "folder": str(champion.path),
        "model_sha256": modelshare.model_sha256(champion.path),
        "users": 400,
        "ndcg_gain": {"gain": gain, "interval": [lower, 2 * gain - lower], "confidence": 0.9},
        **more,
    }
    return {**metrics(ndcg=0.30), "champion": paired}


@pytest.mark.parametrize(
    "gain, lower, tolerance, code",
    [
        (-0.01, -0.03, "0", 5),
        (-0.01, -0.03, "0.05", 0),
        (0.0, 0.0, "", 0),
        (0.02, 0.01, "", 0),
        (-0.01, -0.021, "0.02", 5),
    ],
)
def test_the_challenger_must_not_be_worse_than_the_champion_on_the_same_users(
    tmp_path, gain, lower, tolerance, code
):
    # The champion's own number (on its own, older holdout) plays no part: 0.9 would fail any
    # comparison of raw NDCGs, yet only the paired gain on this build's holdout counts.
    champion = write_model_folder(tmp_path / "6", "6", metrics_doc=metrics(ndcg=0.9))
    model = write_model_folder(tmp_path / "7", "7", metrics_doc=compared_with(champion, gain, lower))
    waiter = run(model.path, GATE_CHAMPION_MODELFOLDER=str(champion.path), GATE_CHAMPION_TOLERANCE=tolerance)
    assert waiter.process.returncode == code
    expected = (
        f"paired NDCG gain over champion build 6 on 400 test users {gain:+.4f} "
        f"(one-sided 95% lower bound {lower:+.4f})"
    )
    if code:
        assert expected + " < -GATE_CHAMPION_TOLERANCE" in waiter.message
    else:
        assert any(
            check.startswith(expected + " >= -GATE_CHAMPION_TOLERANCE") for check in waiter.last["gate"]
        )


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("retired", "is unavailable"),
        ("incomplete", "is unavailable"),
        ("not compared", "has no paired comparison with the champion"),
        ("compared with another model", "the comparison is not with this champion"),
        ("unreadable", "could not be compared: its model format cannot be read"),
    ],
)
def test_a_champion_that_was_not_compared_fails_the_gate_with_the_reason(tmp_path, damage, reason):
    champion = write_model_folder(tmp_path / "6", "6")
    doc = compared_with(champion, 0.05, 0.04)
    if damage == "retired":
        shutil.rmtree(champion.path)
    elif damage == "incomplete":
        (champion.path / "complete.txt").unlink()
    elif damage == "not compared":
        del doc["champion"]
    elif damage == "compared with another model":
        doc["champion"]["model_sha256"] = "0" * 64
    elif damage == "unreadable":
        doc["champion"] = {
            "folder": str(champion.path),
            "error": "its model format cannot be read (ValueError: x)",
        }
    model = write_model_folder(tmp_path / "7", "7", metrics_doc=doc)
    waiter = run(model.path, GATE_CHAMPION_MODELFOLDER=str(champion.path), GATE_MIN_NDCG="0.2")
    assert waiter.process.returncode == 5, waiter.events
    assert reason in waiter.message and f"champion {champion.path}" in waiter.message


def test_the_champion_gate_does_not_apply_to_the_champion_itself(tmp_path):
    model = write_model_folder(tmp_path / "7", "7")
    waiter = run(model.path, GATE_CHAMPION_MODELFOLDER=str(model.path))
    assert waiter.process.returncode == 0
    assert [e["note"] for e in waiter.events if e["event"] == "gate-note"] == [
        "champion check skipped: the champion is this release"
    ]


@pytest.mark.parametrize(
    "env, code",
    [
        ({"GIT_SHA": "0123abc"}, 0),
        ({"GIT_SHA": "fedcba9"}, 4),
        ({"GIT_SHA": "0123abc", "TRAINER_IMAGE": "registry/trainer@sha256:1"}, 4),
    ],
    ids=["same-git-sha", "other-git-sha", "other-trainer-image"],
)
def test_a_manifest_of_another_release_exits_4(tmp_path, env, code):
    """A build id is one release: a folder trained by other code is not this release's model, even
    when its build number matches (a re-used id must never pair new images with an old model)."""
    model = write_model_folder(tmp_path / "7", "7")  # recorded git sha 0123abc, no trainer image
    waiter = run(model.path, **env)
    assert waiter.process.returncode == code
    if code:
        assert (
            "holds a model of another release" in waiter.message
            and "deploy under a new build id" in waiter.message
        )


def test_timeout_exits_6_saying_what_it_waited_for(tmp_path):
    folder = tmp_path / "7"
    write_model_folder(folder, "7", complete=False)
    started = time.monotonic()
    waiter = run(folder, WAIT_TIMEOUT_SECONDS="0.5")
    assert 0.5 <= time.monotonic() - started < 5
    assert waiter.process.returncode == 6 and waiter.last["event"] == "timeout"
    assert f"still waiting for {folder}/complete.txt" in waiter.message


def test_complete_txt_is_seen_within_a_second_despite_a_slow_poll(tmp_path):
    """Once manifest.json exists the waiter polls fast, so the gate adds little to a rollout."""
    folder = tmp_path / "7"
    write_model_folder(folder, "7", complete=False)
    waiter = Waiter(folder, POLL_INTERVAL_SECONDS="5")
    waiter.next_event()
    time.sleep(0.5)
    modelshare.mark_complete(folder, "7")
    completed = time.monotonic()
    assert waiter.finish() == 0
    assert time.monotonic() - completed < 1.0


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"MODELFOLDER": ""}, "MODELFOLDER"),
        ({"BUILD_NUMBER": ""}, "BUILD_NUMBER"),
        ({"POLL_INTERVAL_SECONDS": "0"}, "POLL_INTERVAL_SECONDS"),
        ({"WAIT_TIMEOUT_SECONDS": "an hour"}, "WAIT_TIMEOUT_SECONDS"),
        ({"GATE_MIN_NDCG": "1.5"}, "GATE_MIN_NDCG"),
        ({"GATE_MIN_LIFT": "-1"}, "GATE_MIN_LIFT"),
        ({"GATE_CHAMPION_MODELFOLDER": "models/6"}, "GATE_CHAMPION_MODELFOLDER"),
        ({"GATE_CHAMPION_TOLERANCE": "nan"}, "GATE_CHAMPION_TOLERANCE"),
    ],
)
def test_a_bad_environment_exits_2_naming_the_variable(tmp_path, env, variable):
    waiter = run(tmp_path / "7", **env)
    assert waiter.process.returncode == 2 and waiter.last["event"] == "config-error"
    assert variable in waiter.last["error"] and variable in waiter.message
