"""The three app images of one build, built from apps/ with pulumi-docker-build and pinned by digest.

Pulumi's provider for image builds (BuildKit through buildx) builds each app's Dockerfile and tags
it with the build. Pushed (cloud azure to its ACR; cloud local to `localRegistry` without
credentials, e.g. kind's local registry), a pod references it as `repo@sha256:<digest>` from the
provider's `digest` output, so a re-pushed tag can never change what a release runs, and the image
is in the registry before the Job that uses it is created. Not pushed (cloud local without a
registry, the cluster shares the local daemon), the image is loaded into that daemon and the tag
is the reference; with config images=prebuilt nothing is built and the pods reference the tags
mlpipeline/<app>:<build> that were built beforehand. Only the new build's images are declared: a
release already in the ledger reuses the references its record holds, and its Images leave the
state at the next update without a delete (retain_on_delete: the registry keeps every digest).

The provider builds on the first buildx builder it supports (docker-container, kubernetes or
remote; the docker daemon's own legacy builder is not one); with none, it creates a
docker-container builder, which pulls moby/buildkit from Docker Hub.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker_build as docker_build

from components.registry import Registry

APPS = ("trainer", "waiter", "scorer")
CONTEXT = "apps"  # relative to the project folder, where `pulumi up` runs: stable across machines
PLATFORM = docker_build.Platform.LINUX_AMD64
REPOSITORY = "mlpipeline"


@dataclass(frozen=True)
class ImagesArgs:
    build: str
    registry: Registry | None = None  # None: build locally; push only to push_to
    push_to: str | None = None  # a registry host[:port] reached without credentials (localRegistry)
    context: str = CONTEXT


def prebuilt_refs(build: str) -> dict[str, str]:
    """Config images=prebuilt (local): the tags CI or `docker build` already put in the nodes' image store."""
    return {app: f"{REPOSITORY}/{app}:{build}" for app in APPS}


def digest_reference(repository: str, digest: str) -> str:
    """`repo@sha256:...`: what a pod runs, whatever the tag later points at."""
    if not digest.startswith("sha256:"):
        raise ValueError(f"the image build of {repository} gave no sha256 digest (got {digest!r})")
    return f"{repository}@{digest}"


class Images(pulumi.ComponentResource):
    refs: dict[str, pulumi.Output[str]]  # app -> image reference for pods
    images: dict[str, docker_build.Image]

    def __init__(self, name: str, args: ImagesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlpipeline:images:Images", name, None, opts)
        self.refs, self.images = {}, {}
        registry = args.registry
        pushed = registry is not None or bool(args.push_to)
        for app in APPS:
            repository: pulumi.Output[str] = pulumi.Output.from_input(f"{REPOSITORY}/{app}")
            if registry is not None:
                repository = pulumi.Output.concat(registry.server, "/", repository)
            elif args.push_to:
                repository = pulumi.Output.from_input(f"{args.push_to}/{REPOSITORY}/{app}")
            image = docker_build.Image(
                f"{name}-{app}",
                context=docker_build.BuildContextArgs(location=args.context),
                dockerfile=docker_build.DockerfileArgs(location=f"{args.context}/{app}/Dockerfile"),
                platforms=[PLATFORM],
                tags=[pulumi.Output.concat(repository, ":", args.build)],
                push=pushed,
                load=not pushed,  # into the local daemon the cluster shares
                registries=None
                if registry is None
                else [
                    docker_build.RegistryArgs(
                        address=registry.server, username=registry.username, password=registry.password
                    )
                ],
                # The next update drops this Image from the state (a kept release is declared from
                # its record); the provider's delete would delete the pushed digest from the
                # registry, which the release and the stacks promoting it still pull.
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            )
            self.images[app] = image
            self.refs[app] = (
                pulumi.Output.all(repository, image.digest).apply(lambda parts: digest_reference(*parts))
                if pushed
                else pulumi.Output.concat(repository, ":", args.build)
            )
        self.register_outputs({"refs": self.refs})
