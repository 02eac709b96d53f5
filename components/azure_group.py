"""The Azure resource group of a `cloud: azure` stack, and a stable suffix for global names.

Storage account and registry names are global across Azure, lowercase alphanumerics only: they
are derived from the subscription, the group and the stack, so they stay the same on every
`pulumi up` of this stack and differ between stacks and subscriptions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import authorization, resources


@dataclass(frozen=True)
class AzureGroupArgs:
    name: str
    location: str
    tags: Mapping[str, str]


class AzureGroup(pulumi.ComponentResource):
    name: pulumi.Output[str]
    location: str
    tags: Mapping[str, str]
    unique_suffix: pulumi.Output[str]  # 16 hex characters

    def __init__(self, name: str, args: AzureGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlpipeline:azure_group:AzureGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        group = resources.ResourceGroup(
            f"{name}-group",
            resource_group_name=args.name,
            location=args.location,
            tags=dict(args.tags),
            opts=child,
        )
        subscription = authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))
        self.name = group.name
        self.location = args.location
        self.tags = args.tags
        self.unique_suffix = subscription.subscription_id.apply(
            lambda sid: hashlib.sha256(f"{sid}/{args.name}".encode()).hexdigest()[:16]
        )
        self.register_outputs({"name": self.name})


def global_name(prefix: str, suffix: pulumi.Input[str]) -> pulumi.Output[str]:
    """`prefix` + suffix, the shape storage accounts (3-24) and registries (5-50) accept."""
    return pulumi.Output.concat(prefix, suffix)
