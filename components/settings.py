"""The stack's config (namespace `mlpipeline:`), read once, checked, and turned into typed values.

Which keys exist, their defaults and descriptions: components/catalogue.py. How each raw value is
checked: components/config_reader.py. Here: `Settings.load()` reads the stack's config (refusing
unknown keys, naming the renamed ones), and `Settings.parse()` turns the raw strings into one frozen
Settings. Every problem raises SettingsError naming the key, before any resource is declared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.build import Build, git_sha_from_checkout
from components.catalogue import KEY_NAMES, KEYS, NAMESPACE, RENAMED
from components.config_reader import (
    ACCESS_MODES,
    AZURE_LOCATION,
    CLOUDS,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    FEEDBACK_KEY_MIN_BYTES,
    RESOURCE_GROUP,
    ConfigReader,
    SettingsError,
)
from components.monitoring import MONITORING_KINDS
from components.router import ROUTER_KINDS, GatewayRef, router_peers
from components.sdk_internals import configured_keys
from components.training_data import DataSource

__all__ = ["Settings", "SettingsError"]


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    build: Build  # the build this update deploys: its id and DNS-safe form
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
    feedback_events: tuple[str, ...] = ("click", "purchase")  # the scorer's FEEDBACK_EVENTS
    feedback_window_seconds: int = 86400  # the scorer's FEEDBACK_WINDOW_SECONDS
    feedback_key: pulumi.Output[str] | None = field(default=None, repr=False)  # secret; None: ids untagged

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
        secrets = {key.name: _secret(config, key.name) for key in KEYS if key.secret}
        _check_feedback_key(config)
        return cls.parse(
            raw,
            project=pulumi.get_project(),
            stack=pulumi.get_stack(),
            blob_key=secrets["blobKey"],
            has_blob_key=secrets["blobKey"] is not None,
            feedback_key=secrets["feedbackKey"],
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
        feedback_key: pulumi.Output[str] | None = None,
        git_sha_fallback: Callable[[], str] | None = None,
    ) -> Settings:
        """Check raw config strings (as Pulumi hands them over; "" or None = unset)."""
        values = ConfigReader(raw)
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
            build=Build(build),
            cloud=cloud,
            namespace=namespace,
            keep_releases=values.integer("keepReleases", minimum=1, maximum=100),
            git_sha=values.git_sha(git_sha_fallback or git_sha_from_checkout),
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
            promote_from=values.promote_from(stack),
            images=values.images(cloud),
            monitoring=values.choice("monitoring", MONITORING_KINDS),
            monitoring_labels=values.labels("monitoringLabels"),
            local_registry=values.local_registry(cloud),
            blob_key=blob_key if has_blob_key else None,
            scorer_ingress_from=values.peers("scorerIngressFrom") or router_peers(router, gateway, namespace),
            metrics_scrapers=values.peers("metricsScrapers"),
            feedback_events=values.feedback_events(),
            feedback_window_seconds=values.integer("feedbackWindowSeconds", minimum=1, maximum=7 * 24 * 3600),
            feedback_key=feedback_key,
        )


def _secret(config: pulumi.Config, key: str) -> pulumi.Output[str] | None:
    """A secret key's value, None when unset; a value set in plain text is refused: it would sit
    readable in Pulumi.<stack>.yaml (the state keeps it secret either way)."""
    value = config.get_secret(key)
    if value is not None and not pulumi.runtime.is_config_secret(config.full_key(key)):
        raise SettingsError(
            f"config {NAMESPACE}:{key} must be a secret, but it is set in plain text: "
            f"`pulumi config rm {key}`, then `pulumi config set --secret {key} <value>`"
        )
    return value


def _check_feedback_key(config: pulumi.Config) -> None:
    # Its length only, read here and dropped: the value itself stays an Output (Settings.feedback_key).
    key = config.get("feedbackKey")
    size = len(key.strip().encode()) if key is not None else None
    if size is not None and size < FEEDBACK_KEY_MIN_BYTES:
        raise SettingsError(
            f"config {NAMESPACE}:feedbackKey must hold at least {FEEDBACK_KEY_MIN_BYTES} bytes "
            f"(besides leading and trailing whitespace; the scorer refuses a shorter key), got {size}"
        )


def _configured_names() -> set[str]:
    """Names of the mlpipeline:* keys the stack sets (CLI run or mocks), to catch typos."""
    names = configured_keys()
    prefix = f"{NAMESPACE}:"
    return {name[len(prefix) :] for name in names if name.startswith(prefix)}
