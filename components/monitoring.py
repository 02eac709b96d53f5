"""How Prometheus watches the releases. With `monitoring: prometheus-operator`, a ServiceMonitor
scrapes every release's scorer Service and a PrometheusRule carries monitoring/alerts.yml plus the
router's intended split (mlpipeline:traffic_weight_percent per live build, role champion or
canary), which the alerts on a release without traffic and on a canary worse than its champion
compare with. With `annotations`, the scorer pods' prometheus.io/* annotations (release_spec)
are all a Prometheus needs, and nothing is declared here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import labels

MONITORING_KINDS = ("annotations", "prometheus-operator")
ALERTS = Path(__file__).resolve().parent.parent / "monitoring" / "alerts.yml"
TRAFFIC_GROUP = "mlpipeline-traffic"
SCRAPE_INTERVAL = "30s"
# What every release's scorer Service carries (release_spec: labels.recommended), and the router's
# stable Service does not (its component is "router").
SCORER_SERVICES = {
    "app.kubernetes.io/name": "scorer",
    "app.kubernetes.io/component": "scoring",
    "app.kubernetes.io/part-of": labels.PART_OF,
}


def traffic_group(namespace: str, weights: Mapping[str, int], champion: str) -> dict[str, Any]:
    """One constant series per build the router gives traffic: its percent, and whether it is the
    champion (the build holding most traffic) or a canary."""
    return {
        "name": TRAFFIC_GROUP,
        "rules": [
            {
                "record": "mlpipeline:traffic_weight_percent",
                "expr": f"vector({int(weight)})",
                "labels": {
                    "namespace": namespace,
                    "build": build,
                    "role": "champion" if build == champion else "canary",
                },
            }
            for build, weight in weights.items()
            if weight > 0
        ],
    }


def rule_groups(namespace: str, weights: Mapping[str, int], champion: str) -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    traffic = traffic_group(namespace, weights, champion)
    return groups + ([traffic] if traffic["rules"] else [])


@dataclass(frozen=True)
class MonitoringArgs:
    kind: str  # one of MONITORING_KINDS
    namespace: str
    weights: Mapping[str, int]  # the router's split: build -> percent
    champion: str  # the build holding most traffic
    labels: Mapping[str, str]  # the stack's labels plus the operator's selector (monitoringLabels)


class Monitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlpipeline:monitoring:Monitoring", name, None, opts)
        kind, namespace, weights, champion = args.kind, args.namespace, args.weights, args.champion
        self.kind = kind
        child = pulumi.ResourceOptions(parent=self)
        if kind == "prometheus-operator":
            metadata = {"namespace": namespace, "labels": dict(args.labels)}
            k8s.apiextensions.CustomResource(
                f"{name}-servicemonitor",
                api_version="monitoring.coreos.com/v1",
                kind="ServiceMonitor",
                metadata={**metadata, "name": "scorer"},
                spec={
                    "selector": {"matchLabels": dict(SCORER_SERVICES)},
                    "namespaceSelector": {"matchNames": [namespace]},
                    "endpoints": [{"port": "http", "path": "/metrics", "interval": SCRAPE_INTERVAL}],
                },
                opts=child,
            )
            k8s.apiextensions.CustomResource(
                f"{name}-rules",
                api_version="monitoring.coreos.com/v1",
                kind="PrometheusRule",
                metadata={**metadata, "name": "scorer-alerts"},
                spec={"groups": rule_groups(namespace, weights, champion)},
                opts=child,
            )
        self.register_outputs({"kind": kind})
