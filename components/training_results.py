"""What training produced, in the ledger when `pulumi up` returns: the record of the release an
update trains gains `training` (input data sha256, model sha256, test metrics and lift, chosen
family and params, gate) in that same update's `releases` output.

The path back, with least privilege: the trainer ends every run by writing a summary as its
container's termination message (modelshare.write_termination_message; its last line is JSON).
The kubelet publishes that message in the pod's status, and this program reads it with the
credentials it deploys with. So

- no pod gets an API token or an RBAC rule: the trainer parses untrusted CSVs, and a trainer that
  could write ConfigMaps or annotations could also forge another release's record; the
  termination message can only describe the container's own run, and only the kubelet stores it;
- nothing new is given to the deployer: it already reads and writes the namespace;
- the record's objects stay as declared (a release is immutable): `training` sits beside them.

When: the new build's Job resolves its outputs only once pulumi-kubernetes' await has seen it
complete (in an `up`; in a preview they stay unknown, and so does the record), and the read runs
in an `apply` on them (`after_completion`). A record is never read again, so an `up` that changes
nothing changes no output. A completed Job whose pods hold no summary of its build (pods deleted,
the cluster unreachable, a message cut short) fails the update naming the Job: the release would
otherwise go live without its provenance. The values are those the manifest and metrics.json hold,
which stay the reference (`modelSha256` is the sha256 of manifest.json, as the waiter and scorer
report it).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable
from typing import Any

import pulumi

FIELD = "training"
CONTAINER = "trainer"

# (namespace, job name) -> the termination messages of the Job's trainer containers.
PodMessages = Callable[[str, str], list[str]]


class TrainingResultsError(RuntimeError):
    """A completed training Job whose results cannot be read; the message names the Job."""


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


def _without_nulls(value: Any) -> Any:
    """`value` without the map entries that are null: a stack output read back has none (Pulumi
    drops them), so the record a second `up` re-exports is exactly the one the first exported."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def from_cluster(namespace: str, job: str) -> list[str]:
    """Read the pods of `job` with the deployer's kubeconfig (the one pulumi-kubernetes uses)."""
    from kubernetes import client, config

    load_kubeconfig(config)
    pods = client.CoreV1Api().list_namespaced_pod(
        namespace, label_selector=f"job-name={job}", _request_timeout=10
    )
    messages = []
    for pod in pods.items:
        for status in (pod.status.container_statuses or []) if pod.status else []:
            terminated = status.state.terminated if status.state else None
            if status.name == CONTAINER and terminated is not None and terminated.message:
                messages.append(terminated.message)
    return messages


def load_kubeconfig(config) -> None:
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


def read(namespace: str, job: str, build: str) -> dict[str, Any]:
    """The summary build `build`'s trainer left in the pods of its completed Job `job`, as recorded."""
    try:
        messages = READER.get()(namespace, job)
    except Exception as exc:  # noqa: BLE001 - any failure to read is this one error, naming the Job
        raise TrainingResultsError(
            f"Job {namespace}/{job} completed, but its pods could not be read for build {build}'s "
            f"training results: {type(exc).__name__}: {exc}"
        ) from None
    for message in messages:
        summary = parse(message, build)
        if summary is not None:
            return _without_nulls(summary)
    raise TrainingResultsError(
        f"Job {namespace}/{job} completed, but none of its pods' {CONTAINER} containers left a "
        f"termination message with build {build}'s training summary ({len(messages)} message(s) found): "
        f"the release would go live without its provenance. Were its pods deleted? "
        f"(kubectl -n {namespace} get pods -l job-name={job})"
    )


def after_completion(
    completed: pulumi.Output[Any], namespace: str, job: str, build: str
) -> pulumi.Output[dict[str, Any]]:
    """`read` once `completed` (an output of the Job that resolves when its await saw it complete)
    resolves; unknown in a preview. The read runs off the event loop: it is a network call."""
    return completed.apply(lambda _: asyncio.to_thread(read, namespace, job, build))
