"""The three app images of one build, built from apps/ with pulumi-docker and pinned by digest.

Each image is tagged with the build. Pushed (cloud azure to its ACR; cloud local to `localRegistry`
without credentials, e.g. kind's local registry), a pod references it by `repo_digest`
(repo@sha256:...), so a re-pushed tag can never change what a release runs, and the image is in
the registry before the Job that uses it is created. Not pushed (cloud local without a registry:
`skip_push`, the cluster shares the local daemon), there is no digest and the tag is the
reference; with config images=prebuilt nothing is built and the pods reference the tags
mlpipeline/<app>:<build> that were built beforehand. Only the new build's images are declared: a
release already in the ledger reuses the references its record holds (dropping its docker.Image
from the state deletes nothing in the registry).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.registry import Registry

APPS = ("trainer", "waiter", "scorer")
CONTEXT = "apps"  # relative to the project folder, where `pulumi up` runs: stable across machines
PLATFORM = "linux/amd64"
REPOSITORY = "mlpipeline"


@dataclass(frozen=True)
class ImagesArgs:
    build: str
    registry: Registry | None = None  # None: build locally; push only to push_to
    push_to: str | None = None  # a registry host[:port] reached without credentials (localRegistry)
    context: str = CONTEXT
    platform: str = PLATFORM


def prebuilt_refs(build: str) -> dict[str, str]:
    """Config images=prebuilt (local): the tags CI or `docker build` already put in the nodes' image store."""
    return {app: f"{REPOSITORY}/{app}:{build}" for app in APPS}


def pick_reference(repo_digest: str | None, image_name: str) -> str:
    """The digest reference when the registry gave one, else the tag."""
    return repo_digest if repo_digest and "@sha256:" in repo_digest else image_name


class Images(pulumi.ComponentResource):
    refs: dict[str, pulumi.Output[str]]  # app -> image reference for pods
    images: dict[str, docker.Image]

    def __init__(self, name: str, args: ImagesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlpipeline:images:Images", name, None, opts)
        self.refs, self.images = {}, {}
        registry = args.registry
        for app in APPS:
            repository: pulumi.Input[str] = f"{REPOSITORY}/{app}"
            if registry is not None:
                repository = pulumi.Output.concat(registry.server, "/", repository)
            elif args.push_to:
                repository = f"{args.push_to}/{repository}"
            image = docker.Image(
                f"{name}-{app}",
                build=docker.DockerBuildArgs(
                    context=args.context,
                    dockerfile=f"{args.context}/{app}/Dockerfile",
                    platform=args.platform,
                ),
                image_name=pulumi.Output.concat(repository, ":", args.build),
                registry=None
                if registry is None
                else docker.RegistryArgs(
                    server=registry.server, username=registry.username, password=registry.password
                ),
                skip_push=registry is None and not args.push_to,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.images[app] = image
            self.refs[app] = pulumi.Output.all(image.repo_digest, image.image_name).apply(
                lambda parts: pick_reference(*parts)
            )
        self.register_outputs({"refs": self.refs})
