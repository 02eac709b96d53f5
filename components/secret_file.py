"""A secret value as one file in the pods that read it: one Opaque Secret of one item (the value a
Pulumi secret), and the pod volume that mounts it read-only at mode 0440. Secret files belong to
root and the pod's fsGroup (release_spec.RUN_AS): 0440 is the least the apps (uid 10001, in that
group) can read; 0400 would leave it to root alone. Used for the blob key (training_data.py) and
the feedback key (feedback_key.py); never an env value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.labels import object_metadata

FILE_MODE = 0o440


def secret(
    resource_name: str,
    name: str,
    item: str,
    value: pulumi.Input[str],
    namespace: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    parent: pulumi.Resource,
) -> k8s.core.v1.Secret:
    """The Secret `name` holding `value` (kept a Pulumi secret) under `item`."""
    return k8s.core.v1.Secret(
        resource_name,
        metadata=object_metadata(name, namespace, labels, annotations),
        type="Opaque",
        string_data={item: pulumi.Output.secret(value)},
        opts=pulumi.ResourceOptions(parent=parent),
    )


def volume(volume_name: str, secret_name: str, item: str, path: str) -> dict[str, Any]:
    """A pod volume with only `item` of the Secret, as the file `path`, readable by the pod's group."""
    items = [{"key": item, "path": path}]
    return {
        "name": volume_name,
        "secret": {"secretName": secret_name, "items": items, "defaultMode": FILE_MODE},
    }
