"""What surrounds one release's pods: who may reach them, how many run, how many a drain may take.

    NetworkPolicy score-<dns>     ingress to the scorer pods only from the router / gateway and the
                                  metrics scraper (`scorerIngressFrom`, `metricsScrapers`), on the
                                  scorer's port; no egress (the namespace denies by default)
    NetworkPolicy <job>-<dns>     egress of the training (or promotion) pods only to DNS and the
                                  storage endpoint; no ingress
    PodDisruptionBudget score-<dns>  a node drain takes one scorer pod at a time
    HorizontalPodAutoscaler score-<dns>  CPU; `minReplicas`..`maxReplicas`, for every release: one
                                  without traffic has no load and sits at its minimum by itself

Each Release declares its own guards (components/release.py), as its children: retiring the release
deletes them. They are not in the release record, which is what the release *is* and never changes;
what they take from the stack is its `OperatingPolicy` (scale bounds, ingress sources, the storage
egress), the one thing that still reaches every live release, so that an operator raising
`maxReplicas` during an incident reaches the release that serves. Nothing else of a kept release
follows the config or the traffic. A kept release recorded before the guards existed gets them too;
without its NetworkPolicy the namespace's default deny would cut it off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pulumi
import pulumi_kubernetes as k8s

from components.labels import object_metadata

CPU_UTILIZATION = 70  # percent of the scorer's CPU request the autoscaler aims at
DNS = {  # the cluster DNS (CoreDNS / kube-dns in kube-system), UDP and TCP
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
}


@dataclass(frozen=True)
class OperatingPolicy:
    """The stack's operating policy around every live release (config minReplicas, maxReplicas,
    scorerIngressFrom + metricsScrapers, and the training data's endpoint): the documented exception
    to "an update touches nothing of an older release" (components/README.md)."""

    min_replicas: int
    max_replicas: int
    ingress_from: Sequence[Mapping[str, Any]]  # NetworkPolicy peers: router / gateway, scraper
    job_egress: Sequence[Mapping[str, Any]] = ()  # NetworkPolicy egress rules beyond DNS


@dataclass(frozen=True)
class ReleaseGuardsArgs:
    namespace: str
    score_name: str  # the scorer Deployment's name: score-<dns>
    score_selector: Mapping[str, str]  # exactly this release's scorer pods
    port: int  # the scorer's container port
    job_name: str  # train-<dns> or promote-<dns>
    job_pod_labels: Mapping[str, str]  # the Job's pod template labels
    policy: OperatingPolicy
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


def manifests(args: ReleaseGuardsArgs) -> dict[str, dict[str, Any]]:
    """The four objects, as Kubernetes has them (tests and checkov read these)."""

    def metadata(name: str) -> dict[str, Any]:
        return object_metadata(name, args.namespace, args.labels, args.annotations)

    selector = {"matchLabels": dict(args.score_selector)}
    return {
        "scorer_policy": {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(args.score_name),
            "spec": {
                "podSelector": selector,
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [dict(peer) for peer in args.policy.ingress_from],
                        "ports": [{"port": args.port, "protocol": "TCP"}],
                    }
                ],
                "egress": [],
            },
        },
        "job_policy": {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(args.job_name),
            "spec": {
                "podSelector": {"matchLabels": dict(args.job_pod_labels)},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": [DNS, *[dict(rule) for rule in args.policy.job_egress]],
            },
        },
        "budget": {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(args.score_name),
            "spec": {
                "selector": selector,
                "maxUnavailable": 1,
                # a pod that is not Ready (a model below the gate) never blocks a node drain
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        },
        "autoscaler": {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(args.score_name),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": args.score_name},
                "minReplicas": args.policy.min_replicas,
                "maxReplicas": args.policy.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": CPU_UTILIZATION},
                        },
                    }
                ],
            },
        },
    }


_Resource = TypeVar("_Resource", bound=pulumi.CustomResource)


class ReleaseGuards(pulumi.ComponentResource):
    scorer_policy: k8s.networking.v1.NetworkPolicy
    job_policy: k8s.networking.v1.NetworkPolicy
    budget: k8s.policy.v1.PodDisruptionBudget
    autoscaler: k8s.autoscaling.v2.HorizontalPodAutoscaler

    def __init__(self, name: str, args: ReleaseGuardsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlpipeline:release_guards:ReleaseGuards", name, None, opts)
        objects = manifests(args)

        def declare(kind: Callable[..., _Resource], suffix: str, key: str) -> _Resource:
            obj = objects[key]
            return kind(
                f"{name}-{suffix}",
                metadata=obj["metadata"],
                spec=obj["spec"],
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.scorer_policy = declare(k8s.networking.v1.NetworkPolicy, "scorer-policy", "scorer_policy")
        self.job_policy = declare(k8s.networking.v1.NetworkPolicy, "job-policy", "job_policy")
        self.budget = declare(k8s.policy.v1.PodDisruptionBudget, "budget", "budget")
        self.autoscaler = declare(k8s.autoscaling.v2.HorizontalPodAutoscaler, "autoscaler", "autoscaler")
        self.register_outputs(
            {"minReplicas": args.policy.min_replicas, "maxReplicas": args.policy.max_replicas}
        )
