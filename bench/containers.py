"""What running the release as containers costs, against the same apps as local processes.

- image build, cold (`--no-cache`: every layer rebuilt, wheels downloaded; the Python base is
  there) and warm (nothing changed: every layer from the cache), per app; image sizes.
- the trainer on the same sample data (the demo's generator) with the same fixed amount of work
  (trial-bound tuning, same families, threads and seed): in its container (UID 10001, read-only
  root, no network) against `python -m trainer` as a process. Goal: at most 1.1x.
- the scorer's cold start on that model, from start to the first 200 of its readiness probe:
  `docker run` against `python -m scorer`.

Both sides run through the demo's two runtimes (local.containers, local.play) from one pod spec,
so the bench measures what `make demo` and `make e2e` run. Needs a Docker engine and root (the
base image is built with debootstrap when missing: e2e.docker_engine).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from e2e import docker_engine
from local import containers, play
from local.play import Pod

BUILD = "bench"
ROWS = 200_000
TRAIN_RUNS = 2  # each side, alternated
START_RUNS = 5
# A fixed amount of work, not a time budget: the trial count bounds tuning on both sides.
TRAINER_ENV = {"TRAIN_FAMILIES": "als,item-knn", "TUNE_TRIALS_PER_FAMILY": "3", "TUNE_BUDGET_SECONDS": "3600",
               "TRAIN_THREADS": "2", "TRAIN_SEED": "7"}
SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001}
CONTAINER_SECURITY = {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def pod(container: dict) -> dict:
    return {"kind": "Pod", "metadata": {"name": f"bench-{container['name']}", "namespace": "bench"}, "spec": {
        "securityContext": SECURITY,
        "containers": [{"securityContext": CONTAINER_SECURITY, "volumeMounts": [
            {"name": "models", "mountPath": "/mnt/models"}, {"name": "data", "mountPath": "/mnt/data", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"}], **container}],
        "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "tmp", "emptyDir": {}}],
    }}


def trainer_spec(build: str) -> dict:
    env = {"MODELFOLDER": f"/mnt/models/{build}", "BUILD_NUMBER": build, "DATA_DIR": "/mnt/data", **TRAINER_ENV}
    return {"name": "trainer", "image": containers.image_tag("trainer", BUILD), "command": ["python", "-m", "trainer"],
            "env": [{"name": k, "value": v} for k, v in env.items()]}


def scorer_spec(build: str) -> dict:
    env = {"MODELFOLDER": f"/mnt/models/{build}", "BUILD_NUMBER": build, "PORT": "8080"}
    return {"name": "scorer", "image": containers.image_tag("scorer", BUILD), "command": ["python", "-m", "scorer"],
            "env": [{"name": k, "value": v} for k, v in env.items()], "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}}}


def build_times() -> tuple[dict, dict, dict]:
    cold, warm = {}, {}
    for app in containers.APPS:
        subprocess.run(["docker", "rmi", "--force", containers.image_tag(app, BUILD)], capture_output=True)
    log = docker_engine.OUT / "bench-build.log"
    for app in containers.APPS:
        started = time.monotonic()
        containers.build_image(app, BUILD, log, no_cache=True)
        cold[app] = time.monotonic() - started
    for app in containers.APPS:
        started = time.monotonic()
        containers.build_image(app, BUILD, log)
        warm[app] = time.monotonic() - started
    sizes = {app: docker_engine.image_size(containers.image_tag(app, BUILD)) for app in containers.APPS}
    return cold, warm, sizes


def train_once(runtime, volumes: Path, build: str) -> float:
    the_pod = Pod.of(pod(trainer_spec(build)), volumes)
    try:
        container = runtime.prepare(the_pod, the_pod.spec["containers"][0])
        started = time.monotonic()
        with open(volumes.parent / f"train-{build}.log", "w") as out:
            runtime.run_to_completion(container, lambda _: None, timeout=1800, stdout=out)
        return time.monotonic() - started
    finally:
        the_pod.cleanup()


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
    cold, warm, sizes = build_times()

    work = Path(tempfile.mkdtemp(prefix="bench-containers-"))
    volumes = work / "volumes"
    try:
        from trainer import sample  # the demo's generator: the data the trainer is benchmarked on

        sample.write(volumes / "data", ROWS)
        trained = {"container": [], "process": []}
        for run in range(TRAIN_RUNS):
            for side, runtime in (("container", containers), ("process", play)):
                trained[side].append(train_once(runtime, volumes, f"{side}-{run}"))
        started = {"container": [], "process": []}
        for _ in range(START_RUNS):
            for side, runtime in (("container", containers), ("process", play)):
                started[side].append(start_once(runtime, volumes, "container-0"))
    finally:
        containers.remove_all()
        shutil.rmtree(work, ignore_errors=True)

    def med(values):
        return statistics.median(values)

    lines = [
        "## Containers: images, and the apps in them against the same apps as processes",
        "",
        "`.venv/bin/python -m bench containers` (needs a Docker engine and root). Images built with the",
        "legacy builder on the vfs storage driver (what `make e2e` sets up here); the Python base is the",
        "e2e's debootstrap bookworm image (`e2e/docker_engine.py`), present before the cold builds.",
        "",
        "| image | cold build s (`--no-cache`) | warm build s (cached) | size MB |",
        "|---|---:|---:|---:|",
        *[f"| {app} | {cold[app]:.0f} | {warm[app]:.1f} | {sizes[app] / 1e6:.0f} |" for app in containers.APPS],
        "",
        f"Trainer, {ROWS:,} sample rows, fixed work ({', '.join(f'{k}={v}' for k, v in TRAINER_ENV.items())}), "
        f"median of {TRAIN_RUNS} each, alternated:",
        "",
        "| trainer run | seconds | ratio |",
        "|---|---:|---:|",
        f"| process (`python -m trainer`) | {med(trained['process']):.1f} | 1.00x |",
        f"| container (UID 10001, read-only root, `--network none`) | {med(trained['container']):.1f} | "
        f"{med(trained['container']) / med(trained['process']):.2f}x (goal <= 1.1x) |",
        "",
        f"Scorer cold start to the first 200 of `/readyz` on that model, median (worst) of {START_RUNS}:",
        "",
        "| scorer start | seconds | ratio |",
        "|---|---:|---:|",
        f"| process (`python -m scorer`) | {med(started['process']):.2f} ({max(started['process']):.2f}) | 1.00x |",
        f"| container (`docker create` + `start`, published on 127.0.0.1) | {med(started['container']):.2f} "
        f"({max(started['container']):.2f}) | {med(started['container']) / med(started['process']):.2f}x |",
    ]
    return "\n".join(lines)
