"""What the engine suite checks of the images the engine built (pulumi-docker-build on the suite's
BuildKit, pushed to its registry): every image field of a release's Job and Deployment is the
record's `repo@sha256:…`, that digest is what the registry serves for the build's tag, and every
container of the release's pods runs it (`imageID`); how long the engine spent on the image
resources of an `up` (from its event log); and that moving a tag under a live release changes
nothing it runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from e2e.cluster import Cluster
from e2e.kube import EngineError, objects_of, scorer_pods
from e2e.registry import Registry
from e2e.stack import NAMESPACE

IMAGE_TYPE = "docker-build:index:Image"


def leaves_state_only(step: dict) -> bool:
    """A planned step that only drops a kept release's images from the state: its Images (retained:
    the registry keeps the digests) and their component, which has no provider to call."""
    old = step.get("oldState") or {}
    return step.get("op") == "delete" and (
        (old.get("type") == IMAGE_TYPE and old.get("retainOnDelete") is True)
        or (old.get("type") == "mlpipeline:images:Images" and not old.get("custom"))
    )


def repository_and_digest(reference: str, registry: Registry) -> tuple[str, str]:
    """("mlpipeline/scorer", "sha256:…") of `<registry>/mlpipeline/scorer@sha256:…`."""
    prefix = registry.host + "/"
    name, at, digest = reference.partition("@")
    if not (name.startswith(prefix) and at and digest.startswith("sha256:")):
        raise EngineError(f"image reference {reference!r} is not {prefix}<repository>@sha256:<digest>")
    return name.removeprefix(prefix), digest


def check_pinned(cluster: Cluster, registry: Registry, record: dict) -> dict:
    """The release's images as the record, the pod specs, the registry and the running pods see them."""
    images = record["images"]
    seen: dict = {"record": images, "registry": {}, "pods": {}}
    for app, reference in images.items():
        repository, digest = repository_and_digest(reference, registry)
        served = registry.manifest_digest(repository, record["build"])
        seen["registry"][app] = served
        if served != digest:
            raise EngineError(
                f"{repository}:{record['build']} is {served} in the registry, the record pins {digest}"
            )
    return {**seen, **pods_run_the_record(cluster, record)}


def pods_run_the_record(cluster: Cluster, record: dict) -> dict:
    """The image fields of the release's Job and Deployment are the record's references, and every
    container of its scorer pods runs the digest its spec names (containerStatuses[].imageID)."""
    images = record["images"]
    seen: dict = {"pods": {}}
    specs = []
    for kind in ("job", "deployment"):
        path, name = objects_of(record)[kind]
        template = (cluster.get(path) or {})["spec"]["template"]["spec"]
        for container in template.get("initContainers", []) + template["containers"]:
            specs.append((f"{kind} {name} {container['name']}", container["image"]))
    wrong = [(where, image) for where, image in specs if image not in images.values()]
    if wrong or len(specs) < 3:
        raise EngineError(f"image fields not pinned to the record's digests {images}: {wrong or specs}")
    for pod in scorer_pods(cluster, record):
        spec, status = pod["spec"], pod["status"]
        declared = {c["name"]: c["image"] for c in spec.get("initContainers", []) + spec["containers"]}
        for container in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
            image_id = container.get("imageID", "")
            seen["pods"][f"{pod['metadata']['name']}/{container['name']}"] = image_id
            expected = declared[container["name"]]
            if image_id.rpartition("@")[2] != expected.rpartition("@")[2]:
                raise EngineError(f"pod {pod['metadata']['name']} runs {image_id} for {expected}")
    if not seen["pods"]:
        raise EngineError(f"release {record['build']} has no pods to check")
    return seen


def image_events(event_log: Path, kind: str) -> list[tuple[float, dict]]:
    """(timestamp, metadata) of an `up`'s events of `kind` (resourcePreEvent: a step starts;
    resOutputsEvent: it ends) on image resources, from its event log."""
    found = []
    for line in event_log.read_text().splitlines():
        event = json.loads(line)
        metadata = (event.get(kind) or {}).get("metadata") or {}
        if metadata.get("type") == IMAGE_TYPE:
            found.append((float(event["timestamp"]), metadata))
    return found


def image_seconds(event_log: Path) -> float:
    """Wall-clock seconds from the first image resource's start to the last one's end in an `up`;
    0 when the `up` touched no image."""
    starts = [stamp for stamp, _ in image_events(event_log, "resourcePreEvent")]
    ends = [stamp for stamp, _ in image_events(event_log, "resOutputsEvent")]
    return max(ends) - min(starts) if starts and ends else 0.0


def image_operations(event_log: Path) -> list[str]:
    """The operations an `up` started on image resources: create, update, delete…"""
    return [metadata.get("op", "?") for _, metadata in image_events(event_log, "resourcePreEvent")]


def move_tag(cluster: Cluster, registry: Registry, record: dict, other_image: str) -> dict:
    """Re-push the build's scorer tag with other content (`other_image`, a Docker engine tag); then
    delete one of the release's pods: its replacement still runs the record's digest."""
    reference = record["images"]["scorer"]
    repository, digest = repository_and_digest(reference, registry)
    target = registry.push(other_image, f"{repository}:{record['build']}")
    moved = registry.manifest_digest(repository, record["build"])
    if moved == digest:
        raise EngineError(f"re-pushing {target} with {other_image} left its digest {digest}")
    before = {pod["metadata"]["name"] for pod in scorer_pods(cluster, record)}
    victim = sorted(before)[0]
    cluster.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{victim}")
    deadline = time.monotonic() + 180
    while True:
        fresh = [pod for pod in scorer_pods(cluster, record) if pod["metadata"]["name"] not in before]
        running = [
            status
            for pod in fresh
            for status in pod["status"].get("containerStatuses", [])
            if status.get("ready") and status["name"] == "scorer"
        ]
        if running:
            break
        if time.monotonic() > deadline:
            raise EngineError(f"no pod replaced {victim} in 180 s: {[p['status'] for p in fresh]}")
        time.sleep(1)
    image_id = running[0]["imageID"]
    if image_id.rpartition("@")[2] != digest:
        raise EngineError(f"the pod that replaced {victim} runs {image_id}, the record pins {digest}")
    return {"tag_now": moved, "pinned": digest, "replaced_pod": victim, "new_pod_image_id": image_id}
