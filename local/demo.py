"""`make demo`: play the `local` stack's release for the next build, with no cloud and no cluster.

    render the program under mocks (Pulumi.local.yaml, the last play's `releases` fed back)
      -> the release's training Job        played to completion   (trainer)
      -> its scoring Deployment            init container, then   (waiter, then scorer)
         the scorer ready by the Deployment's own readiness probe
      -> the update's outputs: the program rendered again with the trainer's termination
         message, as `pulumi up` reads it once the Job completed (components/training_results.py)
      -> sample recommendations, URLs; serve until Ctrl-C (or exit, without a terminal)

Every command, environment variable, mount and probe comes from the rendered objects, so the demo
cannot drift from what `pulumi up --stack local` would run. Two runtimes play them: Docker
containers of the build's images (local.containers; the default when a Docker engine answers) or
local processes of this checkout (local.play); `--runtime docker|process` or DEMO_RUNTIME picks
one. The stack's outputs are kept in .demo/stack.json, so the next play adds the next build
beside this one, as `pulumi up` would, and every volume is a folder under .demo/volumes/.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from local import containers
from local import play as processes
from local.play import ROOT, PlayError, Pod, prepare
from local.render import Rendering, render

# local.play (processes) or local.containers: prepare, run_to_completion, start, wait_ready, stop
Runtime = ModuleType
PROCESSES, CONTAINERS = processes, containers
RUNTIMES = {"docker": CONTAINERS, "process": PROCESSES}
RUNTIME_ENV = "DEMO_RUNTIME"  # docker | process; default: docker when an engine answers

DEMO = ROOT / ".demo"
STACK = "local"
SAMPLE_ROWS = 300_000
VERSION_LABEL = "app.kubernetes.io/version"


def say(message: str) -> None:
    print(f"demo | {message}", flush=True)


@dataclass
class Release:
    """One build rendered, its pods ready to play, the sample data in place."""

    build: str
    root: Path
    rendering: Rendering
    job: Pod
    deployment: Pod
    data_dir: Path
    config: dict  # the stack config overrides the release was rendered with, build included
    previous: dict | None  # the `releases` output of the last play, fed back
    # Job name -> what its trainer left as the termination message: the update's outputs hold it in
    # the release's record, as the program reads the completed Job's pods in a cluster.
    pod_messages: dict[str, str] = field(default_factory=dict)


@dataclass
class Played:
    build: str
    url: str
    data_dir: Path
    rendering: Rendering
    scorer: subprocess.Popen | containers.Running  # the running scorer; stop it with its runtime's stop


def shown(path: Path) -> Path:
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def next_build(releases: dict) -> str:
    numbers = [int(build) for build in releases if build.isdigit()]
    return str(max(numbers, default=0) + 1)


def secrets_of(rendering: Rendering) -> dict[str, dict[str, str]]:
    found = {}
    for secret in rendering.k8s("Secret"):
        values = dict(secret.get("stringData") or {})
        values.update({k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()})
        found[secret["metadata"]["name"]] = values
    return found


def release_object(rendering: Rendering, kind: str, build: str) -> dict:
    matches = [o for o in rendering.k8s(kind) if o["metadata"].get("labels", {}).get(VERSION_LABEL) == build]
    if len(matches) != 1:
        raise PlayError(f"expected one {kind} of build {build} in the rendering, found {len(matches)}")
    return matches[0]


def ensure_sample_data(pod: Pod, rows: int) -> Path:
    """Write the sample interactions where the rendered trainer will look for them (its DATA_DIR)."""
    trainer = prepare(pod, pod.spec["containers"][0])
    setting = trainer.env.get("DATA_DIR")
    if not setting:
        raise PlayError(
            "the local stack's trainer reads no DATA_DIR: set dataSource=volume in Pulumi.local.yaml"
        )
    data_dir = Path(setting)
    if not any(data_dir.glob("*.csv")):
        say(f"writing a sample interactions dataset ({rows:,} rows) to {shown(data_dir)}")
        from trainer import sample  # the ETL's stand-in, not part of any played container

        sample.write(data_dir, rows)
    return data_dir


def play(
    build: str | None = None,
    config: dict | None = None,
    root: Path = DEMO,
    rows: int = SAMPLE_ROWS,
    runtime: Runtime = PROCESSES,
) -> Played:
    """Render and play one release; return it serving. The caller stops `Played.scorer` with
    `runtime.stop`."""
    release = render_release(build, config, root, rows, runtime)
    train(release, runtime)
    hold(release, runtime)
    played = serve(release, runtime)
    try:
        played.rendering = recorded(release)
    except Exception:
        runtime.stop(played.scorer)
        raise
    state_file = root / "stack.json"
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(
        json.dumps({"releases": played.rendering.outputs["releases"]}, indent=2, sort_keys=True)
    )
    release.job.cleanup()
    return played


def recorded(release: Release) -> Rendering:
    """The update's outputs: the program rendered again with what the played trainer left as its
    termination message, which `pulumi up` reads once the Job completed and records with the release."""
    rendering = render(
        STACK, release.config, previous_releases=release.previous, pod_messages=release.pod_messages
    )

    def pod(of: Rendering) -> dict:
        return release_object(of, "Job", release.build)["spec"]["template"]["spec"]

    if pod(rendering) != pod(release.rendering):  # the same program twice: only createdAt may move
        raise PlayError(f"build {release.build}: the Job rendered for the outputs is not the one played")
    return rendering


def render_release(
    build: str | None, config: dict | None, root: Path, rows: int = SAMPLE_ROWS, runtime: Runtime = PROCESSES
) -> Release:
    """Render the stack for `build` (default: the next one after the last play's) with the sample data
    in place."""
    state_file = root / "stack.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    previous = state.get("releases")
    build = build or next_build(previous or {})
    say(
        f"rendering stack '{STACK}' for build {build} under Pulumi mocks"
        + (f" (the ledger keeps {', '.join(sorted(previous))})" if previous else "")
    )
    config = {**(config or {}), "build": build}
    # The objects to play (the record's `training` here is the mocks' stand-in: `recorded` renders
    # the outputs again with what the played trainer leaves).
    rendering = render(STACK, config, previous_releases=previous)
    secrets = secrets_of(rendering)
    volumes = root / "volumes"
    job = Pod.of(release_object(rendering, "Job", build), volumes, secrets)
    deployment = Pod.of(release_object(rendering, "Deployment", build), volumes, secrets)
    data_dir = ensure_sample_data(job, rows)
    if runtime is CONTAINERS:
        say(f"building the images of build {build} (docker build, cached layers)")
        try:
            containers.build_images(build)
        except PlayError as exc:
            raise PlayError(
                f"{exc}\n(to play the release as local processes instead: {RUNTIME_ENV}=process)"
            ) from None
    return Release(
        build=build,
        root=root,
        rendering=rendering,
        job=job,
        deployment=deployment,
        data_dir=data_dir,
        config=config,
        previous=previous,
    )


def train(release: Release, runtime: Runtime = PROCESSES, stdout=None) -> None:
    """The training Job: its init containers, then its container, each to completion."""
    job = release.job
    say(f"Job {job.name}: training on {shown(release.data_dir)}")
    started = time.monotonic()
    for container in job.spec.get("initContainers", []) + job.spec["containers"]:
        message = runtime.run_to_completion(runtime.prepare(job, container), say, stdout=stdout)
        if message:
            release.pod_messages[job.name] = message
    say(f"Job {job.name} complete in {time.monotonic() - started:.1f} s")


def hold(release: Release, runtime: Runtime = PROCESSES, stdout=None) -> None:
    """The Deployment's init containers, which hold the pod until the model is verified and good enough."""
    deployment = release.deployment
    say(
        f"Deployment {deployment.name}: init containers hold the pod until the model is verified "
        "and good enough"
    )
    for container in deployment.spec.get("initContainers", []):
        runtime.run_to_completion(runtime.prepare(deployment, container), say, stdout=stdout)


def serve(release: Release, runtime: Runtime = PROCESSES) -> Played:
    """Start the Deployment's container and wait until its own readiness probe passes."""
    deployment = release.deployment
    scorer = runtime.prepare(deployment, deployment.spec["containers"][0])
    log_file = release.root / "logs" / f"{deployment.name}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handle = runtime.start(scorer, stdout=log_file.open("ab"))
    try:
        url = runtime.wait_ready(scorer, handle)
    except PlayError:
        runtime.stop(handle)
        raise
    say(f"{scorer.name} of build {release.build} is ready at {url} (log: {shown(log_file)})")
    return Played(
        build=release.build, url=url, data_dir=release.data_dir, rendering=release.rendering, scorer=handle
    )


def sample_users(data_dir: Path, count: int = 3) -> list[str]:
    users: list[str] = []
    with sorted(data_dir.glob("*.csv"))[0].open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["user_id"] not in users:
                users.append(row["user_id"])
            if len(users) == count:
                break
    return users


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def show(played: Played, users: list[str]) -> None:
    version = get(f"{played.url}/version")
    metrics = version.get("metrics", {})
    say(
        f"model {version['model_sha256'][:12]}: nDCG@{metrics.get('k')} "
        f"{metrics.get('model', {}).get('ndcg_at_k', 0):.3f} vs popularity "
        f"{metrics.get('popularity', {}).get('ndcg_at_k', 0):.3f} (lift {metrics.get('lift_ndcg', 0):.2f})"
    )
    for user in users + ["someone-new"]:
        answer = get(f"{played.url}/recommendations/{urllib.parse.quote(user)}?k=5")
        items = ", ".join(f"{i['item_id']} ({i['score']:.2f})" for i in answer["items"])
        tag = " [popular fallback]" if answer["fallback"] else ""
        say(f"  {user}: {items}{tag}")
    say(f"model card {played.url}/model-card (is this release better, and on what data?)")
    say(f"API docs {played.url}/docs · metrics {played.url}/metrics · version {played.url}/version")
    live = ", ".join(sorted(played.rendering.outputs["releases"]))
    say(f"releases in the stack's ledger: {live} (play again for the next build)")


def parse_config(item: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise PlayError(f"--config takes KEY=VALUE, got {item!r}")
    try:
        return key, json.loads(value) if value[:1] in "{[" else value
    except ValueError as exc:
        raise PlayError(f"--config {key}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--build", help="build id to play (default: the next number)")
    parser.add_argument("--rows", type=int, default=SAMPLE_ROWS, help="rows of the sample dataset")
    parser.add_argument(
        "--root", type=Path, default=DEMO, help="folder for the demo's volumes, logs and stack state"
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a stack config value, as `pulumi up --config` does (JSON for maps)",
    )
    parser.add_argument(
        "--runtime",
        choices=sorted(RUNTIMES),
        default=os.environ.get(RUNTIME_ENV) or None,
        help=f"run the pods as Docker containers or as local processes (env {RUNTIME_ENV}; "
        "default: docker when a Docker engine answers, else process)",
    )
    args = parser.parse_args(argv)
    if args.runtime and args.runtime not in RUNTIMES:
        parser.error(f"{RUNTIME_ENV}={args.runtime}: choose one of {sorted(RUNTIMES)}")
    runtime = RUNTIMES[args.runtime or ("docker" if containers.docker_answers() else "process")]
    say(f"runtime: {'Docker containers' if runtime is CONTAINERS else 'local processes'}")
    try:
        config = dict(parse_config(item) for item in args.config)
        played = play(args.build, config=config, root=args.root, rows=args.rows, runtime=runtime)
    except PlayError as exc:
        say(f"failed: {exc}")
        return 1
    try:
        show(played, sample_users(played.data_dir))
        if sys.stdin.isatty():
            say("serving until Ctrl-C")
            while played.scorer.poll() is None:
                time.sleep(0.5)
            say(f"the scorer exited with code {played.scorer.returncode}")
    except KeyboardInterrupt:
        pass
    finally:
        runtime.stop(played.scorer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
