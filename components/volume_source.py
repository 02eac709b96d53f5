"""The model share as a promoting stack reaches it: the source stack exports the volume behind its
model claim, and the promoting stack mounts the same files read-only (docs/CONTRACTS.md, section 5).

Source side (`exported`): once its releases are live, the stack reads the PersistentVolume bound
to its model claim, with the credentials it deploys with (as components/training_results.py reads
the trainer's pods), and exports what locates the files: the volume source (Azure Files CSI on
azure; on a local cluster whatever its provisioner made: hostPath, local, NFS, a CSI volume), its
node affinity and mount options. Read, not rebuilt from the config, so both clouds take one path
and no provisioner needs support here.

Promoting side (`read_only_spec`): a static PersistentVolume with that source, reserved for one
claim, read-only at every level the source type has (ReadOnlyMany, `readOnly` on CSI and NFS,
`ro` where mount options apply; the Job's claim and mount are read-only whatever the type). Two
things of a CSI volume cannot be taken verbatim: its node-stage secret lives in the source's
namespace, perhaps on another cluster, so the promoting stack names its own copy; and an Azure
Files volume gets its own handle, because a node stages a handle once and the source's staging is
read-write.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
from collections.abc import Callable, Mapping
from typing import Any

import pulumi

# What binds a PersistentVolume to one claim: the promoting stack sets its own.
BINDING_FIELDS = (
    "accessModes",
    "capacity",
    "claimRef",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "volumeAttributesClassName",
    "volumeMode",
)
PLACEMENT_FIELDS = ("mountOptions", "nodeAffinity")  # beside the one source field
READ_ONLY_FLAG = ("csi", "nfs")  # source types with a readOnly field the promoting stack sets
AZURE_FILES = "file.csi.azure.com"

# (namespace, claim) -> the spec of the PersistentVolume bound to the claim, camelCase as in the API.
BoundVolume = Callable[[str, str], Mapping[str, Any]]


class VolumeSourceError(ValueError):
    """The model share's volume cannot be read or used; the message names the claim or the field."""


def from_cluster(namespace: str, claim: str) -> Mapping[str, Any]:
    """Read the claim and its bound volume with the deployer's kubeconfig."""
    from kubernetes import client, config

    from components.training_results import load_kubeconfig

    load_kubeconfig(config)
    api = client.CoreV1Api()
    bound = api.read_namespaced_persistent_volume_claim(claim, namespace, _request_timeout=10)
    name = bound.spec.volume_name if bound.spec else None
    if not name:
        raise VolumeSourceError(f"claim {namespace}/{claim} is not bound to a volume")
    volume = api.read_persistent_volume(name, _request_timeout=10)
    return client.ApiClient().sanitize_for_serialization(volume.spec)


READER: contextvars.ContextVar[BoundVolume] = contextvars.ContextVar(
    "volume_source_reader", default=from_cluster
)


def export_of(spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    """What locates the files of a bound volume's `spec`: its source field and placement."""
    exported = {key: copy.deepcopy(value) for key, value in spec.items() if key not in BINDING_FIELDS}
    source_kind(exported, where)
    return exported


def source_kind(volume: Mapping[str, Any], where: str) -> str:
    """The one volume source field of an exported volume (hostPath, csi, nfs, ...)."""
    kinds = sorted(key for key in volume if key not in PLACEMENT_FIELDS)
    if len(kinds) != 1 or not isinstance(volume[kinds[0]], Mapping):
        raise VolumeSourceError(
            f"{where} is not one volume source: fields {', '.join(kinds) or 'none'} "
            f"(expected one of hostPath, local, nfs, csi, ... beside {', '.join(PLACEMENT_FIELDS)})"
        )
    return kinds[0]


def check(volume: Mapping[str, Any], where: str, stage_secret: bool) -> str:
    """The source kind of an exported `volume` a promoting stack can mount: one source field, and
    a CSI volume that needs a node-stage secret only where the promoting stack has one to give."""
    kind = source_kind(volume, where)
    if kind == "csi" and "nodeStageSecretRef" in volume["csi"] and not stage_secret:
        raise VolumeSourceError(f"{where} needs a node-stage secret, and the source offers no credentials")
    return kind


def read(namespace: str, claim: str) -> dict[str, Any]:
    """The exported volume of claim `claim`; a failed read is an error naming the claim."""
    try:
        spec = READER.get()(namespace, claim)
    except VolumeSourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to read is this one error, naming the claim
        raise VolumeSourceError(
            f"the volume bound to claim {namespace}/{claim} could not be read for the stacks that "
            f"promote from this one: {type(exc).__name__}: {exc}"
        ) from None
    return export_of(spec, f"the volume bound to claim {namespace}/{claim}")


def exported(after: pulumi.Output[Any], namespace: str, claim: str) -> pulumi.Output[dict[str, Any]]:
    """`read` once `after` resolves (the releases are live, so the claim is bound); unknown in a
    preview. The read runs off the event loop: it is a network call."""
    return after.apply(lambda _: asyncio.to_thread(read, namespace, claim))


def read_only_spec(
    volume: Mapping[str, Any], *, namespace: str, claim: str, size: str, stage_secret: str | None
) -> dict[str, Any]:
    """The spec of a static PersistentVolume on the exported `volume`, read-only, reserved for
    `claim` in `namespace`; a CSI volume's node-stage secret becomes `stage_secret` (in `namespace`)."""
    where = f"the source's exported volume (claim {namespace}/{claim})"
    spec = {key: copy.deepcopy(value) for key, value in volume.items()}
    kind = check(spec, where, stage_secret is not None)
    if kind in READ_ONLY_FLAG:
        spec[kind]["readOnly"] = True
    if kind == "csi":
        csi = spec["csi"]
        if "nodeStageSecretRef" in csi:
            csi["nodeStageSecretRef"] = {"name": stage_secret, "namespace": namespace}
        if csi.get("driver") == AZURE_FILES:
            csi["volumeHandle"] = f"{namespace}-{claim}-{csi['volumeHandle']}"
    if spec.get("mountOptions"):
        spec["mountOptions"] = [
            "ro",
            *(option for option in spec["mountOptions"] if option not in ("ro", "rw")),
        ]
    return {
        **spec,
        "capacity": {"storage": size},
        "accessModes": ["ReadOnlyMany"],
        "persistentVolumeReclaimPolicy": "Retain",  # the files are the source's
        "storageClassName": "",  # static: no provisioner, no default class
        "claimRef": {"namespace": namespace, "name": claim},  # no other claim can take it
    }
