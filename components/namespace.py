"""The namespace the stack owns: the restricted Pod Security Standard enforced on every pod, and no
network traffic to or from any pod but what a release's own NetworkPolicies allow
(components/release_guards.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.labels import object_metadata

# Admission rejects any pod that is not "restricted" (non-root, no privilege escalation, seccomp,
# capabilities dropped): a template regression fails loudly instead of running privileged.
POD_SECURITY = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "audit", "warn")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}
DEFAULT_DENY = "default-deny"


@dataclass(frozen=True)
class NamespaceArgs:
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


class Namespace(pulumi.ComponentResource):
    name: str
    namespace: k8s.core.v1.Namespace
    default_deny: k8s.networking.v1.NetworkPolicy

    def __init__(self, name: str, args: NamespaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlpipeline:namespace:Namespace", name, None, opts)
        self.name = args.name
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": args.name,
                "labels": {**args.labels, **POD_SECURITY},
                "annotations": dict(args.annotations),
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Every pod of the namespace: no ingress, no egress, unless a policy of its own allows it.
        self.default_deny = k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata=object_metadata(DEFAULT_DENY, args.name, args.labels, args.annotations),
            spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
        )
        self.register_outputs({"name": self.name})
