"""The engine's image builds against the docker CLI's, cold and cached, in one run.

Both build the three Dockerfiles of apps/ on the same base (the Debian-built `python:…`) and push
to the same registry on 127.0.0.1 (e2e/registry.py). The engine: `pulumi up` of a project whose
program declares only `components.images.Images` for one build, pushed to that registry
(pulumi-docker-build on e2e/buildkit.py's BuildKit), timed from the CLI's start, so the engine's and
the program's start-up count. Cold: BuildKit's cache emptied first (`buildx prune --all`); cached: the
next build id, apps/ unchanged. Two CLI baselines, each app in turn: the buildx CLI on the same
BuildKit (`buildx build --push`, the provider's own path without the engine: the like-for-like
one), and `docker build` (the legacy builder every engine has, as local/containers.py builds) then
`docker push`; cold with `--no-cache`, cached as they come. Cached runs: median of 3, alternated.
Needs root, like `make e2e`.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import yaml

from components.images import APPS
from e2e import docker_engine, toolchain
from e2e.buildkit import BUILDER, BuildKit
from e2e.pulumi_cli import ROOT, Pulumi
from e2e.registry import Registry

HOME = ROOT / ".bench" / "images"
STACK = "bench"
PROGRAM = f'''"""bench/images.py's program: the three images of one build, pushed, nothing else."""
import sys

sys.path.insert(0, {str(ROOT)!r})
import pulumi  # noqa: E402

from components.images import Images, ImagesArgs  # noqa: E402

config = pulumi.Config("mlpipeline")
registry, context = config.require("registry"), {str(ROOT / "apps")!r}
images = Images("images", ImagesArgs(build=config.require("build"), push_to=registry, context=context))
pulumi.export("refs", images.refs)
'''


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


def engine_build(pulumi: Pulumi, build: int) -> float:
    began = time.monotonic()
    pulumi.up(f"mlpipeline:build={build}")
    return time.monotonic() - began


def cli_build(registry: Registry, build: int, cold: bool) -> float:
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


def buildx_build(buildkit: BuildKit, registry: Registry, build: int, cold: bool) -> float:
    began = time.monotonic()
    for app in APPS:
        tag = f"{registry.host}/buildx/{app}:{build}"
        flags = ["--no-cache"] if cold else []
        dockerfile, context = str(ROOT / "apps" / app / "Dockerfile"), str(ROOT / "apps")
        buildkit.buildx("build", "--builder", BUILDER, "--push", *flags, "-f", dockerfile, "-t", tag, context)
    return time.monotonic() - began


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
            buildkit.buildx("prune", "--all", "--force")
            cold = {
                "engine": engine_build(pulumi, 1),
                "buildx": buildx_build(buildkit, registry, 1, cold=True),
                "cli": cli_build(registry, 1, cold=True),
            }
            cached: dict[str, list[float]] = {"engine": [], "buildx": [], "cli": []}
            for build in (2, 3, 4):
                cached["engine"].append(engine_build(pulumi, build))
                cached["buildx"].append(buildx_build(buildkit, registry, build, cold=False))
                cached["cli"].append(cli_build(registry, build, cold=False))
            # The engine's own floor: an `up` of the same build again, which builds nothing.
            floor = statistics.median(engine_build(pulumi, 4) for _ in range(3))
            pulumi("destroy", "--yes", "--skip-preview")
    median = {side: statistics.median(runs) for side, runs in cached.items()}
    like, legacy = median["engine"] / median["buildx"], median["engine"] / median["cli"]

    def runs(side: str) -> str:
        return ", ".join(f"{s:.1f}" for s in cached[side])

    return "\n".join(
        [
            "## Images: the engine's build and push against the docker CLI's",
            "",
            __doc__.split("\n\n", 1)[1].replace("\n", " ").strip(),
            "",
            "| three images, built and pushed | engine: `pulumi up` (s) | buildx CLI, same BuildKit (s) "
            "| engine ÷ buildx | legacy `docker build` + push (s) | engine ÷ legacy |",
            "|---|---:|---:|---:|---:|---:|",
            f"| cold | {cold['engine']:.1f} | {cold['buildx']:.1f} | {cold['engine'] / cold['buildx']:.2f}x "
            f"| {cold['cli']:.1f} | {cold['engine'] / cold['cli']:.2f}x |",
            f"| cached, median of 3 (runs: engine {runs('engine')}; buildx {runs('buildx')}; legacy "
            f"{runs('cli')}) | {median['engine']:.1f} | {median['buildx']:.1f} | **{like:.2f}x** "
            f"| {median['cli']:.1f} | **{legacy:.2f}x** |",
            f"| nothing to build (the same build again), median of 3 | {floor:.1f} | — | — | — | — |",
            "",
            f"Goal: cached <= 1.1x the CLI: against the buildx CLI on the same BuildKit "
            f"{'met' if like <= 1.1 else 'NOT met'} ({like:.2f}x); against the legacy builder "
            f"{'met' if legacy <= 1.1 else 'NOT met'} ({legacy:.2f}x). Of the engine's cached "
            f"{median['engine']:.1f} s, {floor:.1f} s is `pulumi up` with nothing to build (the CLI, the "
            f"program, the provider's start), {max(median['engine'] - floor, 0):.1f} s the three cached "
            "builds and pushes, which the provider runs in parallel.",
        ]
    )
