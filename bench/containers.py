"""What running the release as containers costs, against the same apps as local processes.

- image build, cold (`--no-cache`: every layer rebuilt, wheels downloaded; the Python base is
  there) and warm (nothing changed: every layer from the cache), per app; image sizes.
- the trainer on the same sample data (the demo's generator) with the same fixed amount of work
  (trial-bound tuning, same families, threads and seed): in its container (UID 10001, read-only
  root, no network) against `python -m trainer` as a process, alternated. Goal: at most 1.1x. Wall
  time, and apart: the trainer's own time for the work (its log), and an empty run of the same
  container or process (`python -c pass`): what starting and removing one costs.
- the scorer's cold start on that model, from start to the first 200 of its readiness probe:
  `docker run` against `python -m scorer`.

Both sides run through the demo's two runtimes (local.containers, local.play) from one pod spec,
so the bench measures what `make demo` and `make e2e` run. Needs a Docker engine and root (the
base image is built with debootstrap when missing: e2e.docker_engine).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from e2e import docker_engine
from local import containers, play
from local.play import Pod

BUILD = "bench"
ROWS = 200_000
TRAIN_RUNS = 3  # each side, alternated
START_RUNS = 5
# A fixed amount of work, not a time budget: the trial count bounds tuning on both sides.
TRAINER_ENV = {
    "TRAIN_FAMILIES": "als,item-knn",
    "TUNE_TRIALS_PER_FAMILY": "3",
    "TUNE_BUDGET_SECONDS": "3600",
    "TRAIN_THREADS": "2",
    "TRAIN_SEED": "7",
}
SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001}
CONTAINER_SECURITY = {
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def progress(message: str) -> None:
    """Each figure as it is measured: the whole bench takes tens of minutes on vfs."""
    print(f"  {message}", file=sys.stderr, flush=True)


def pod(container: dict) -> dict:
    return {
        "kind": "Pod",
        "metadata": {"name": f"bench-{container['name']}", "namespace": "bench"},
        "spec": {
            "securityContext": SECURITY,
            "containers": [
                {
                    "securityContext": CONTAINER_SECURITY,
                    "volumeMounts": [
                        {"name": "models", "mountPath": "/mnt/models"},
                        {"name": "data", "mountPath": "/mnt/data", "readOnly": True},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                    **container,
                }
            ],
            "volumes": [
                {"name": "models", "persistentVolumeClaim": {"claimName": "models"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }


def trainer_spec(build: str) -> dict:
    env = {
        "MODELFOLDER": f"/mnt/models/{build}",
        "BUILD_NUMBER": build,
        "DATA_DIR": "/mnt/data",
        **TRAINER_ENV,
    }
    return {
        "name": "trainer",
        "image": containers.image_tag("trainer", BUILD),
        "command": ["python", "-m", "trainer"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }


def empty_spec() -> dict:
    """The trainer's container (image, user, mounts, env) running nothing: the cost of a run itself."""
    return {**trainer_spec("empty"), "name": "empty", "command": ["python", "-c", "pass"]}


def scorer_spec(build: str) -> dict:
    env = {"MODELFOLDER": f"/mnt/models/{build}", "BUILD_NUMBER": build, "PORT": "8080"}
    return {
        "name": "scorer",
        "image": containers.image_tag("scorer", BUILD),
        "command": ["python", "-m", "scorer"],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}},
    }


def build_times() -> tuple[dict, dict, dict]:
    cold, warm = {}, {}
    for app in containers.APPS:
        subprocess.run(["docker", "rmi", "--force", containers.image_tag(app, BUILD)], capture_output=True)
    log = docker_engine.OUT / "bench-build.log"
    for app in containers.APPS:
        started = time.monotonic()
        containers.build_image(app, BUILD, log, no_cache=True)
        cold[app] = time.monotonic() - started
        progress(f"{app}: cold build {cold[app]:.0f} s")
    for app in containers.APPS:
        # Untimed: the legacy builder takes an older matching layer (left by earlier builds) over
        # the --no-cache build's, and rebuilds what follows it; one build settles the cache.
        containers.build_image(app, BUILD, log)
        started = time.monotonic()
        containers.build_image(app, BUILD, log)
        warm[app] = time.monotonic() - started
        progress(f"{app}: warm build {warm[app]:.1f} s")
    sizes = {app: docker_engine.image_size(containers.image_tag(app, BUILD)) for app in containers.APPS}
    return cold, warm, sizes


def run_once(runtime, volumes: Path, spec: dict, build: str) -> tuple[float, Path]:
    """Seconds from prepared to removed, and the run's output."""
    the_pod = Pod.of(pod(spec), volumes)
    output = volumes.parent / f"{spec['name']}-{build}.log"
    try:
        container = runtime.prepare(the_pod, the_pod.spec["containers"][0])
        started = time.monotonic()
        with open(output, "w") as out:
            runtime.run_to_completion(container, lambda _: None, timeout=1800, stdout=out)
        return time.monotonic() - started, output
    finally:
        the_pod.cleanup()


def own_seconds(output: Path) -> float:
    """The trainer's own time for the work (its `complete` line: from reading the data to publishing)."""
    for line in output.read_text().splitlines():
        if line.startswith("{") and json.loads(line).get("event") == "complete":
            return json.loads(line)["seconds"]
    raise RuntimeError(f"the trainer did not complete; see {output}")


def start_once(runtime, volumes: Path, build: str) -> float:
    the_pod = Pod.of(pod(scorer_spec(build)), volumes)
    container = runtime.prepare(the_pod, the_pod.spec["containers"][0])
    started = time.monotonic()
    handle = runtime.start(container, stdout=subprocess.DEVNULL)
    try:
        runtime.wait_ready(container, handle, timeout=120)
        return time.monotonic() - started
    finally:
        runtime.stop(handle)
        the_pod.cleanup()


def main() -> str:
    docker_engine.ensure_engine()
    docker_engine.ensure_base_image()
    driver = docker_engine.storage_driver()
    load_before = os.getloadavg()[0]
    cold, warm, sizes = build_times()

    work = Path(tempfile.mkdtemp(prefix="bench-containers-"))
    volumes = work / "volumes"
    try:
        from trainer import sample  # the demo's generator: the data the trainer is benchmarked on

        sample.write(volumes / "data", ROWS)
        # seconds by side ("container", "process"): the whole run, the trainer's own, an empty run
        trained: dict[str, list[float]] = {"container": [], "process": []}
        own: dict[str, list[float]] = {"container": [], "process": []}
        empty: dict[str, list[float]] = {"container": [], "process": []}
        for run in range(TRAIN_RUNS):
            for side, runtime in (("container", containers), ("process", play)):
                seconds, output = run_once(runtime, volumes, trainer_spec(f"{side}-{run}"), f"{side}-{run}")
                trained[side].append(seconds)
                own[side].append(own_seconds(output))
                # The same container or process with no work: what starting and removing it costs.
                empty[side].append(run_once(runtime, volumes, empty_spec(), f"{side}-{run}")[0])
                progress(
                    f"trainer as a {side}: {seconds:.1f} s, its own {own[side][-1]:.1f} s; "
                    f"empty run {empty[side][-1]:.1f} s"
                )
        started: dict[str, list[float]] = {"container": [], "process": []}
        for _ in range(START_RUNS):
            for side, runtime in (("container", containers), ("process", play)):
                started[side].append(start_once(runtime, volumes, "container-0"))
                progress(f"scorer as a {side}: ready in {started[side][-1]:.2f} s")
    finally:
        containers.remove_all()
        shutil.rmtree(work, ignore_errors=True)

    load_after = os.getloadavg()[0]

    def med(values):
        return statistics.median(values)

    lines = [
        "## Containers: images, and the apps in them against the same apps as processes",
        "",
        "`.venv/bin/python -m bench containers` (needs a Docker engine and root). Images built with the",
        f"legacy builder on the {driver} storage driver (what `make e2e` starts here); the Python base is",
        "the e2e's debootstrap bookworm image (`e2e/docker_engine.py`), present before the cold builds.",
        "",
        "| image | cold build s (`--no-cache`) | warm build s (cached) | size MB |",
        "|---|---:|---:|---:|",
        *[
            f"| {app} | {cold[app]:.0f} | {warm[app]:.1f} | {sizes[app] / 1e6:.0f} |"
            for app in containers.APPS
        ],
        "",
        f"Trainer, {ROWS:,} sample rows, fixed work "
        f"({', '.join(f'{k}={v}' for k, v in TRAINER_ENV.items())}), median of {TRAIN_RUNS} each, "
        f"alternated (load average {load_before:.1f} when the bench started, {load_after:.1f} when it "
        "ended):",
        "",
        "| trainer run | wall seconds | ratio | the trainer's own seconds | ratio | empty run seconds |",
        "|---|---:|---:|---:|---:|---:|",
        f"| process (`python -m trainer`) | {med(trained['process']):.1f} | 1.00x | "
        f"{med(own['process']):.1f} | 1.00x | {med(empty['process']):.1f} |",
        f"| container (UID 10001, read-only root, `--network none`) | {med(trained['container']):.1f} | "
        f"{med(trained['container']) / med(trained['process']):.2f}x (goal <= 1.1x) | "
        f"{med(own['container']):.1f} | {med(own['container']) / med(own['process']):.2f}x | "
        f"{med(empty['container']):.1f} |",
        "",
        "Wall: from `docker create` (or the process's start) to the container removed. The trainer's own",
        "seconds: its `complete` log line, from reading the data to the published folder (same threads,",
        "same work on both sides). Empty run: the same container or process running `python -c pass`.",
        "The container's wall time differs from the process's by "
        f"{med(trained['container']) - med(trained['process']):+.1f} s a run; an empty container run costs "
        f"{med(empty['container']) - med(empty['process']):+.1f} s over an empty process",
        f"(creating, starting and removing the container on {driver}). Both sides spend time outside the",
        "trainer's own seconds: before its first log line the interpreter imports numpy, scipy, pyarrow and",
        "implicit, after its last it exits. On the vfs storage driver, which `make e2e` started until",
        "2026-11-29, `docker create` copied the whole image into the container's layer (12-13 s for the",
        "trainer's) and `docker rm` deleted it: the wall ratio was 2.53x and the scorer's start 6.81x in",
        "that day's 09:17 UTC run.",
        "",
        f"Scorer cold start to the first 200 of `/readyz` on that model, median (worst) of {START_RUNS}:",
        "",
        "| scorer start | seconds | ratio |",
        "|---|---:|---:|",
        f"| process (`python -m scorer`) | {med(started['process']):.2f} ({max(started['process']):.2f}) | "
        "1.00x |",
        f"| container (`docker create` + `start`, published on 127.0.0.1) | {med(started['container']):.2f} "
        f"({max(started['container']):.2f}) | {med(started['container']) / med(started['process']):.2f}x |",
    ]
    return "\n".join(lines)
