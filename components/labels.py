"""Recommended Kubernetes labels and provenance annotations, the same on every object we declare."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PART_OF = "mlpipeline"
MANAGED_BY = "pulumi"

# Provenance annotations (the prefix is a DNS subdomain, as Kubernetes requires for keys with a "/").
BUILD = "mlpipeline/build"
GIT_SHA = "mlpipeline/git-sha"
CREATED_AT = "mlpipeline/created-at"
MODEL_FOLDER = "mlpipeline/model-folder"
DATA = "mlpipeline/data"  # where the trainer reads its CSVs
CONFIG = "mlpipeline/config"  # the release's own settings (gate, trainer env), as JSON


def image(app: str) -> str:
    """Annotation of an app's image reference (by digest when pushed): mlpipeline/trainer-image."""
    return f"mlpipeline/{app}-image"


# pulumi-kubernetes reads this annotation as the await timeout of the object; keeping it in the
# object (rather than in a resource option) means a release's record carries its timeouts too.
TIMEOUT = "pulumi.com/timeoutSeconds"


def recommended(name: str, instance: str, version: str, component: str) -> dict[str, str]:
    """app.kubernetes.io/* labels; `version` is the build exactly as given to `pulumi up`."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def selector(name: str, instance: str) -> dict[str, str]:
    """The subset of `recommended` that never changes for an object: safe as a label selector."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": instance}


def provenance(build: str, git_sha: str, **more: Any) -> dict[str, Any]:
    return {BUILD: build, GIT_SHA: git_sha, **more}


def for_stack(name: str, component: str, stack: str, build: str) -> dict[str, str]:
    """Labels of an object the whole stack shares (namespace, model store, secrets)."""
    return recommended(name, f"{name}-{stack}", build, component)


def object_metadata(
    name: str, namespace: str, labels: Mapping[str, str], annotations: Mapping[str, Any]
) -> dict[str, Any]:
    """A namespaced object's metadata; the stack's labels and annotations copied (each object owns them)."""
    return {"name": name, "namespace": namespace, "labels": dict(labels), "annotations": dict(annotations)}
