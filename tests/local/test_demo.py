"""`make demo` plays what the program renders: two plays make two releases side by side, and a
change of an env value in the program reaches the played process."""

import hashlib
import json
import subprocess
import sys
import urllib.request

import pytest

from local.demo import play
from local.play import PlayError, stop

FAST = {"trainerEnv": {"TUNE_BUDGET_SECONDS": "3", "TUNE_TRIALS_PER_FAMILY": "2"}}
ROWS = 20_000


def get(url):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.headers, json.loads(answer.read())


@pytest.fixture(scope="module")
def two_plays(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    first = play(config=FAST, root=root, rows=ROWS)
    stop(first.scorer)
    second = play(config=FAST, root=root, rows=ROWS)
    yield root, first, second
    stop(second.scorer)


def test_the_second_play_adds_the_next_build_beside_the_first(two_plays):
    root, first, second = two_plays
    assert (first.build, second.build) == ("1", "2")
    releases = json.loads((root / "stack.json").read_text())["releases"]
    assert set(releases) == {"1", "2"}
    # What build 1's trainer produced came back into its record with the second play (its termination
    # message).
    manifest = root / "volumes" / "models" / "1" / "manifest.json"
    assert releases["1"]["training"]["modelSha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    for build in ("1", "2"):
        assert (root / "volumes" / "models" / build / "complete.txt").is_file()


def test_the_played_scorer_serves_its_own_build(two_plays):
    root, _, second = two_plays
    headers, version = get(f"{second.url}/version")
    assert headers["X-Model-Build"] == "2" and version["build"] == "2"
    user = json.loads((root / "volumes" / "models" / "2" / "model" / "user_ids.json").read_text())[0]
    _, answer = get(f"{second.url}/recommendations/{user}?k=5")
    assert len(answer["items"]) == 5 and answer["fallback"] is None
    with urllib.request.urlopen(f"{second.url}/model-card", timeout=10) as card:
        assert card.headers["X-Model-Build"] == "2" and "<h1" in card.read().decode()


def test_a_changed_env_value_in_the_program_reaches_the_played_process(two_plays):
    root, _, _ = two_plays
    # The program turns gateMinLift into GATE_MIN_LIFT of the trainer and the waiter; an impossible
    # gate must fail the played Job, exactly as the cluster's Job would (the trainer decides the gate).
    with pytest.raises(
        PlayError,
        match="container trainer exited with code 3: build 3 is below the quality "
        "gate: lift_ndcg .* < GATE_MIN_LIFT 1000",
    ):
        play(config={**FAST, "gateMinLift": 1000}, root=root, rows=ROWS)


def test_make_demo_without_a_terminal_prints_recommendations_and_exits(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "local.demo",
            "--runtime",
            "process",
            "--rows",
            str(ROWS),
            "--root",
            str(tmp_path),
            "--config",
            "trainerEnv=" + json.dumps(FAST["trainerEnv"]),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "[popular fallback]" in run.stdout and "/docs" in run.stdout
    assert "demo | model card http://" in run.stdout and "/model-card (is this release better" in run.stdout


def test_an_unknown_runtime_is_refused_naming_the_choices(monkeypatch, capsys):
    from local.demo import main

    monkeypatch.setenv("DEMO_RUNTIME", "vm")
    with pytest.raises(SystemExit) as exited:
        main([])
    assert (
        exited.value.code == 2
        and "DEMO_RUNTIME=vm: choose one of ['docker', 'process']" in capsys.readouterr().err
    )
