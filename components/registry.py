"""The image registry of a `cloud: azure` stack: Azure Container Registry + an image pull Secret.

Credentials: the registry's admin user. A repository-scoped token would be narrower, but its
password cannot be created declaratively with pulumi-azure-native, and the cluster is not ours to
attach to the registry (the stack only gets a kubeconfig). The admin password flows only as a
secret: into the image builds' push credentials and into the `kubernetes.io/dockerconfigjson`
Secret the pods pull with. `cloud: local` has no registry (images stay in the local daemon).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import containerregistry

from components.azure_group import AzureGroup, global_name
from components.labels import object_metadata

PULL_SECRET = "registry-pull"


@dataclass(frozen=True)
class RegistryArgs:
    namespace: str
    azure: AzureGroup
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


def docker_config_json(server: str, username: str, password: str) -> str:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {server: {"username": username, "password": password, "auth": auth}}})


def pull_secret(
    resource_name: str,
    metadata: Mapping,
    server: pulumi.Input[str],
    username: pulumi.Input[str],
    password: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Secret:
    """The image pull Secret of one registry; its whole content stays a Pulumi secret."""
    config: pulumi.Input[str] = pulumi.Output.all(server, username, password).apply(
        lambda parts: docker_config_json(*parts)
    )
    return k8s.core.v1.Secret(
        resource_name,
        metadata=metadata,
        type="kubernetes.io/dockerconfigjson",
        string_data={".dockerconfigjson": pulumi.Output.secret(config)},
        opts=opts,
    )


class Registry(pulumi.ComponentResource):
    server: pulumi.Output[str]  # login server, e.g. mlpabc.azurecr.io
    username: pulumi.Output[str]
    password: pulumi.Output[str]  # secret; never registered as an output of this component
    pull_secret_name: str
    pull_secret: k8s.core.v1.Secret

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlpipeline:registry:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        acr = containerregistry.Registry(
            f"{name}-acr",
            registry_name=global_name("mlp", args.azure.unique_suffix),
            resource_group_name=args.azure.name,
            location=args.azure.location,
            sku={"name": "Basic"},
            admin_user_enabled=True,
            tags=dict(args.azure.tags),
            opts=child,
        )
        credentials = containerregistry.list_registry_credentials_output(
            resource_group_name=args.azure.name,
            registry_name=acr.name,
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        self.server = acr.login_server
        self.username = credentials.username.apply(lambda u: u or "")
        self.password = pulumi.Output.secret(
            credentials.passwords.apply(lambda ps: ps[0].value if ps else "")
        )
        self.pull_secret_name = PULL_SECRET
        self.pull_secret = pull_secret(
            f"{name}-pull-secret",
            object_metadata(PULL_SECRET, args.namespace, args.labels, args.annotations),
            self.server,
            self.username,
            self.password,
            opts=child,
        )
        self.register_outputs({"server": self.server, "pullSecretName": self.pull_secret_name})
