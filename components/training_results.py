"""What training produced, back into the ledger: each release record gains `training` (input data
sha256, model sha256, test metrics and lift, chosen family and params, gate) once its Job has run.

The path back, with least privilege: the trainer ends every run by writing a summary as its
container's termination message (modelshare.write_termination_message; its last line is JSON).
The kubelet publishes that message in the pod's status, and this program reads it with the
credentials it deploys with, at the start of the next update. So

- no pod gets an API token or an RBAC rule: the trainer parses untrusted CSVs, and a trainer that
  could write ConfigMaps or annotations could also forge another release's record; the
  termination message can only describe the container's own run, and only the kubelet stores it;
- nothing new is given to the deployer: it already reads and writes the namespace;
- the record's objects stay as declared (a release is immutable): `training` sits beside them.

A message that is missing (the Job's pods were deleted, no cluster in a preview) leaves the record
as it is, and the next update looks again; the values are those the manifest and metrics.json
hold, which stay the reference (`modelSha256` is the sha256 of manifest.json, as the waiter and
scorer report it).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Mapping
from typing import Any

import pulumi

from components.release import recorded_job_name

FIELD = "training"
CONTAINER = "trainer"

# (namespace, job name) -> the termination messages of the Job's trainer containers that exited 0.
PodMessages = Callable[[str, str], list[str]]


def parse(message: str, build: str) -> dict[str, Any] | None:
    """The summary in a trainer's termination message (its last line), if it is this build's."""
    lines = [line for line in (message or "").strip().splitlines() if line.strip()]
    if not lines:
        return None
    try:
        summary = json.loads(lines[-1])
    except ValueError:
        return None
    if not isinstance(summary, dict) or str(summary.get("build")) != build or "modelSha256" not in summary:
        return None
    return summary


def from_cluster(namespace: str, job: str) -> list[str]:
    """Read the pods of `job` with the deployer's kubeconfig (the one pulumi-kubernetes uses)."""
    try:
        from kubernetes import client, config

        _load_kubeconfig(config)
        pods = client.CoreV1Api().list_namespaced_pod(
            namespace, label_selector=f"job-name={job}", _request_timeout=10
        )
    except Exception as exc:  # noqa: BLE001 - no cluster (preview, CI without access): look again next time
        pulumi.log.debug(f"training results of {namespace}/{job} not read: {type(exc).__name__}: {exc}")
        return []
    messages = []
    for pod in pods.items:
        for status in (pod.status.container_statuses or []) if pod.status else []:
            terminated = status.state.terminated if status.state else None
            if status.name == CONTAINER and terminated is not None and terminated.message:
                messages.append(terminated.message)
    return messages


def _load_kubeconfig(config) -> None:
    """As pulumi-kubernetes' default provider: config kubernetes:kubeconfig (a path or the file's
    content), else $KUBECONFIG or ~/.kube/config; config kubernetes:context picks the context."""
    settings = pulumi.Config("kubernetes")
    context, kubeconfig = settings.get("context"), settings.get("kubeconfig")
    if kubeconfig and "\n" in kubeconfig:
        import yaml

        config.load_kube_config_from_dict(yaml.safe_load(kubeconfig), context=context)
    else:
        config.load_kube_config(config_file=kubeconfig or None, context=context)


READER: contextvars.ContextVar[PodMessages] = contextvars.ContextVar(
    "training_results_reader", default=from_cluster
)


def attach(records: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """`records` (build -> record) with `training` added to each record that lacks it and whose Job
    left a summary."""
    read = READER.get()
    out = {}
    for build, record in records.items():
        out[build] = record
        if not isinstance(record, Mapping) or record.get(FIELD):
            continue
        job = recorded_job_name(record)
        if not job:
            continue
        for message in read(namespace, job):
            summary = parse(message, str(build))
            if summary is not None:
                out[build] = {**record, FIELD: summary}
                break
    return out
