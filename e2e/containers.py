"""The `containers` suite: the release's real images, played as Docker containers from the rendered pods.

The engine is started if needed, the Python base built (cached) and the three app images built
for the suite's builds; then the `local` stack's rendered Job and Deployment run as containers
(local.containers: UID 10001, read-only root filesystem, no network for the trainer and the
waiter, the scorer published on 127.0.0.1 only) on the demo's sample data generator's shapes:

    serve           build N trains, the waiter passes, the scorer is Ready by its probe, a request
                    answers with X-Model-Build: N, /metrics answers
    beside          build N+1 beside it; N still serves the same model and answers
    gate            GATE_MIN_NDCG 0.99: the Job fails with the reason, the waiter re-checks the
                    gate and refuses, its log says why, no scorer container
    corrupted       a model file changed after training: the waiter refuses it (integrity)
    killed-trainer  `docker kill` of the trainer mid-run: the waiter does not accept the folder;
                    a rerun of the Job completes and the waiter passes

Every container started here is removed at the end, failed scenarios included, and so are the
untagged images its rebuilds replaced (each holds its layers on disk).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from e2e import docker_engine
from e2e.report import OUT, Report
from local import containers, demo
from local.play import PlayError

SUITE = "containers"
ROOT = OUT / "play"
ROWS = 60_000  # the demo's generator at a modest size: a few thousand users and items
# A small tuning budget: the suite trains six times on 2 cores.
FAST = {"trainerEnv": {"TUNE_BUDGET_SECONDS": "5", "TUNE_TRIALS_PER_FAMILY": "2"}}
FIRST_BUILD = 1001  # far from the demo's numbering; the folder is wiped at each run anyway


def get(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.headers, answer.read()


def model_folder(release: demo.Release) -> Path:
    """The release's folder on the model share, as this machine sees it."""
    trainer = demo.prepare(release.job, release.job.spec["containers"][0])
    return Path(trainer.env["MODELFOLDER"])


def scorer_containers(release: demo.Release) -> list[str]:
    result = subprocess.run(
        [
            "docker",
            "ps",
            "--all",
            "--quiet",
            "--filter",
            f"label={containers.LABEL}.pod={release.deployment.name}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


def hold_refused(release: demo.Release, log_name: str) -> tuple[str, str]:
    """Run the Deployment's init containers, which must refuse; return (the error, the waiter's log)."""
    log_file = ROOT / "logs" / log_name
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as out:
        try:
            demo.hold(release, containers, stdout=out)
        except PlayError as refused:
            return str(refused), log_file.read_text()
    raise AssertionError(
        f"the waiter accepted the folder of build {release.build}; log:\n{log_file.read_text()}"
    )


def outcome(log: str) -> dict:
    """The waiter's last JSON line: its outcome event."""
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"the waiter logged no JSON outcome line:\n{log}")
    return lines[-1]


def run(report: Report) -> None:
    facts = report.facts.setdefault(SUITE, {})
    builds = [str(FIRST_BUILD + i) for i in range(5)]
    serving: list[demo.Played] = []
    with report.scenario(SUITE, "images") as details:
        docker_engine.ensure_engine()
        facts["storage_driver"] = docker_engine.storage_driver()
        started = time.monotonic()
        base = docker_engine.ensure_base_image()
        facts["base_image"] = {
            "tag": base,
            "bytes": docker_engine.image_size(base),
            "seconds": round(time.monotonic() - started, 1),
        }
        started = time.monotonic()
        tags = docker_engine.build_images(
            builds[0]
        )  # the later builds' are cached layers, built as each is played
        facts["build_seconds"] = round(time.monotonic() - started, 1)
        facts["image_bytes"] = {app: docker_engine.image_size(tag) for app, tag in tags.items()}
        details.update(facts)

    shutil.rmtree(ROOT, ignore_errors=True)
    try:
        _scenarios(report, builds, serving)
    finally:
        for played in serving:
            scorer = played.scorer
            assert isinstance(scorer, containers.Running), "the suite plays with runtime=containers"
            containers.stop(scorer)
        left = containers.remove_all()
        if left:
            print(f"e2e: {SUITE}: removed {len(left)} leftover containers", flush=True)
        facts["pruned_images"] = docker_engine.prune_replaced_images()


def _scenarios(report: Report, builds: list[str], serving: list) -> None:
    n, n1, gated, corrupted, killed = builds

    with report.scenario(SUITE, "serve") as details:
        played = demo.play(n, config=FAST, root=ROOT, rows=ROWS, runtime=containers)
        serving.append(played)
        release_user = demo.sample_users(played.data_dir, 1)[0]
        headers, body = get(f"{played.url}/recommendations/{release_user}?k=5")
        answer = json.loads(body)
        assert headers["X-Model-Build"] == n, f"X-Model-Build {headers['X-Model-Build']!r}, expected {n}"
        assert len(answer["items"]) == 5, answer
        _, metrics = get(f"{played.url}/metrics")
        assert b"# TYPE" in metrics, "no Prometheus exposition at /metrics"
        details.update(build=n, url=played.url, items=[i["item_id"] for i in answer["items"]])

    with report.scenario(SUITE, "beside") as details:
        first = serving[0]
        _, before_version = get(f"{first.url}/version")
        _, before = get(f"{first.url}/recommendations/{release_user}?k=5")
        second = demo.play(n1, config=FAST, root=ROOT, rows=ROWS, runtime=containers)
        serving.append(second)
        headers, _ = get(f"{second.url}/version")
        assert headers["X-Model-Build"] == n1
        headers, after = get(f"{first.url}/recommendations/{release_user}?k=5")
        _, after_version = get(f"{first.url}/version")
        assert headers["X-Model-Build"] == n and after == before, "build N changed while N+1 was played"
        assert json.loads(after_version)["model_sha256"] == json.loads(before_version)["model_sha256"]
        details.update(builds=[n, n1], first_url=first.url, second_url=second.url)

    with report.scenario(SUITE, "gate") as details:
        # The Job decides the gate (it fails at once with the reason); the waiter, run anyway as a
        # pod would be, re-checks the gate on the folder and refuses it; no scorer container.
        release = demo.render_release(gated, {**FAST, "gateMinNdcg": 0.99}, ROOT, ROWS, containers)
        try:
            demo.train(release, containers)
        except PlayError as failed:
            job_error = str(failed)
        else:
            raise AssertionError("the training Job passed a gate of GATE_MIN_NDCG 0.99")
        assert "quality gate" in job_error and "0.99" in job_error, job_error
        error, log = hold_refused(release, "gate-waiter.log")
        said = outcome(log)
        assert said.get("event") == "gate-failed", said
        assert "0.99" in log, "the waiter's log does not name the gate that failed"
        assert not scorer_containers(release), "a scorer container was created for a refused model"
        details.update(job_error=job_error, error=error, waiter=said)

    with report.scenario(SUITE, "corrupted") as details:
        release = demo.render_release(corrupted, FAST, ROOT, ROWS, containers)
        demo.train(release, containers)
        victim = sorted(p for p in (model_folder(release) / "model").iterdir() if p.is_file())[0]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
        victim.write_bytes(bytes(data))
        error, log = hold_refused(release, "corrupted-waiter.log")
        said = outcome(log)
        assert said.get("event") == "integrity-error", said
        assert victim.name in log, f"the waiter's log does not name {victim.name}"
        details.update(error=error, corrupted=victim.name, waiter=said)

    with report.scenario(SUITE, "killed-trainer") as details:
        release = demo.render_release(killed, {**FAST, "waitTimeoutSeconds": 3}, ROOT, ROWS, containers)
        trainer = containers.prepare(release.job, release.job.spec["containers"][0])
        log_file = ROOT / "logs" / "killed-trainer.log"
        with log_file.open("wb") as out:
            running = containers.start(trainer, stdout=out)
            try:
                deadline = time.monotonic() + 300
                while '"event":"tune"' not in log_file.read_text():
                    assert running.poll() is None, (
                        f"the trainer ended before it could be killed:\n{log_file.read_text()}"
                    )
                    assert time.monotonic() < deadline, "the trainer did not reach tuning in 300 s"
                    time.sleep(0.2)
                subprocess.run(["docker", "kill", trainer.docker_name], check=True, capture_output=True)
                while running.poll() is None:
                    time.sleep(0.1)
            finally:
                containers.stop(running)
        folder = model_folder(release)
        assert not (folder / "complete.txt").exists(), "a killed trainer left complete.txt"
        error, log = hold_refused(release, "killed-waiter.log")
        refused = outcome(log)
        started = time.monotonic()
        demo.train(release, containers)
        demo.hold(release, containers)
        details.update(
            killed_exit=running.returncode,
            waiter_after_kill=refused,
            waiter_error=error,
            rerun_seconds=round(time.monotonic() - started, 1),
            left_after_kill=sorted(p.name for p in folder.iterdir()),
        )
