"""The settings catalogue: every config key of the stack (namespace `mlpipeline:`) with its name, Pulumi
type, default and description, written once, here.

`Pulumi.yaml`'s `config:` block and the Config table of components/README.md are generated from it:
`python -m components.catalogue --write` regenerates both, `--check` (and tests/components/
test_catalogue.py, in `make test`) fails when either is stale. Defaults live here, in code: the
Pulumi CLI applies the defaults of Pulumi.yaml, but unit tests under mocks do not, so both must be
the same, which generating the block guarantees. A default of "" means "worked out in code" (e.g.
from `cloud`); components/settings.py reads and checks the values.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.build import PROJECT_ROOT
from components.drift_limits import DRIFT_FIGURES

NAMESPACE = "mlpipeline"


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
        "How the release's images are made: build (pulumi-docker-build builds apps/ with BuildKit - pushed "
        "to the stack's registry on azure or to localRegistry, else loaded into the local Docker daemon) or "
        "prebuilt (local only: the pods run mlpipeline/<app>:<build>, already built into the nodes' image "
        "store by CI or `docker build`; no image is built, so no image provider).",
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
        "traffic stays at this, warm for a rollback. Operating policy: reaches every live release.",
        1,
        "integer",
    ),
    Key(
        "maxReplicas",
        "Scorer pods per release at most, while it receives requests (the autoscaler scales "
        "on CPU between minReplicas and this). Operating policy: reaches every live release.",
        4,
        "integer",
    ),
    Key(
        "resources",
        "Per-container overrides of requests/limits, e.g. {trainer: {limits: {memory: 8Gi}}}; "
        "containers trainer (a promoting stack: its promote Job), waiter, scorer.",
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
        "The percent of requests a new build joins with when traffic is not set, taken from the "
        "serving builds in proportion; the split is then explicit (a canary), for monitoring.canary or "
        "a person to promote or roll back. 0: in explicit mode it joins warm, without traffic; in auto "
        "mode it takes everything once Ready.",
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
        f"figures {', '.join(DRIFT_FIGURES)} (docs/CONTRACTS.md); at or above warn: a warning on the "
        "model card, at or above fail: "
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
        "cluster. Operating policy: reaches every live release.",
        "",
        None,
    ),
    Key(
        "metricsScrapers",
        "Who may scrape the scorer's /metrics (NetworkPolicy peers). Operating policy: reaches every "
        "live release.",
        [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
        None,
    ),
    Key(
        "feedbackEvents",
        "The events the scorer's POST /feedback accepts (its FEEDBACK_EVENTS), e.g. [click, purchase, "
        "add_to_cart]: distinct names of 1-32 characters a-z, 0-9, '_', '-'. Reaches new releases only.",
        ["click", "purchase"],
        None,
    ),
    Key(
        "feedbackWindowSeconds",
        "How long after a list was served its feedback is accepted and deduplicated (the scorer's "
        "FEEDBACK_WINDOW_SECONDS), 1 to 604800 (a week). Reaches new releases only.",
        86400,
        "integer",
    ),
    Key(
        "feedbackKey",
        "Key (at least 16 bytes) that authenticates the scorer's request ids, so feedback for forged ids "
        "is refused: one Secret of the namespace, mounted as a file into the scorer of new releases "
        "(FEEDBACK_KEY_FILE). Set it with `pulumi config set --secret feedbackKey ...`; a plain value is "
        "refused. Releases deployed without it refuse tagged ids (docs/CONTRACTS.md, section 5).",
        None,
        "string",
        secret=True,
    ),
    Key(
        "promoteFrom",
        "Stack whose releases this stack promotes instead of training (e.g. dev): same image "
        "digests, model copied and verified by sha256 from the source's share, mounted read-only. "
        "The source must be on the same cluster (local) or reachable through its exported Azure share.",
        "",
    ),
)
KEY_NAMES = frozenset(key.name for key in KEYS)
# Keys of earlier versions, and what a stack file should say instead.
RENAMED = {"replicas": "minReplicas (the autoscaler's minimum; maxReplicas its maximum)"}

KEY_NAMES = frozenset(key.name for key in KEYS)
DEFAULTS: dict[str, Any] = {key.name: key.default for key in KEYS}
# Keys of earlier versions, and what a stack file should say instead.
RENAMED = {"replicas": "minReplicas (the autoscaler's minimum; maxReplicas its maximum)"}

# --- the generated views --------------------------------------------------------------------------
PULUMI_YAML = PROJECT_ROOT / "Pulumi.yaml"
README = PROJECT_ROOT / "components" / "README.md"
CONFIG_BLOCK = "config:\n"  # Pulumi.yaml: generated from this line to the end of the file
TABLE_START = "<!-- generated from components/catalogue.py (python -m components.catalogue --write) -->\n"
TABLE_END = "<!-- end of the generated table -->\n"


class StaleError(RuntimeError):
    """A generated file does not match the catalogue (or lacks the place the catalogue goes)."""


def pulumi_config_block() -> str:
    """Pulumi.yaml's `config:` block: every key but the secret ones (a declared secret without a
    default would be required on every stack), typed where Pulumi has the type."""
    config: dict[str, dict[str, Any]] = {}
    for key in KEYS:
        if key.secret:
            continue
        entry: dict[str, Any] = {}
        if key.type is not None:
            entry["type"] = key.type
        entry["description"] = key.description
        if key.default is not None:  # the CLI treats a declared key without default as required
            entry["default"] = key.default
        config[key.name] = entry
    return yaml.safe_dump({"config": config}, sort_keys=False, width=10**6, allow_unicode=True)


def readme_table() -> str:
    """The keys as a Markdown table, for components/README.md."""
    rows = ["| key | default | description |", "|---|---|---|"]
    for key in KEYS:
        if key.secret:
            default = "secret, optional"
        elif key.default is None:
            default = "required"
        elif key.default == "":
            default = "(derived)"
        else:
            default = json.dumps(key.default)
        rows.append(f"| `{key.name}` | {default} | {key.description} |")
    return "\n".join(rows) + "\n"


def _regenerated(path: Path) -> str:
    """`path`'s text with its generated part made from the catalogue."""
    text = path.read_text()
    if path == PULUMI_YAML:
        at = text.find("\n" + CONFIG_BLOCK)
        if at < 0:
            raise StaleError(f"{path} has no top-level `config:` block to generate")
        return text[: at + 1] + pulumi_config_block()
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise StaleError(f"{path} lacks the markers of the generated table ({TABLE_START.strip()} ...)")
    return text[: start + len(TABLE_START)] + readme_table() + text[end:]


def stale() -> list[Path]:
    """The generated files that differ from the catalogue."""
    return [path for path in (PULUMI_YAML, README) if _regenerated(path) != path.read_text()]


def write() -> list[Path]:
    """Regenerate the stale files; returns them."""
    changed = stale()
    for path in changed:
        path.write_text(_regenerated(path))
    return changed


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        for path in write():
            print(f"regenerated {path.relative_to(PROJECT_ROOT)}")
        return 0
    if argv == ["--check"]:
        changed = stale()
        for path in changed:
            print(f"{path.relative_to(PROJECT_ROOT)} is stale: python -m components.catalogue --write")
        return 1 if changed else 0
    print("usage: python -m components.catalogue --write | --check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
