"""The release template: a new build's Job, Deployment and Service, rendered as plain objects.

This is the only code that decides what a release looks like, and it only ever runs for a build
that is not in the ledger yet. Its output becomes the release's record (`ReleaseRecord`, the
stack output `releases`); promotion swaps the training Job for its copy Job, built by the same
`job` (components/promotion.py),
and every later `pulumi up` re-declares the release from that record, so a change here can never
reach an existing release (above all, never re-train one by replacing its Job).

    Job        train-<dns>   python -m trainer, model share read-write, writes MODELFOLDER
    Deployment score-<dns>   init container python -m waiter (holds the pod until the model is
                             complete, verified and above the gate), container python -m scorer
    Service    score-<dns>   port 80 -> 8080, the release's own address (the probes: 8081)

Commands, env, probes and mounts are explicit: `make demo` plays these objects as processes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

import pulumi

from components import labels
from components.build import Build

SCHEMA = 1  # version of the record layout; bump with a reader for the old one
MODEL_MOUNT = "/mnt/models"
TMP_MOUNT = "/tmp"
PORT = 8080
# The kubelet's probes go to a port of their own, answered apart from the requests (apps/scorer
# README); NetworkPolicy does not apply to the node's own traffic to its pods, so none opens it.
PROBE_PORT = 8081
SERVICE_PORT = 80
# How a Prometheus that discovers pods by annotation scrapes the scorer (config monitoring).
SCRAPE = {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT), "prometheus.io/path": "/metrics"}
RUN_AS = 10001  # numeric, so runAsNonRoot can be checked without reading the image
POLL_INTERVAL_SECONDS = 5
# Fail fast: a release's Job (training, or promotion's copy) exits non-zero only on a decision (bad
# data, a failed gate, a damaged source file, another release's folder), so the first failed pod
# fails the Job; pulumi-kubernetes ends its await at once on the Job's BackoffLimitExceeded (and
# only on that or DeadlineExceeded), printing the pod's termination message: the container's
# reason. Pods lost to node failure, drain or preemption (condition DisruptionTarget) do not count
# and are replaced; their attempts cannot mix (modelshare.publish).
BACKOFF_LIMIT = 0
POD_FAILURE_POLICY = {
    "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
}
# A Job's container ends with its reason as its termination message; a crash without one leaves
# its log tail instead.
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"
# pulumi-kubernetes gives up this long after the Job's own deadline: the Job's DeadlineExceeded
# is the clearer error, so it should come first.
AWAIT_MARGIN_SECONDS = 300
# On a pod's deletion the endpoints stop sending to it while the kubelet already stops it: the
# scorer waits this long before its SIGTERM drain, within the grace period.
PRE_STOP_SECONDS = 5
GRACE_PERIOD_SECONDS = 30
# checkov skips, in the objects they concern (components/README.md lists them): images that are
# never pushed can be neither pulled Always nor referenced by digest.
LOCAL_IMAGE_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_15=local images are built into the node's Docker daemon and never pushed: "
    "pulling Always would fail",
    "checkov.io/skip2": "CKV_K8S_43=local images are never pushed, so they have no registry digest",
}


def job_name(dns_build: str) -> str:
    return f"train-{dns_build}"


def deployment_name(dns_build: str) -> str:
    return f"score-{dns_build}"


def service_name(dns_build: str) -> str:
    return f"score-{dns_build}"


def model_folder(build: str) -> str:
    return f"{MODEL_MOUNT}/{build}"


class ReleaseImages(TypedDict):
    trainer: str
    waiter: str
    scorer: str


class ReleaseService(TypedDict):
    name: str
    port: int
    targetPort: int
    address: str  # cluster DNS name
    selector: dict[str, str]  # exactly this release's scorer pods


class ReleaseObjects(TypedDict):
    job: dict[str, Any]
    deployment: dict[str, Any]
    service: dict[str, Any]


class ReleaseRecord(TypedDict):
    """One entry of the stack output `releases` (docs/CONTRACTS.md, section 5): everything needed to
    declare the release again, verbatim. Field names are camelCase, as in the stack outputs."""

    schema: int
    build: str
    name: str  # DNS-safe build
    sequence: int  # 1 for the stack's first release, then +1, in order of first deployment
    createdAt: str  # UTC ISO-8601
    gitSha: str
    modelFolder: str
    images: ReleaseImages  # a new build's references are Outputs until the ledger resolves them
    service: ReleaseService
    objects: ReleaseObjects
    promotedFrom: NotRequired[str]  # promoted releases: the source stack
    # What training produced (components/training_results.py), from the update that trained it;
    # a promoted release carries its source's. Absent in records of stacks before it.
    training: NotRequired[dict[str, Any]]


@dataclass(frozen=True)
class ReleaseTemplate:
    """What the stack's config decides about a new release (the same for every build)."""

    namespace: str
    models_claim: str
    data_env: Sequence[Mapping[str, Any]]
    data_volumes: Sequence[Mapping[str, Any]]
    data_mounts: Sequence[Mapping[str, Any]]
    trainer_env: Mapping[str, str]
    gate_min_ndcg: float
    gate_min_lift: float
    wait_timeout_seconds: int
    train_timeout_seconds: int  # the training Job's deadline; also the promotion Job's
    rollout_timeout_seconds: int
    replicas: int  # the Deployment's starting count (the autoscaler's minimum), which it owns after
    resources: Mapping[str, Mapping[str, Mapping[str, str]]]
    pull_secret: str | None = None
    # False on a local cluster: images built into the node's Docker daemon, never pushed, so
    # neither pulled nor referenced by digest (two checkov checks are skipped, saying so).
    images_pushed: bool = True
    # Champion/challenger gate: the build holding most traffic, and how far below its nDCG the new
    # model may be. Either None: no champion gate (nothing in the env).
    champion: str | None = None
    champion_tolerance: float | None = None
    # The trainer's data drift thresholds (DRIFT_*, config drift); measured against the champion's data.
    drift_env: Mapping[str, str] = field(default_factory=dict)
    data_location: pulumi.Input[str] | None = (
        None  # provenance: where the trainer reads (blob://..., pvc://...)
    )
    # The scorer's own settings beyond the release's identity and ports (the feedback ones,
    # components/feedback_key.py), and the pod volumes and scorer mounts they need (the key file).
    scorer_env: Mapping[str, str] = field(default_factory=dict)
    scorer_volumes: Sequence[Mapping[str, Any]] = ()
    scorer_mounts: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class BuildInfo:
    """What identifies one build's release: provenance, position in the ledger, images."""

    build: Build  # its id and DNS-safe form
    sequence: int  # position in the ledger: 1 for the stack's first release, then +1
    created_at: str  # UTC ISO-8601
    git_sha: str
    images: Mapping[str, pulumi.Input[str]]  # trainer, waiter, scorer


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


def gate_env(t: ReleaseTemplate) -> dict[str, str]:
    """The stack's quality gate, the same for the Job (the trainer, or promotion's copy, which decides
    it, failing the Job) and the waiter (which checks it again before the scorer starts)."""
    env = {"GATE_MIN_NDCG": repr(float(t.gate_min_ndcg)), "GATE_MIN_LIFT": repr(float(t.gate_min_lift))}
    if t.champion is not None and t.champion_tolerance is not None:
        env["GATE_CHAMPION_MODELFOLDER"] = model_folder(t.champion)
        env["GATE_CHAMPION_TOLERANCE"] = repr(float(t.champion_tolerance))
    return env


def pod_spec(
    models_claim: str,
    pull_secret: str | None,
    restart_policy: str | None,
    volumes: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
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


def container(
    name: str,
    image: pulumi.Input[str],
    module: str,
    env: list[dict],
    resources: Mapping[str, Mapping[str, str]],
    models_read_only: bool,
    extra_mounts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
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


def provenance(t: ReleaseTemplate, b: BuildInfo) -> dict[str, Any]:
    """The annotations every object and pod of the release carries: the provenance known when the
    release is declared (what training finds is in its record)."""
    config = {
        "gate": gate_env(t),
        **({"drift": dict(t.drift_env)} if t.drift_env else {}),
        "trainerEnv": dict(t.trainer_env),
        "trainTimeoutSeconds": t.train_timeout_seconds,
        "replicas": t.replicas,
    }
    known = {
        labels.CREATED_AT: b.created_at,
        labels.MODEL_FOLDER: model_folder(b.build.id),
        **{labels.image(app): ref for app, ref in b.images.items()},
        labels.CONFIG: json.dumps(config, sort_keys=True, separators=(",", ":")),
        **({labels.DATA: t.data_location} if t.data_location is not None else {}),
    }
    return labels.provenance(b.build.id, b.git_sha, **known)


def job(
    name: str,
    namespace: str,
    job_labels: Mapping[str, str],
    annotations: Mapping[str, str],
    deadline_seconds: int,
    pod: Mapping[str, Any],
) -> dict[str, Any]:
    """A release's Job (training, or promotion's copy): failing at its container's first decision
    (BACKOFF_LIMIT, POD_FAILURE_POLICY), awaited by pulumi-kubernetes a little longer than its own
    deadline, so that the Job's DeadlineExceeded is the error one sees."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": job_labels,
            "annotations": {**annotations, labels.TIMEOUT: str(deadline_seconds + AWAIT_MARGIN_SECONDS)},
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "podFailurePolicy": dict(POD_FAILURE_POLICY),
            "activeDeadlineSeconds": deadline_seconds,
            "template": {"metadata": {"labels": job_labels, "annotations": annotations}, "spec": dict(pod)},
        },
    }


def _common_env(b: BuildInfo) -> dict[str, str]:
    return {"MODELFOLDER": model_folder(b.build.id), "BUILD_NUMBER": b.build.id, "GIT_SHA": b.git_sha}


def _identity_env(b: BuildInfo) -> dict[str, Any]:
    # TRAINER_IMAGE: the trainer records its own image in the manifest, the waiter refuses a manifest
    # that records another (a build id is one release: never new images over an old model).
    return {**_common_env(b), "TRAINER_IMAGE": b.images["trainer"]}


def training_job(t: ReleaseTemplate, b: BuildInfo) -> dict[str, Any]:
    """Job train-<dns>: python -m trainer writes the model folder."""
    trainer = container(
        "trainer",
        b.images["trainer"],
        "trainer",
        _env({**_identity_env(b), **gate_env(t), **t.drift_env})
        + [dict(e) for e in t.data_env]
        + _env(t.trainer_env),
        t.resources["trainer"],
        models_read_only=False,
        extra_mounts=t.data_mounts,
    )
    trainer["terminationMessagePolicy"] = TERMINATION_MESSAGE_POLICY
    # Never: each retry is a fresh pod whose logs stay for a post-mortem.
    pod = {**pod_spec(t.models_claim, t.pull_secret, "Never", t.data_volumes), "containers": [trainer]}
    train_labels = labels.recommended("trainer", job_name(b.build.dns), b.build.id, "training")
    return job(
        job_name(b.build.dns),
        t.namespace,
        train_labels,
        {**provenance(t, b), **_skips(t)},
        t.train_timeout_seconds,
        pod,
    )


def _skips(t: ReleaseTemplate) -> dict[str, str]:
    return {} if t.images_pushed else dict(LOCAL_IMAGE_SKIPS)


def render(t: ReleaseTemplate, b: BuildInfo) -> ReleaseRecord:
    """The record of a new release that trains its model."""
    return record(t, b, training_job(t, b))


def record(t: ReleaseTemplate, b: BuildInfo, release_job: dict[str, Any]) -> ReleaseRecord:
    """The release record around `release_job` (training, or promotion's copy): summary fields, the
    Deployment and the Service, camelCase as Kubernetes has them.

    Image references may still be Outputs (a new build's digests); the ledger resolves them.
    """
    folder = model_folder(b.build.id)
    common = _common_env(b)
    annotations = provenance(t, b)
    score_labels = labels.recommended("scorer", deployment_name(b.build.dns), b.build.id, "scoring")
    score_selector = labels.selector("scorer", deployment_name(b.build.dns))

    def app(name: str, env: list[dict], mounts: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        return container(
            name, b.images[name], name, env, t.resources[name], models_read_only=True, extra_mounts=mounts
        )

    waiter = app(
        "waiter",
        _env(
            {
                **_identity_env(b),
                **gate_env(t),
                "WAIT_TIMEOUT_SECONDS": str(t.wait_timeout_seconds),
                "POLL_INTERVAL_SECONDS": str(POLL_INTERVAL_SECONDS),
            }
        ),
    )
    scorer = app(
        "scorer",
        _env({**common, "PORT": str(PORT), "PROBE_PORT": str(PROBE_PORT), **t.scorer_env}),
        t.scorer_mounts,
    )
    scorer["ports"] = [
        {"name": "http", "containerPort": PORT, "protocol": "TCP"},
        {"name": "probes", "containerPort": PROBE_PORT, "protocol": "TCP"},
    ]
    scorer["lifecycle"] = {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}}
    scorer["readinessProbe"] = {
        "httpGet": {"path": "/readyz", "port": "probes"},
        "periodSeconds": 5,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    scorer["livenessProbe"] = {
        "httpGet": {"path": "/healthz", "port": "probes"},
        "initialDelaySeconds": 10,
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    pod = {
        **pod_spec(t.models_claim, t.pull_secret, None, t.scorer_volumes),
        "terminationGracePeriodSeconds": GRACE_PERIOD_SECONDS,
        # One node's loss takes as few of the release's pods as the nodes allow; a one-node
        # cluster still schedules them all (ScheduleAnyway).
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": score_selector},
            }
        ],
        "initContainers": [waiter],
        "containers": [scorer],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(b.build.dns),
            "namespace": t.namespace,
            "labels": score_labels,
            "annotations": {**annotations, labels.TIMEOUT: str(t.rollout_timeout_seconds), **_skips(t)},
        },
        "spec": {
            "replicas": t.replicas,
            "revisionHistoryLimit": 2,
            "progressDeadlineSeconds": t.rollout_timeout_seconds,
            "selector": {"matchLabels": score_selector},
            "template": {
                "metadata": {"labels": score_labels, "annotations": {**annotations, **SCRAPE}},
                "spec": pod,
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(b.build.dns),
            "namespace": t.namespace,
            "labels": score_labels,
            "annotations": annotations,
        },
        "spec": {
            "type": "ClusterIP",
            "selector": score_selector,
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": PORT, "protocol": "TCP"}],
        },
    }
    return {
        "schema": SCHEMA,
        "build": b.build.id,
        "name": b.build.dns,
        "sequence": b.sequence,
        "createdAt": b.created_at,
        "gitSha": b.git_sha,
        "modelFolder": folder,
        "images": dict(b.images),  # type: ignore[typeddict-item]  # Outputs until resolved
        "service": {
            "name": service_name(b.build.dns),
            "port": SERVICE_PORT,
            "targetPort": PORT,
            "address": f"{service_name(b.build.dns)}.{t.namespace}.svc.cluster.local",
            "selector": score_selector,
        },
        "objects": {"job": release_job, "deployment": deployment, "service": service},
    }
