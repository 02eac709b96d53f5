"""Reading and checking the raw config strings, one key at a time: `ConfigReader` turns each into a
typed value or raises SettingsError naming the key, what it accepts and what it got.

What the keys are (names, defaults) is the catalogue's (components/catalogue.py); how the checked
values become the typed Settings is components/settings.py's. Here: the patterns and limits a value
must meet, the environment names a release sets itself, the default requests and limits.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from components.catalogue import DEFAULTS, NAMESPACE
from components.drift_limits import DRIFT_FIGURES
from components.router import GatewayRef, RouterError
from components.training_data import DataSource

CLOUDS = ("azure", "local")
IMAGE_SOURCES = ("build", "prebuilt")
DATA_SOURCES = ("blob", "volume")
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany")
CONTAINERS = ("trainer", "waiter", "scorer")


class SettingsError(ValueError):
    """A config value is missing, malformed or contradicts another; the message names the key."""


# The environment the release sets itself (docs/CONTRACTS.md, section 2); trainerEnv may not override them.
RESERVED_ENV = frozenset(
    """
    MODELFOLDER BUILD_NUMBER GIT_SHA DATA_DIR BLOB_STORAGE_ACCOUNT BLOB_STORAGE_KEY
    BLOB_STORAGE_KEY_FILE BLOB_STORAGE_CONTAINER BLOB_STORAGE_CSV_FOLDER BLOB_STORAGE_ENDPOINT
    GATE_MIN_NDCG GATE_MIN_LIFT GATE_CHAMPION_MODELFOLDER GATE_CHAMPION_TOLERANCE WAIT_TIMEOUT_SECONDS
    POLL_INTERVAL_SECONDS PORT TRAINER_IMAGE TERMINATION_LOG
    """.split()
)
# Config `drift` sets the trainer's thresholds as DRIFT_WARN_<FIGURE> and DRIFT_FAIL_<FIGURE>
# (figures: components/drift_limits.py), which trainerEnv may not set then.
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
# An event name the scorer accepts in FEEDBACK_EVENTS (apps/scorer/scorer/settings.py, _EVENT).
FEEDBACK_EVENT = re.compile(r"^[a-z0-9_-]{1,32}$")
# The scorer refuses a shorter key (after stripping whitespace) and exits at start.
FEEDBACK_KEY_MIN_BYTES = 16


PEER_FIELDS = frozenset({"namespaceSelector", "podSelector", "ipBlock"})


class ConfigReader:
    """Typed access to raw config strings; every error names the key and what it accepts."""

    def __init__(self, raw: Mapping[str, str | None]):
        self._raw = raw
        self._defaults = DEFAULTS

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

    def feedback_events(self) -> tuple[str, ...]:
        """The events POST /feedback accepts: a list of distinct names the scorer takes."""
        value = self._raw.get("feedbackEvents")
        if value is None or str(value).strip() == "":
            return tuple(self._defaults["feedbackEvents"])
        try:
            parsed = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            parsed = value
        allowed = (
            "a non-empty list of distinct event names (1-32 characters a-z, 0-9, '_', '-'), "
            'e.g. ["click", "purchase"]'
        )
        if not isinstance(parsed, list) or not parsed:
            raise self.fail("feedbackEvents", allowed, value)
        for name in parsed:
            if not isinstance(name, str) or not FEEDBACK_EVENT.match(name):
                raise self.fail("feedbackEvents", allowed, name)
        repeated = sorted({name for name in parsed if parsed.count(name) > 1})
        if repeated:
            raise self.fail("feedbackEvents", allowed + f"; repeated: {', '.join(repeated)}", value)
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

    def promote_from(self, stack: str) -> str | None:
        value = self.text("promoteFrom")
        if not value:
            return None
        if not STACK_REF.match(value):
            raise self.fail("promoteFrom", "a stack name like dev (or organization/project/stack)", value)
        if value == stack:
            raise self.fail("promoteFrom", "another stack than this one", value)
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
