"""The stack's config (namespace `mlpipeline:`), read once, checked, and turned into typed values.

Defaults live here, in code: the Pulumi CLI applies the defaults of Pulumi.yaml, but unit tests
under mocks do not, so Pulumi.yaml declares the same defaults (tests/components/test_settings.py
keeps the two equal). A default of "" in Pulumi.yaml means "worked out here" (e.g. from `cloud`).

Every problem raises SettingsError naming the key and what is allowed, before any resource is
declared. `python -m components.settings` prints the keys as a Markdown table.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from components.monitoring import MONITORING_KINDS
from components.router import ROUTER_KINDS, GatewayRef, RouterError
from components.sdk_internals import configured_keys
from components.training_data import DataSource

NAMESPACE = "mlpipeline"
CLOUDS = ("azure", "local")
IMAGE_SOURCES = ("build", "prebuilt")
DATA_SOURCES = ("blob", "volume")
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany")
CONTAINERS = ("trainer", "waiter", "scorer")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A config value is missing, malformed or contradicts another; the message names the key."""


@dataclass(frozen=True)
class Key:
    name: str
    description: str
    default: Any = None  # as declared in Pulumi.yaml; None = required, "" = worked out in code
    type: str | None = "string"  # Pulumi.yaml type; None for maps and decimals (no such type there)
    secret: bool = False  # read as a secret; left out of Pulumi.yaml (a declared secret has no default)


KEYS: tuple[Key, ...] = (
    Key(
        "build",
        "Build id of the release to deploy (required), e.g. 153 or 20180523.5: letters, digits, "
        "'.', '_', '-', at most 40 characters. Resource names use a DNS-safe form (20180523-5).",
        None,
    ),
    Key(
        "cloud",
        "Where the stack runs: azure (storage account, file share, ACR) or local (any cluster, "
        "default StorageClass, images built locally and pushed only to localRegistry).",
        "local",
    ),
    Key("namespace", "Kubernetes namespace the stack creates and owns.", "mlpipeline"),
    Key(
        "images",
        "How the release's images are made: build (pulumi-docker builds apps/ - pushed to the "
        "stack's registry on azure, into the local Docker daemon on local) or prebuilt (local only: the pods "
        "run mlpipeline/<app>:<build>, already built into the nodes' image store by CI or `docker build`; "
        "no docker.Image, so no docker provider).",
        "build",
    ),
    Key(
        "keepReleases", "How many releases stay deployed, newest first; older ones are retired.", 3, "integer"
    ),
    Key(
        "gitSha",
        "Source revision recorded on the release. Empty: env GIT_SHA, else `git rev-parse HEAD`, "
        "else unknown.",
        "",
    ),
    Key(
        "dataSource",
        "Where the trainer reads the CSVs: blob (Azure Blob Storage or Azurite) or volume "
        "(a PersistentVolumeClaim). Empty: blob on azure, volume on local.",
        "",
    ),
    Key(
        "csvFolder",
        "Folder of the ETL's CSVs inside the blob container or the claim, e.g. 2018/05/08. "
        "Required for blob; empty means the claim's root for volume.",
        "",
    ),
    Key(
        "dataContainer", "Blob container with the CSVs. Empty on azure: the container the stack creates.", ""
    ),
    Key("dataClaim", "PersistentVolumeClaim holding the CSVs (volume). Empty: csv-data.", ""),
    Key(
        "blobAccount",
        "Storage account to read the CSVs from instead of the stack's own (azure) - required "
        "for blob on local (Azurite: devstoreaccount1). Needs the secret blobKey.",
        "",
    ),
    Key(
        "blobEndpoint", "Blob endpoint override, e.g. http://azurite.default.svc:10000/devstoreaccount1.", ""
    ),
    Key(
        "blobKey",
        "Account key for blobAccount. Set it with `pulumi config set --secret blobKey ...`.",
        None,
        "string",
        secret=True,
    ),
    Key(
        "trainerEnv",
        "Trainer hyperparameters as a map of environment variables (names in apps/trainer), "
        "e.g. {TRAIN_FAMILIES: als, TUNE_BUDGET_SECONDS: 600}.",
        {},
        None,
    ),
    Key(
        "gateMinNdcg",
        "Quality gate: the waiter keeps the pod unready if the model's nDCG@k is below this.",
        0.0,
        None,
    ),
    Key(
        "gateMinLift", "Quality gate: minimum nDCG lift of the model over the popularity baseline.", 1.0, None
    ),
    Key("trainTimeoutMinutes", "Deadline of the training Job, all retries included.", 60, "integer"),
    Key(
        "rolloutTimeoutMinutes",
        "How long a release's Deployment may take to become Available.",
        10,
        "integer",
    ),
    Key(
        "waitTimeoutSeconds",
        "How long the waiter waits for a complete, verified model before it fails.",
        600,
        "integer",
    ),
    Key(
        "minReplicas",
        "Scorer pods per release at least (the autoscaler's minimum); a release without "
        "traffic stays at this, warm for a rollback.",
        1,
        "integer",
    ),
    Key(
        "maxReplicas",
        "Scorer pods per release at most, while it receives requests (the autoscaler scales "
        "on CPU between minReplicas and this).",
        4,
        "integer",
    ),
    Key(
        "resources",
        "Per-container overrides of requests/limits, e.g. {trainer: {limits: {memory: 8Gi}}}; "
        "containers trainer, waiter, scorer.",
        {},
        None,
    ),
    Key(
        "modelShareGiB",
        "Size of the model share (Azure Files quota, or the local claim's request).",
        100,
        "integer",
    ),
    Key("localStorageClass", "StorageClass of the local model claim. Empty: the cluster's default.", ""),
    Key(
        "localAccessMode",
        "Access mode of the local model claim: ReadWriteOnce (kind/minikube, one node) or ReadWriteMany.",
        "ReadWriteOnce",
    ),
    Key(
        "localRegistry",
        "Registry host[:port] the local cluster's nodes pull from (kind: its local registry, e.g. "
        "localhost:5001); the images are pushed there and pods pull them by digest, so they are there "
        "before the Job starts. Empty: images stay in the local Docker daemon, which the cluster must "
        "share (Docker Desktop; minikube after `eval $(minikube docker-env)`).",
        "",
    ),
    Key("azureLocation", "Azure region of the resource group, storage account and registry.", "westeurope"),
    Key("azureResourceGroup", "Name of the resource group the stack creates. Empty: mlpipeline-<stack>.", ""),
    Key(
        "router",
        "How the stable address reaches the live releases: gateway (Gateway API HTTPRoute), istio "
        "(VirtualService + DestinationRule) or service (a Service switched to one build, blue/green).",
        "gateway",
    ),
    Key(
        "gateway",
        "The Gateway the route attaches to (router gateway, required; istio, optional): "
        "{name: web, namespace: infra, sectionName: https} or infra/web.",
        "",
        None,
    ),
    Key(
        "hostnames", "Host names the router answers for (gateway, istio), e.g. [reco.example.com].", [], None
    ),
    Key(
        "traffic",
        'Percent of requests per live build, summing to 100, e.g. {"152": 90, "153": 10}: explicit, '
        "and it stays in force over later updates that set no traffic (their new builds join at "
        "canaryPercent). "
        "auto (or {}): the newest release takes 100 once Ready, the others stay warm at 0. Empty: the mode "
        "in "
        "force stays (auto on a new stack); the stack output traffic.mode says which.",
        "",
        None,
    ),
    Key(
        "canaryPercent",
        "In explicit traffic mode, the percent of requests a new build joins with, taken from "
        "the others in proportion; 0: it joins warm, without traffic, until traffic is set again.",
        0,
        "integer",
    ),
    Key(
        "shadow",
        "Mirror a copy of a share of requests to a live build that serves none (gateway, istio), "
        'e.g. {build: "154", percent: 10}; its answers are dropped.',
        {},
        None,
    ),
    Key(
        "championTolerance",
        "Champion/challenger gate: the trainer scores the model of the release holding most "
        "traffic on the new build's test holdout beside the new model; the one-sided 95% lower bound of the "
        "paired "
        "per-user nDCG gain must be at least minus this (0 to 1). Empty: no champion gate.",
        "",
        None,
    ),
    Key(
        "drift",
        "Data drift gate of a release with a champion (championTolerance set): thresholds on the trainer's "
        "figures of this build's data against the champion's, {warn: {figure: x}, fail: {figure: x}} with "
        "figures item_popularity_psi, user_activity_psi, weight_psi, new_user_share, new_item_share, "
        "volume_change (docs/CONTRACTS.md); at or above warn: a warning on the model card, at or above fail: "
        "the gate fails. Empty: the trainer's warn defaults, nothing fails.",
        {},
        None,
    ),
    Key(
        "monitoring",
        "How Prometheus finds the scorers: annotations (prometheus.io/* on the scorer pods, for a "
        "Prometheus that discovers pods by them) or prometheus-operator (also a ServiceMonitor and a "
        "PrometheusRule with monitoring/alerts.yml and the traffic split).",
        "annotations",
    ),
    Key(
        "monitoringLabels",
        "Labels the Prometheus Operator selects ServiceMonitors and PrometheusRules by "
        "(prometheus-operator), e.g. {release: kube-prometheus-stack}.",
        {},
        None,
    ),
    Key(
        "scorerIngressFrom",
        "Who may reach the scorer pods besides metricsScrapers (NetworkPolicy peers), e.g. "
        "[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: gateway-system}}}]. Empty: router "
        "gateway: the Gateway's namespace; istio: istio-system's ingressgateway; service: any pod of the "
        "cluster.",
        "",
        None,
    ),
    Key(
        "metricsScrapers",
        "Who may scrape the scorer's /metrics (NetworkPolicy peers).",
        [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
        None,
    ),
    Key(
        "promoteFrom",
        "Stack whose releases this stack promotes instead of training (e.g. dev): same image "
        "digests, model copied and verified by sha256. Needs cloud azure.",
        "",
    ),
)
KEY_NAMES = frozenset(key.name for key in KEYS)
# Keys of earlier versions, and what a stack file should say instead.
RENAMED = {"replicas": "minReplicas (the autoscaler's minimum; maxReplicas its maximum)"}

# The environment the release sets itself (docs/CONTRACTS.md, section 2); trainerEnv may not override them.
RESERVED_ENV = frozenset(
    """
    MODELFOLDER BUILD_NUMBER GIT_SHA DATA_DIR BLOB_STORAGE_ACCOUNT BLOB_STORAGE_KEY
    BLOB_STORAGE_KEY_FILE BLOB_STORAGE_CONTAINER BLOB_STORAGE_CSV_FOLDER BLOB_STORAGE_ENDPOINT
    GATE_MIN_NDCG GATE_MIN_LIFT GATE_CHAMPION_MODELFOLDER GATE_CHAMPION_TOLERANCE WAIT_TIMEOUT_SECONDS
    POLL_INTERVAL_SECONDS PORT TRAINER_IMAGE TERMINATION_LOG
    """.split()
)
# The trainer's data drift figures (apps/trainer/trainer/drift.py FIGURES): config `drift` sets their
# thresholds as DRIFT_WARN_<FIGURE> and DRIFT_FAIL_<FIGURE>, which trainerEnv may not set then.
DRIFT_FIGURES = (
    "item_popularity_psi",
    "user_activity_psi",
    "weight_psi",
    "new_user_share",
    "new_item_share",
    "volume_change",
)
RESERVED_ENV |= {f"DRIFT_{kind}_{figure.upper()}" for kind in ("WARN", "FAIL") for figure in DRIFT_FIGURES}

DEFAULT_RESOURCES: Mapping[str, Mapping[str, Mapping[str, str]]] = {
    "trainer": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    "waiter": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
    "scorer": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
}
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")

BUILD = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,38}[A-Za-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?$")
LABEL_KEY = re.compile(
    r"^(?:[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
QUANTITY = re.compile(r"^[0-9]+(?:\.[0-9]+)?(?:m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
CSV_FOLDER = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")
CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
AZURE_LOCATION = re.compile(r"^[a-z0-9]+$")
REGISTRY_HOST = re.compile(r"^[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?(?::[0-9]{1,5})?$")
RESOURCE_GROUP = re.compile(r"^[-\w.()]{0,89}[-\w()]$")
GIT_SHA = re.compile(r"^[0-9A-Za-z._-]{1,64}$")
STACK_REF = re.compile(r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+){0,2}$")


PEER_FIELDS = frozenset({"namespaceSelector", "podSelector", "ipBlock"})


def router_peers(router: str, gateway: GatewayRef | None, namespace: str) -> tuple[dict[str, Any], ...]:
    """Who sends the scorer its requests, by router kind (the default of scorerIngressFrom)."""
    if router == "gateway":  # the Gateway's implementation runs in the Gateway's namespace
        gateway_namespace = (gateway.namespace if gateway else None) or namespace
        return ({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": gateway_namespace}}},)
    if router == "istio":
        return (
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
                "podSelector": {"matchLabels": {"istio": "ingressgateway"}},
            },
        )
    return ({"namespaceSelector": {}},)  # service: the stable Service is an address for the cluster


def dns_name(build: str) -> str:
    """The DNS-safe form of a build for resource names: 20180523.5 -> 20180523-5."""
    return re.sub(r"[._]", "-", build.lower())


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    build: str
    dns_build: str
    cloud: str
    namespace: str
    keep_releases: int
    git_sha: str
    data: DataSource
    trainer_env: Mapping[str, str]
    gate_min_ndcg: float
    gate_min_lift: float
    train_timeout_minutes: int
    rollout_timeout_minutes: int
    wait_timeout_seconds: int
    min_replicas: int
    max_replicas: int
    resources: Mapping[str, Mapping[str, Mapping[str, str]]]  # container -> requests/limits -> name -> qty
    model_share_gib: int
    local_storage_class: str | None
    local_access_mode: str
    azure_location: str
    azure_resource_group: str
    router: str = "gateway"
    gateway: GatewayRef | None = None
    hostnames: tuple[str, ...] = ()
    # A map (explicit), "auto" or {} (auto), or None (unset: the mode in force stays); checked later.
    traffic: Mapping[str, Any] | str | None = None
    canary_percent: int = 0
    shadow: Mapping[str, Any] = field(default_factory=dict)
    champion_tolerance: float | None = None  # None: no champion gate
    drift_env: Mapping[str, str] = field(default_factory=dict)  # DRIFT_* of the trainer, from config drift
    promote_from: str | None = None  # source stack; None: this stack trains
    images: str = "build"  # IMAGE_SOURCES
    monitoring: str = "annotations"
    monitoring_labels: Mapping[str, str] = field(default_factory=dict)
    local_registry: str | None = None  # cloud local: push the images there (no credentials); None: no push
    scorer_ingress_from: tuple[Mapping[str, Any], ...] = ()  # NetworkPolicy peers: router / gateway
    metrics_scrapers: tuple[Mapping[str, Any], ...] = ()  # NetworkPolicy peers
    blob_key: pulumi.Output[str] | None = field(default=None, repr=False)  # secret, never a plain str

    @property
    def is_azure(self) -> bool:
        return self.cloud == "azure"

    @classmethod
    def load(cls) -> Settings:
        """Read the stack's config under Pulumi (or its mocks)."""
        config = pulumi.Config(NAMESPACE)
        unknown = sorted(_configured_names() - KEY_NAMES)
        if unknown:
            moved = "".join(f"; {NAMESPACE}:{k} is now {RENAMED[k]}" for k in unknown if k in RENAMED)
            raise SettingsError(
                f"unknown config key(s) {', '.join(f'{NAMESPACE}:{k}' for k in unknown)}{moved}; "
                f"known keys: {', '.join(sorted(KEY_NAMES))}"
            )
        raw = {key.name: config.get(key.name) for key in KEYS if not key.secret}
        blob_key = config.get_secret("blobKey")
        return cls.parse(
            raw,
            project=pulumi.get_project(),
            stack=pulumi.get_stack(),
            blob_key=blob_key,
            has_blob_key=_is_set(config, "blobKey"),
        )

    @classmethod
    def parse(
        cls,
        raw: Mapping[str, str | None],
        *,
        project: str,
        stack: str,
        blob_key: pulumi.Output[str] | None = None,
        has_blob_key: bool = False,
        git_sha_fallback: Callable[[], str] | None = None,
    ) -> Settings:
        """Check raw config strings (as Pulumi hands them over; "" or None = unset)."""
        values = _Reader(raw)
        build = values.build()
        cloud = values.choice("cloud", CLOUDS)
        data = values.data_source(cloud, has_blob_key)
        min_replicas = values.integer("minReplicas", minimum=1, maximum=100)
        router = values.choice("router", ROUTER_KINDS)
        gateway = values.gateway()
        namespace = values.pattern("namespace", DNS_LABEL, "a DNS label (lowercase letters, digits, '-')")
        return cls(
            project=project,
            stack=stack,
            build=build,
            dns_build=dns_name(build),
            cloud=cloud,
            namespace=namespace,
            keep_releases=values.integer("keepReleases", minimum=1, maximum=100),
            git_sha=values.git_sha(git_sha_fallback or _git_sha_fallback),
            data=data,
            trainer_env=values.trainer_env(),
            gate_min_ndcg=values.number("gateMinNdcg", minimum=0.0),
            gate_min_lift=values.number("gateMinLift", minimum=0.0),
            train_timeout_minutes=values.integer("trainTimeoutMinutes", minimum=1, maximum=7 * 24 * 60),
            rollout_timeout_minutes=values.integer("rolloutTimeoutMinutes", minimum=1, maximum=24 * 60),
            wait_timeout_seconds=values.integer("waitTimeoutSeconds", minimum=1, maximum=7 * 24 * 3600),
            min_replicas=min_replicas,
            max_replicas=values.at_least("maxReplicas", min_replicas, "minReplicas", maximum=100),
            resources=values.resources(),
            model_share_gib=values.integer("modelShareGiB", minimum=1, maximum=102400),
            local_storage_class=values.optional("localStorageClass", DNS_SUBDOMAIN, "a StorageClass name"),
            local_access_mode=values.choice("localAccessMode", ACCESS_MODES),
            azure_location=values.pattern(
                "azureLocation", AZURE_LOCATION, "an Azure region name like westeurope"
            ),
            azure_resource_group=values.optional(
                "azureResourceGroup", RESOURCE_GROUP, "a resource group name (letters, digits, -_.())"
            )
            or f"{project}-{stack}",
            router=router,
            gateway=gateway,
            hostnames=values.hostnames(),
            traffic=values.traffic(),
            canary_percent=values.integer("canaryPercent", minimum=0, maximum=50),
            shadow=values.mapping("shadow"),
            champion_tolerance=values.fraction("championTolerance"),
            drift_env=values.drift(),
            promote_from=values.promote_from(cloud, stack),
            images=values.images(cloud),
            monitoring=values.choice("monitoring", MONITORING_KINDS),
            monitoring_labels=values.labels("monitoringLabels"),
            local_registry=values.local_registry(cloud),
            blob_key=blob_key if has_blob_key else None,
            scorer_ingress_from=values.peers("scorerIngressFrom") or router_peers(router, gateway, namespace),
            metrics_scrapers=values.peers("metricsScrapers"),
        )


class _Reader:
    """Typed access to raw config strings; every error names the key and what it accepts."""

    def __init__(self, raw: Mapping[str, str | None]):
        self._raw = raw
        self._defaults = {key.name: key.default for key in KEYS}

    def text(self, key: str) -> str:
        value = self._raw.get(key)
        if value is None or str(value).strip() == "":
            default = self._defaults[key]
            return "" if default is None else str(default)
        return str(value).strip()

    def is_set(self, key: str) -> bool:
        value = self._raw.get(key)
        return value is not None and str(value).strip() not in ("", str(self._defaults[key] or ""))

    def fail(self, key: str, allowed: str, got: Any) -> SettingsError:
        return SettingsError(f"config {NAMESPACE}:{key} must be {allowed}, got {got!r}")

    def local_registry(self, cloud: str) -> str | None:
        value = self.optional("localRegistry", REGISTRY_HOST, "a registry host[:port] like localhost:5001")
        if value and cloud != "local":
            raise SettingsError(
                f"config {NAMESPACE}:localRegistry only applies to cloud local (azure pushes to its ACR)"
            )
        return value

    def build(self) -> str:
        value = self.text("build")
        if not value:
            raise SettingsError(
                f"config {NAMESPACE}:build is required: the build id of the release, "
                f"e.g. `pulumi up --config build=153`"
            )
        if not BUILD.match(value):
            raise self.fail(
                "build",
                "1-40 letters, digits, '.', '_' or '-', starting and ending with a "
                "letter or digit (e.g. 153 or 20180523.5)",
                value,
            )
        return value

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in allowed:
            raise self.fail(key, f"one of {', '.join(allowed)}", value)
        return value

    def pattern(self, key: str, regex: re.Pattern, allowed: str) -> str:
        value = self.text(key)
        if not regex.match(value):
            raise self.fail(key, allowed, value)
        return value

    def optional(self, key: str, regex: re.Pattern, allowed: str) -> str | None:
        value = self.text(key)
        if not value:
            return None
        if not regex.match(value):
            raise self.fail(key, allowed, value)
        return value

    def integer(self, key: str, minimum: int, maximum: int) -> int:
        value = self.text(key)
        try:
            number = int(value)
        except ValueError:
            raise self.fail(key, f"a whole number from {minimum} to {maximum}", value) from None
        if not minimum <= number <= maximum:
            raise self.fail(key, f"a whole number from {minimum} to {maximum}", number)
        return number

    def at_least(self, key: str, minimum: int, minimum_key: str, maximum: int) -> int:
        number = self.integer(key, minimum=1, maximum=maximum)
        if number < minimum:
            raise self.fail(key, f"a whole number from {minimum_key} ({minimum}) to {maximum}", number)
        return number

    def peers(self, key: str) -> tuple[dict[str, Any], ...]:
        """NetworkPolicy peers: each {namespaceSelector, podSelector} (either or both; {} selects
        all) or {ipBlock: {cidr}}. Unset: the key's default."""
        value = self._raw.get(key)
        if value is None or str(value).strip() == "":
            value = self._defaults[key]
            if value == "":  # worked out in code
                return ()
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = None
        allowed = "a list of NetworkPolicy peers like [{namespaceSelector: {matchLabels: {name: x}}}]"
        if not isinstance(value, list):
            raise self.fail(key, allowed, value)
        for peer in value:
            if not isinstance(peer, Mapping) or not peer or set(peer) - PEER_FIELDS:
                raise self.fail(key, allowed + f"; each peer has only {', '.join(sorted(PEER_FIELDS))}", peer)
            for name in set(peer) & {"namespaceSelector", "podSelector"}:
                selector = peer[name]
                if not isinstance(selector, Mapping) or set(selector) - {"matchLabels", "matchExpressions"}:
                    raise self.fail(key, f"{name} a label selector (matchLabels, matchExpressions)", selector)
                labels = selector.get("matchLabels", {})
                if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
                    raise self.fail(key, f"{name}.matchLabels a map of label values (text)", labels)
            if "ipBlock" in peer and not (
                isinstance(peer["ipBlock"], Mapping) and peer["ipBlock"].get("cidr")
            ):
                raise self.fail(key, "ipBlock with a cidr", peer["ipBlock"])
        return tuple(json.loads(json.dumps(value)))  # plain dicts and lists, whatever YAML gave

    def number(self, key: str, minimum: float) -> float:
        value = self.text(key)
        try:
            number = float(value)
        except ValueError:
            raise self.fail(key, f"a number >= {minimum}", value) from None
        if not math.isfinite(number) or number < minimum:
            raise self.fail(key, f"a number >= {minimum}", value)
        return number

    def mapping(self, key: str) -> dict:
        value = self._raw.get(key)
        if value is None or str(value).strip() == "":
            return {}
        if isinstance(value, Mapping):
            return dict(value)
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise self.fail(
                key, "a map (a YAML mapping in the stack file, or JSON on the command line)", value
            )
        return parsed

    def labels(self, key: str) -> dict[str, str]:
        value = self.mapping(key)
        if not all(
            isinstance(k, str) and isinstance(v, str) and LABEL_KEY.match(k) and LABEL_VALUE.match(v)
            for k, v in value.items()
        ):
            raise self.fail(key, "a map of Kubernetes label names to string values", value)
        return value

    def traffic(self) -> Mapping[str, Any] | str | None:
        value = self.text("traffic")
        if not value:
            return None
        if value == "auto":
            return value
        return self.mapping("traffic")

    def git_sha(self, fallback: Callable[[], str]) -> str:
        value = self.text("gitSha") or os.environ.get("GIT_SHA", "").strip() or fallback()
        if not GIT_SHA.match(value):
            raise self.fail("gitSha", "a revision id (letters, digits, '.', '_', '-'; at most 64)", value)
        return value

    def trainer_env(self) -> dict[str, str]:
        env = {}
        for name, value in self.mapping("trainerEnv").items():
            if not ENV_NAME.match(name):
                raise self.fail("trainerEnv", "a map whose keys are environment variable names", name)
            if name in RESERVED_ENV:
                reserved = ", ".join(sorted(RESERVED_ENV))
                raise self.fail("trainerEnv", f"free of the names the release sets itself ({reserved})", name)
            if isinstance(value, bool):
                value = "true" if value else "false"
            if not isinstance(value, (str, int, float)):
                raise self.fail("trainerEnv", f"a map of plain values (text or numbers); {name} is", value)
            env[name] = str(value)
        return dict(sorted(env.items()))

    def drift(self) -> dict[str, str]:
        """Config drift as the trainer's DRIFT_WARN_<FIGURE> / DRIFT_FAIL_<FIGURE> variables."""
        env = {}
        shape = (
            f"{{warn: {{figure: number}}, fail: {{figure: number}}}} with figures {', '.join(DRIFT_FIGURES)}"
        )
        for kind, thresholds in self.mapping("drift").items():
            if kind not in ("warn", "fail") or not isinstance(thresholds, Mapping):
                raise self.fail("drift", shape, {kind: thresholds})
            for figure, value in thresholds.items():
                finite = (
                    isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                )
                if figure not in DRIFT_FIGURES or not finite or value < 0:
                    raise self.fail("drift", f"{shape}, each a number >= 0", {kind: {figure: value}})
                env[f"DRIFT_{kind.upper()}_{figure.upper()}"] = repr(float(value))
        return dict(sorted(env.items()))

    def resources(self) -> dict[str, dict[str, dict[str, str]]]:
        merged = {c: {kind: dict(q) for kind, q in DEFAULT_RESOURCES[c].items()} for c in CONTAINERS}
        for container, kinds in self.mapping("resources").items():
            if container not in CONTAINERS:
                raise self.fail("resources", f"a map keyed by container ({', '.join(CONTAINERS)})", container)
            if not isinstance(kinds, Mapping) or set(kinds) - {"requests", "limits"}:
                raise self.fail("resources", f"{{{container}: {{requests: ..., limits: ...}}}}", kinds)
            for kind, quantities in kinds.items():
                if not isinstance(quantities, Mapping):
                    allowed = f"a map of {', '.join(RESOURCE_NAMES)} under {container}.{kind}"
                    raise self.fail("resources", allowed, quantities)
                for name, quantity in quantities.items():
                    if name not in RESOURCE_NAMES:
                        allowed = f"one of {', '.join(RESOURCE_NAMES)} under {container}.{kind}"
                        raise self.fail("resources", allowed, name)
                    if not QUANTITY.match(str(quantity)):
                        allowed = f"a Kubernetes quantity (e.g. 500m, 2, 512Mi) for {container}.{kind}.{name}"
                        raise self.fail("resources", allowed, quantity)
                    merged[container][kind][name] = str(quantity)
        return merged

    def gateway(self) -> GatewayRef | None:
        text = self.text("gateway")
        try:
            return GatewayRef.from_config(self.mapping("gateway") if text.startswith("{") else text)
        except RouterError as exc:
            raise self.fail(
                "gateway", "a Gateway reference {name, namespace, sectionName} or namespace/name", str(exc)
            ) from None

    def hostnames(self) -> tuple[str, ...]:
        value = self._raw.get("hostnames")
        if value is None or str(value).strip() in ("", "[]"):
            return ()
        try:
            parsed = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            parsed = [value]  # one bare host name
        if not isinstance(parsed, list) or not all(isinstance(h, str) for h in parsed):
            raise self.fail("hostnames", "a list of host names", value)
        return tuple(parsed)

    def fraction(self, key: str) -> float | None:
        if not self.text(key):
            return None
        number = self.number(key, minimum=0.0)
        if number > 1:
            raise self.fail(key, "a number from 0 to 1", number)
        return number

    def images(self, cloud: str) -> str:
        value = self.choice("images", IMAGE_SOURCES)
        if value == "prebuilt" and cloud != "local":
            raise SettingsError(
                f"config {NAMESPACE}:images prebuilt needs cloud local: on azure the images are pushed to "
                f"the stack's registry and pinned by digest, which only the build gives"
            )
        return value

    def promote_from(self, cloud: str, stack: str) -> str | None:
        value = self.text("promoteFrom")
        if not value:
            return None
        if not STACK_REF.match(value):
            raise self.fail("promoteFrom", "a stack name like dev (or organization/project/stack)", value)
        if value == stack:
            raise self.fail("promoteFrom", "another stack than this one", value)
        if cloud != "azure":
            raise SettingsError(
                f"config {NAMESPACE}:promoteFrom needs cloud azure: the source's model share is an Azure "
                f"file share mounted read-only (a local cluster's claim cannot be mounted from another "
                f"namespace)"
            )
        return value

    def data_source(self, cloud: str, has_blob_key: bool) -> DataSource:
        kind = self.text("dataSource") or ("blob" if cloud == "azure" else "volume")
        if kind not in DATA_SOURCES:
            raise self.fail("dataSource", f"one of {', '.join(DATA_SOURCES)}", kind)
        folder = self.text("csvFolder").strip("/")
        if folder and (not CSV_FOLDER.match(folder) or ".." in folder.split("/")):
            raise self.fail("csvFolder", "a relative folder like 2018/05/08 (no '..')", folder)
        blob_only = [k for k in ("dataContainer", "blobAccount", "blobEndpoint") if self.is_set(k)]
        if kind == "volume":
            if blob_only or has_blob_key:
                names = ", ".join(
                    f"{NAMESPACE}:{k}" for k in blob_only + (["blobKey"] if has_blob_key else [])
                )
                raise SettingsError(f"config {names} only apply to dataSource blob, but dataSource is volume")
            claim = self.optional("dataClaim", DNS_SUBDOMAIN, "a PersistentVolumeClaim name") or "csv-data"
            return DataSource(kind="volume", csv_folder=folder, claim=claim)
        if self.is_set("dataClaim"):
            raise SettingsError(
                f"config {NAMESPACE}:dataClaim only applies to dataSource volume, but dataSource is blob"
            )
        if not folder:
            raise SettingsError(
                f"config {NAMESPACE}:csvFolder is required with dataSource blob: "
                f"the ETL's folder, e.g. 2018/05/08"
            )
        account = self.optional(
            "blobAccount", ACCOUNT_NAME, "a storage account name (3-24 lowercase letters, digits)"
        )
        container = self.optional(
            "dataContainer", CONTAINER_NAME, "a blob container name (3-63 lowercase letters, digits, '-')"
        )
        endpoint = self.text("blobEndpoint") or None
        if endpoint and not re.match(r"^https?://[^\s/]+(/\S*)?$", endpoint):
            raise self.fail("blobEndpoint", "an http(s) URL", endpoint)
        if cloud == "local" and account is None:
            raise SettingsError(
                f"config {NAMESPACE}:blobAccount is required with dataSource blob on cloud local "
                f"(there is no stack storage account; Azurite's is devstoreaccount1)"
            )
        if account is not None and not has_blob_key:
            raise SettingsError(
                f"config {NAMESPACE}:blobKey is required with blobAccount {account}: "
                f"`pulumi config set --secret blobKey <account key>`"
            )
        if account is None and has_blob_key:
            raise SettingsError(
                f"config {NAMESPACE}:blobKey is only used with blobAccount; "
                f"the stack's own account needs none"
            )
        if cloud == "local" and container is None:
            raise SettingsError(
                f"config {NAMESPACE}:dataContainer is required with dataSource blob on cloud local"
            )
        return DataSource(
            kind="blob", csv_folder=folder, container=container, account=account, endpoint=endpoint
        )


def _is_set(config: pulumi.Config, key: str) -> bool:
    # Whether a (secret) key has a value, without reading the value into plain text.
    return config.get_secret(key) is not None


def _configured_names() -> set[str]:
    """Names of the mlpipeline:* keys the stack sets (CLI run or mocks), to catch typos."""
    names = configured_keys()
    prefix = f"{NAMESPACE}:"
    return {name[len(prefix) :] for name in names if name.startswith(prefix)}


def _git_sha_fallback() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def markdown_table() -> str:
    """The keys as a Markdown table, for components/README.md."""
    rows = ["| key | default | description |", "|---|---|---|"]
    for key in KEYS:
        default = (
            "required"
            if key.default is None and not key.secret
            else (
                "secret, optional"
                if key.secret
                else json.dumps(key.default)
                if key.default != ""
                else "(derived)"
            )
        )
        rows.append(f"| `{key.name}` | {default} | {key.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
