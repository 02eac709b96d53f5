"""The engine's image builds against the docker CLI's, cold and cached, in one run.

All build the three Dockerfiles of apps/ on the same base (the Debian-built `python:…`) and push to
the same registry on 127.0.0.1 (e2e/registry.py). The engine: `pulumi up` of a project whose program
declares only `components.images.Images` for one build, pushed to that registry (pulumi-docker-build
on e2e/buildkit.py's BuildKit), timed from the CLI's start, so the engine's and the program's
start-up count; and, inside that `up`, *the provider's build*: from the engine loading the
pulumi-docker-build provider to its last image pushed, read from the engine's own log
(`-v=7 --logtostderr`, nanosecond timestamps). CLI baselines on the same BuildKit: `buildx bake`
of the three (the CLI's own way to build several images, in parallel: the like-for-like one, as the
provider builds them in parallel too), `buildx build --push` of each in turn, and the legacy `docker
build` then `docker push` (the builder every engine has, as local/containers.py builds). Cold:
BuildKit's cache emptied (`buildx prune --all`) before each side's build, the CLI's with
`--no-cache`; cached: the next build id, apps/ unchanged, median of 7 (CACHED), the order of the sides
reversed every other build. The provider's build inside `up` against bake alone leaves out what a
user of bake runs next, so the cached builds also time both whole workflows, without the engine's
log: `pulumi up` that builds the images, against `buildx bake` (its digests from `--metadata-file`)
then `pulumi up` of the same program given those references, which declares no image (two more
stacks of the project). Needs root, like `make e2e`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import yaml

from components.images import APPS
from e2e import docker_engine, toolchain
from e2e.buildkit import BUILDER, BuildKit
from e2e.pulumi_cli import ROOT, Pulumi
from e2e.registry import Registry

HOME = ROOT / ".bench" / "images"
STACK = "bench"
QUIET, BAKED = "quiet", "baked"  # the two workflows' stacks: up that builds, up given bake's digests
CACHED = 7  # cached builds per side: a sub-second build on this machine varies by a third between runs
PROGRAM = f'''"""bench/images.py's program: the three images of one build, pushed, nothing else."""
import sys

sys.path.insert(0, {str(ROOT)!r})
import pulumi  # noqa: E402

from components.images import Images, ImagesArgs  # noqa: E402

config = pulumi.Config("mlpipeline")
registry, context = config.require("registry"), {str(ROOT / "apps")!r}
built_elsewhere = config.get_object("refs")  # the workflow that builds with `buildx bake` first
if built_elsewhere is not None:
    pulumi.export("refs", built_elsewhere)
else:
    images = Images("images", ImagesArgs(build=config.require("build"), push_to=registry, context=context))
    pulumi.export("refs", images.refs)
'''
PROVIDER_LOADED = "ProviderRegistry.Check(urn:"  # the engine loading a provider from its registration
PROVIDER_URN = "::pulumi:providers:docker-build::"
IMAGE_STEP_DONE = ("].Create(", "].Update(", "].Diff(")  # a provider call on an image, ending "success"


def project(pulumi: Pulumi) -> None:
    """A Pulumi project of its own: the program above, the repo's virtualenv, a file backend."""
    for folder in ("project", "state", "pulumi-home", "logs"):
        (pulumi.home / folder).mkdir(parents=True, exist_ok=True)
    (pulumi.project / "__main__.py").write_text(PROGRAM)
    (pulumi.project / "Pulumi.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "mlpipeline-bench-images",
                "runtime": {"name": "python", "options": {"virtualenv": str(ROOT / ".venv")}},
            }
        )
    )


def provider_seconds(engine_log: str) -> float:
    """The provider's build inside one `up`, from the engine's JSON log lines: the engine starting to
    load the pulumi-docker-build provider to the provider's last image call (create, update, or the
    diff of an image with nothing to build) that succeeded."""
    began = ended = None
    for line in engine_log.splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        message = entry.get("msg", "")
        at = datetime.fromisoformat(entry["time"][:26].rstrip("Z")).timestamp()
        loads_provider = message.startswith(PROVIDER_LOADED) and PROVIDER_URN in message
        if began is None and loads_provider:
            began = at
        elif "docker-build:index:Image::" in message and ") success" in message:
            if any(call in message for call in IMAGE_STEP_DONE):
                ended = at
    if began is None or ended is None:
        raise ValueError("the engine's log shows no docker-build provider loaded or no image step done")
    return ended - began


def engine_build(pulumi: Pulumi, build: int) -> tuple[float, float]:
    """`pulumi up` of `build`: its seconds and the provider's build's within them."""
    began = time.monotonic()
    config = f"mlpipeline:build={build}"
    done = pulumi("up", "--yes", "--skip-preview", "--config", config, "-v=7", "--logtostderr")
    return time.monotonic() - began, provider_seconds(done.stderr)


def bake_build(
    buildkit: BuildKit, registry: Registry, build: int, cold: bool, prefix: str = "bake"
) -> tuple[float, dict[str, str]]:
    """`buildx bake` of the three: its seconds and each app's `repo@sha256:` reference."""
    targets = {
        app: {
            "context": str(ROOT / "apps"),
            "dockerfile": str(ROOT / "apps" / app / "Dockerfile"),
            "tags": [f"{registry.host}/{prefix}/{app}:{build}"],
            "output": ["type=registry"],
        }
        for app in APPS
    }
    spec, metadata = HOME / "bake.json", HOME / "bake-metadata.json"
    spec.write_text(json.dumps({"group": {"default": {"targets": list(APPS)}}, "target": targets}))
    cache = ["--no-cache"] if cold else []
    began = time.monotonic()
    buildkit.buildx("bake", "--builder", BUILDER, *cache, "--metadata-file", str(metadata), "-f", str(spec))
    seconds = time.monotonic() - began
    built = json.loads(metadata.read_text())
    refs = {app: f"{registry.host}/{prefix}/{app}@{built[app]['containerimage.digest']}" for app in APPS}
    return seconds, refs


def workflows(pulumi: Pulumi, buildkit: BuildKit, registry: Registry, build: int) -> dict[str, float]:
    """Both whole workflows of `build`, without the engine's log: `pulumi up` that builds the images,
    and `buildx bake` then `pulumi up` given its references."""
    began = time.monotonic()
    pulumi("up", "--yes", "--skip-preview", "--config", f"mlpipeline:build={build}", stack=QUIET)
    up = time.monotonic() - began
    bake, refs = bake_build(buildkit, registry, build, cold=False, prefix="baked")
    began = time.monotonic()
    given = [flag for app, ref in refs.items() for flag in ("--config", f"mlpipeline:refs.{app}={ref}")]
    pulumi("up", "--yes", "--skip-preview", "--config-path", *given, stack=BAKED)
    return {"workflow_up": up, "workflow_bake": bake, "workflow_bake_up": time.monotonic() - began}


def buildx_build(buildkit: BuildKit, registry: Registry, build: int, cold: bool) -> float:
    began = time.monotonic()
    for app in APPS:
        tag = f"{registry.host}/buildx/{app}:{build}"
        flags = ["--no-cache"] if cold else []
        dockerfile, context = str(ROOT / "apps" / app / "Dockerfile"), str(ROOT / "apps")
        buildkit.buildx("build", "--builder", BUILDER, "--push", *flags, "-f", dockerfile, "-t", tag, context)
    return time.monotonic() - began


def legacy_build(registry: Registry, build: int, cold: bool) -> float:
    began = time.monotonic()
    for app in APPS:
        tag = f"{registry.host}/cli/{app}:{build}"
        build_flags = ["--no-cache"] if cold else []
        for argv in (
            ["docker", "build", "--quiet", *build_flags, "-f", f"apps/{app}/Dockerfile", "-t", tag, "apps"],
            ["docker", "push", "--quiet", tag],
        ):
            env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the legacy builder, as local/containers.py
            subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True, timeout=1800)
    return time.monotonic() - began


def run_all(pulumi: Pulumi, buildkit: BuildKit, registry: Registry, build: int, cold: bool) -> dict:
    """Every side's build of `build`, the engine first on odd builds and last on even ones; cold,
    each BuildKit side starts from an emptied cache."""
    builds = [  # (on BuildKit, the build)
        (True, lambda: dict(zip(("up", "provider"), engine_build(pulumi, build), strict=True))),
        (True, lambda: {"bake": bake_build(buildkit, registry, build, cold)[0]}),
        (True, lambda: {"buildx": buildx_build(buildkit, registry, build, cold)}),
        (False, lambda: {"legacy": legacy_build(registry, build, cold)}),
    ]
    if not cold:
        builds.append((True, lambda: workflows(pulumi, buildkit, registry, build)))
    seconds: dict[str, float] = {}
    for on_buildkit, run in builds if build % 2 else builds[::-1]:
        if cold and on_buildkit:
            buildkit.buildx("prune", "--all", "--force")
        seconds.update(run())
    return seconds


def main() -> str:
    facts = toolchain.ensure()
    bin_dir = Path(facts["cache"]) / "bin"
    docker_engine.ensure_engine()
    base = docker_engine.ensure_base_image()
    shutil.rmtree(HOME, ignore_errors=True)
    with Registry(bin_dir / "registry", HOME / "registry") as registry:
        registry.mirror_base(base)
        with BuildKit(bin_dir, registry.host, HOME / "buildkit", cache=HOME / "buildkit-cache") as buildkit:
            pulumi = Pulumi(bin_dir, HOME / "no-kubeconfig", STACK, home=HOME / "engine")
            pulumi.docker_config = buildkit.docker_config
            project(pulumi)
            pulumi.new_stack(STACK, {"mlpipeline:registry": registry.host})
            pulumi.new_stack(QUIET, {"mlpipeline:registry": f"{registry.host}/quiet"})
            pulumi.new_stack(BAKED, {"mlpipeline:registry": registry.host})
            cold = run_all(pulumi, buildkit, registry, 1, cold=True)
            workflows(pulumi, buildkit, registry, 1)  # untimed: each workflow's stack has its resources
            cached: dict[str, list[float]] = defaultdict(list)
            for build in range(2, 2 + CACHED):
                for side, seconds in run_all(pulumi, buildkit, registry, build, cold=False).items():
                    cached[side].append(seconds)
            # The engine's own floor: an `up` of the same build again, which builds nothing.
            again = [engine_build(pulumi, 1 + CACHED) for _ in range(3)]
            for stack in (STACK, QUIET, BAKED):
                pulumi("destroy", "--yes", "--skip-preview", stack=stack)
    median = {side: statistics.median(runs) for side, runs in cached.items()}
    floor = {"up": statistics.median(a[0] for a in again), "provider": statistics.median(a[1] for a in again)}

    def runs(side: str) -> str:
        return ", ".join(f"{s:.2f}" for s in cached[side])

    def row(label: str, figures: dict[str, float]) -> str:
        return (
            f"| {label} | {figures['up']:.2f} | {figures['provider']:.2f} | {figures['bake']:.2f} "
            f"| **{figures['provider'] / figures['bake']:.2f}x** | {figures['up'] / figures['bake']:.2f}x "
            f"| {figures['buildx']:.2f} | {figures['legacy']:.2f} |"
        )

    goal = median["provider"] / median["bake"]
    baked = median["workflow_bake"] + median["workflow_bake_up"]
    workflow = median["workflow_up"] / baked
    return "\n".join(
        [
            "## Images: the engine's build and push against the docker CLI's",
            "",
            __doc__.split("\n\n", 1)[1].replace("\n", " ").strip(),
            "",
            "| three images, built and pushed | `pulumi up` (s) | of which the provider's build (s) "
            "| `buildx bake` (s) | provider ÷ bake | `up` ÷ bake | `buildx build` each in turn (s) "
            "| legacy `docker build` + push (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            row("cold", cold),
            row(f"cached, median of {CACHED}", median),
            f"| nothing to build (the same build again), median of 3 | {floor['up']:.2f} "
            f"| {floor['provider']:.2f} | — | — | — | — | — |",
            "",
            f"Cached runs: `up` {runs('up')}; provider {runs('provider')}; bake {runs('bake')}; buildx "
            f"{runs('buildx')}; legacy {runs('legacy')}.",
            "",
            f"Goal: the cached build through the provider <= 1.1x the CLI's: "
            f"{'met' if goal <= 1.1 else 'NOT met'} ({goal:.2f}x `buildx bake` on the same BuildKit, the "
            f"provider's start included; against the CLI's builds of one image at a time, "
            f"{median['provider'] / median['buildx']:.2f}x `buildx build --push` each in turn and "
            f"{median['provider'] / median['legacy']:.2f}x the legacy `docker build` + `docker push`). "
            f"The whole `pulumi up` is {median['up'] / median['bake']:.2f}x: "
            f"{floor['up']:.2f} s of it is the engine's own cost of an `up` that builds nothing (the CLI, "
            "the Python program, the state), which every update pays whatever it declares.",
            "",
            f"**The whole workflow, cached, median of {CACHED}** (no engine log):",
            "",
            "| workflow | s | ÷ bake, then `up` |",
            "|---|---:|---:|",
            f"| `pulumi up` that builds and pushes the three images | {median['workflow_up']:.2f} "
            f"| **{workflow:.2f}x** |",
            f"| `buildx bake` ({median['workflow_bake']:.2f} s), then `pulumi up` given its digests "
            f"({median['workflow_bake_up']:.2f} s) | {baked:.2f} | 1.00x |",
            "",
            f"Runs: `up` that builds {runs('workflow_up')}; bake {runs('workflow_bake')}, then `up` "
            f"{runs('workflow_bake_up')}. Building inside `pulumi up` adds "
            f"{median['workflow_up'] - median['workflow_bake_up']:.2f} s to the `up` a deployment runs "
            f"anyway, against bake's {median['workflow_bake']:.2f} s before it.",
        ]
    )
