"""The namespace the stack owns, enforcing the restricted Pod Security Standard on every pod."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

# Admission rejects any pod that is not "restricted" (non-root, no privilege escalation, seccomp,
# capabilities dropped): a template regression fails loudly instead of running privileged.
POD_SECURITY = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@dataclass(frozen=True)
class NamespaceArgs:
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


class Namespace(pulumi.ComponentResource):
    name: str
    namespace: k8s.core.v1.Namespace

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
        self.register_outputs({"name": self.name})
