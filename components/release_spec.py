"""The release template: a new build's Job, Deployment and Service, rendered as plain objects.

This is the only code that decides what a release looks like, and it only ever runs for a build
that is not in the ledger yet. Its output becomes the release's record (components/ledger.py),
and every later `pulumi up` re-declares the release from that record, so a change here can never
reach an existing release (above all, never re-train one by replacing its Job).

    Job        train-<dns>   python -m trainer, model share read-write, writes MODELFOLDER
    Deployment score-<dns>   init container python -m waiter (holds the pod until the model is
                             complete, verified and above the gate), container python -m scorer
    Service    score-<dns>   port 80 -> 8080, the release's own address

Commands, env, probes and mounts are explicit: `make demo` plays these objects as processes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components import labels

SCHEMA = 1  # version of the record layout; bump with a reader for the old one
MODEL_MOUNT = "/mnt/models"
TMP_MOUNT = "/tmp"
PORT = 8080
SERVICE_PORT = 80
# How a Prometheus that discovers pods by annotation scrapes the scorer (config monitoring).
SCRAPE = {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT), "prometheus.io/path": "/metrics"}
RUN_AS = 10001  # numeric, so runAsNonRoot can be checked without reading the image
POLL_INTERVAL_SECONDS = 5
# Fail fast: the trainer's exit is its decision (bad data, a failed gate, another release's folder),
# so the first failed pod fails the Job; pulumi-kubernetes ends its await at once on the Job's
# BackoffLimitExceeded (and only on that or DeadlineExceeded), printing the pod's termination
# message: the trainer's reason. Pods lost to node failure, drain or preemption (condition
# DisruptionTarget) do not count and are replaced; their attempts cannot mix (modelshare.publish).
TRAIN_BACKOFF_LIMIT = 0
TRAIN_POD_FAILURE_POLICY = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}
# pulumi-kubernetes gives up this long after the Job's own deadline: the Job's DeadlineExceeded
# is the clearer error, so it should come first.
AWAIT_MARGIN_SECONDS = 300


def job_name(dns_build: str) -> str:
    return f"train-{dns_build}"


def deployment_name(dns_build: str) -> str:
    return f"score-{dns_build}"


def service_name(dns_build: str) -> str:
    return f"score-{dns_build}"


def model_folder(build: str) -> str:
    return f"{MODEL_MOUNT}/{build}"


@dataclass(frozen=True)
class ReleaseInputs:
    """Everything a new release is rendered from."""

    build: str
    dns_build: str
    sequence: int  # position in the ledger: 1 for the stack's first release, then +1
    created_at: str  # UTC ISO-8601
    git_sha: str
    namespace: str
    images: Mapping[str, pulumi.Input[str]]  # trainer, waiter, scorer
    models_claim: str
    data_env: Sequence[Mapping[str, Any]]
    data_volumes: Sequence[Mapping[str, Any]]
    data_mounts: Sequence[Mapping[str, Any]]
    trainer_env: Mapping[str, str]
    gate_min_ndcg: float
    gate_min_lift: float
    wait_timeout_seconds: int
    train_timeout_seconds: int
    rollout_timeout_seconds: int
    replicas: int
    resources: Mapping[str, Mapping[str, Mapping[str, str]]]
    pull_secret: str | None = None
    # Champion/challenger gate: the model folder of the release holding most traffic, and how far
    # below its nDCG the new model may be. None: no champion gate (nothing in the env).
    champion_folder: str | None = None
    champion_tolerance: float | None = None
    data_location: pulumi.Input[str] | None = None  # provenance: where the trainer reads (blob://..., pvc://...)


POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    "fsGroup": RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _env(pairs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "value": value} for name, value in pairs.items()]


def _gate_env(r: ReleaseInputs) -> dict[str, str]:
    """The quality gate, the same for the trainer (which decides it, failing the Job) and the
    waiter (which checks it again before the scorer starts)."""
    env = {"GATE_MIN_NDCG": repr(float(r.gate_min_ndcg)), "GATE_MIN_LIFT": repr(float(r.gate_min_lift))}
    if r.champion_folder is not None and r.champion_tolerance is not None:
        env["GATE_CHAMPION_MODELFOLDER"] = r.champion_folder
        env["GATE_CHAMPION_TOLERANCE"] = repr(float(r.champion_tolerance))
    return env


def pod_spec(models_claim: str, pull_secret: str | None, restart_policy: str | None,
             volumes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The pod profile of every pod a release runs: the model share, a writable /tmp, restricted
    security, no API token; `volumes` adds to the first two."""
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # the apps never talk to the API server
        "enableServiceLinks": False,  # or every score-* Service of the namespace lands in the env
        "securityContext": dict(POD_SECURITY),
        "volumes": [
            {"name": "models", "persistentVolumeClaim": {"claimName": models_claim}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},  # the root filesystem is read-only
            *[dict(v) for v in volumes],
        ],
    }
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    if pull_secret:
        spec["imagePullSecrets"] = [{"name": pull_secret}]
    return spec


def container(name: str, image: pulumi.Input[str], module: str, env: list[dict],
              resources: Mapping[str, Mapping[str, str]], models_read_only: bool,
              extra_mounts: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """A container running `python -m <module>` with the pod profile's mounts and restrictions."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", module],
        "env": env,
        "resources": {kind: dict(q) for kind, q in resources.items()},
        "securityContext": dict(CONTAINER_SECURITY),
        "volumeMounts": [
            {"name": "models", "mountPath": MODEL_MOUNT, "readOnly": models_read_only},
            {"name": "tmp", "mountPath": TMP_MOUNT},
            *[dict(m) for m in extra_mounts],
        ],
    }


def render(r: ReleaseInputs) -> dict[str, Any]:
    """The release record: summary fields plus the three objects, camelCase as Kubernetes has them.

    Image references may still be Outputs (a new build's digests); the ledger resolves them.
    """
    folder = model_folder(r.build)
    config = {
        "gate": _gate_env(r),
        "trainerEnv": dict(r.trainer_env),
        "trainTimeoutSeconds": r.train_timeout_seconds,
        "replicas": r.replicas,
    }
    known = {  # provenance known when the release is declared; what training finds is in its record
        labels.CREATED_AT: r.created_at,
        labels.MODEL_FOLDER: folder,
        **{labels.image(app): ref for app, ref in r.images.items()},
        labels.CONFIG: json.dumps(config, sort_keys=True, separators=(",", ":")),
        **({labels.DATA: r.data_location} if r.data_location is not None else {}),
    }
    # TRAINER_IMAGE: the trainer records its own image in the manifest, the waiter refuses a manifest
    # that records another (a build id is one release: never new images over an old model).
    common = {"MODELFOLDER": folder, "BUILD_NUMBER": r.build, "GIT_SHA": r.git_sha}
    identity = {**common, "TRAINER_IMAGE": r.images["trainer"]}
    provenance = labels.provenance(r.build, r.git_sha, **known)
    train_labels = labels.recommended("trainer", job_name(r.dns_build), r.build, "training")
    score_labels = labels.recommended("scorer", deployment_name(r.dns_build), r.build, "scoring")
    score_selector = labels.selector("scorer", deployment_name(r.dns_build))

    def app(name: str, env: list[dict], models_read_only: bool, extra_mounts=()) -> dict[str, Any]:
        return container(name, r.images[name], name, env, r.resources[name], models_read_only, extra_mounts)

    trainer = app(
        "trainer",
        _env({**identity, **_gate_env(r)}) + [dict(e) for e in r.data_env] + _env(r.trainer_env),
        models_read_only=False, extra_mounts=r.data_mounts,
    )
    trainer["terminationMessagePolicy"] = "FallbackToLogsOnError"  # a crash without a reason: the log tail
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(r.dns_build),
            "namespace": r.namespace,
            "labels": train_labels,
            "annotations": {**provenance, labels.TIMEOUT: str(r.train_timeout_seconds + AWAIT_MARGIN_SECONDS)},
        },
        "spec": {
            "backoffLimit": TRAIN_BACKOFF_LIMIT,
            "podFailurePolicy": TRAIN_POD_FAILURE_POLICY,
            "activeDeadlineSeconds": r.train_timeout_seconds,
            "template": {
                "metadata": {"labels": train_labels, "annotations": provenance},
                # Never: each retry is a fresh pod whose logs stay for a post-mortem.
                "spec": {**pod_spec(r.models_claim, r.pull_secret, "Never", r.data_volumes), "containers": [trainer]},
            },
        },
    }

    waiter = app("waiter", _env({
        **identity,
        **_gate_env(r),
        "WAIT_TIMEOUT_SECONDS": str(r.wait_timeout_seconds),
        "POLL_INTERVAL_SECONDS": str(POLL_INTERVAL_SECONDS),
    }), models_read_only=True)
    scorer = app("scorer", _env({**common, "PORT": str(PORT)}), models_read_only=True)
    scorer["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
    scorer["readinessProbe"] = {
        "httpGet": {"path": "/readyz", "port": PORT},
        "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3,
    }
    scorer["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": PORT},
        "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3,
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(r.dns_build),
            "namespace": r.namespace,
            "labels": score_labels,
            "annotations": {**provenance, labels.TIMEOUT: str(r.rollout_timeout_seconds)},
        },
        "spec": {
            "replicas": r.replicas,
            "revisionHistoryLimit": 2,
            "progressDeadlineSeconds": r.rollout_timeout_seconds,
            "selector": {"matchLabels": score_selector},
            "template": {
                "metadata": {"labels": score_labels, "annotations": {**provenance, **SCRAPE}},
                "spec": {**pod_spec(r.models_claim, r.pull_secret, None, []), "initContainers": [waiter], "containers": [scorer]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(r.dns_build),
            "namespace": r.namespace,
            "labels": score_labels,
            "annotations": provenance,
        },
        "spec": {
            "type": "ClusterIP",
            "selector": score_selector,
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": PORT, "protocol": "TCP"}],
        },
    }
    return {
        "schema": SCHEMA,
        "build": r.build,
        "name": r.dns_build,
        "sequence": r.sequence,
        "createdAt": r.created_at,
        "gitSha": r.git_sha,
        "modelFolder": folder,
        "images": dict(r.images),
        "service": {
            "name": service_name(r.dns_build),
            "port": SERVICE_PORT,
            "targetPort": PORT,
            "address": f"{service_name(r.dns_build)}.{r.namespace}.svc.cluster.local",
            "selector": score_selector,
        },
        "objects": {"job": job, "deployment": deployment, "service": service},
    }
