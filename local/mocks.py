"""The mocks local/render.py evaluates the program under: what they answer in place of the engine,
the providers and the kubelet, and what they record of every registration.

  - the stack's StackReference to itself -> the previous outputs `render` was given (absent if
    None); a reference to another stack -> `other_stacks[name]`, else an error (as Pulumi fails);
  - docker_build.Image -> a digest `sha256:<hex of its first tag>` when pushed, "" when not,
    unknown in a preview (nothing is built then); `ref` as the provider gives it;
  - the kubelet, asked for a completed training Job's termination messages -> `pod_messages[job]`
    when given (none for a Job it does not name), else what the mocked trainer of each declared Job
    leaves (`mock_trainer_message`: the summary's shape, digests derived from the Job's name);
  - the API server, asked for the volume bound to a claim -> the declared PersistentVolume reserved
    for it (the Azure share), else a hostPath under MOCK_VOLUMES, as a local provisioner makes;
  - Azure resources -> their names, the registry's login server; the list-keys/credentials
    invokes -> the fake secrets in MOCK_SECRETS, so tests can check that they never leak.

The monitor keeps each registration as a `RenderedResource`: its inputs with secrets in clear (what
a provider would receive) and masked, its parent and the resource options the engine acts on.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from components import sdk_internals, training_results, volume_source

ORGANIZATION = "organization"  # what get_organization() answers on a self-managed backend
MASK = "[secret]"
MOCK_SECRETS = {
    "storage_key": "mock-storage-account-key-8f2b1c",
    "registry_password": "mock-registry-password-41d9e7",
    "subscription": "00000000-mock-subscription-0000",
}


class RenderError(RuntimeError):
    """The program failed under mocks; the message is the program's error."""


@dataclass
class RenderedResource:
    type: str  # e.g. kubernetes:batch/v1:Job, mlpipeline:release:Release
    name: str  # Pulumi resource name
    urn: str
    parent: str | None  # parent URN
    custom: bool
    inputs: dict[str, Any]  # secrets in clear: what a provider would receive
    public_inputs: dict[str, Any]  # the same with every secret value replaced by MASK
    options: dict[str, Any]  # resource options the engine acts on during an update

    @property
    def is_kubernetes(self) -> bool:
        return self.type.startswith("kubernetes:")

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]


def reveal_secrets(value: Any) -> Any:
    """The value with every Pulumi secret wrapper taken off (what Kubernetes would receive)."""
    if sdk_internals.is_secret(value):
        return reveal_secrets(value["value"])
    if isinstance(value, dict):
        return {k: reveal_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal_secrets(v) for v in value]
    return value


def _mask(value: Any) -> Any:
    if sdk_internals.is_secret(value):
        return MASK
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Mocks(pulumi.runtime.Mocks):
    def __init__(
        self,
        project: str,
        stack: str,
        previous: Mapping[str, Any] | None,
        other_stacks: Mapping[str, Any],
        preview: bool = False,
    ):
        self.preview = preview
        self.self_reference = f"{ORGANIZATION}/{project}/{stack}"
        self.previous = previous
        self.other_stacks = other_stacks
        self.seen = threading.local()  # the inputs of the registration this thread is handling

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.seen.inputs = args.inputs
        inputs = dict(args.inputs)
        typ, name = args.typ, args.name
        if typ == "pulumi:pulumi:StackReference":
            if name == self.self_reference:
                outputs = {} if self.previous is None else dict(self.previous)
            elif name in self.other_stacks:
                outputs = dict(self.other_stacks[name])
            else:
                raise RenderError(f"stack {name} does not exist (give it in other_stacks)")
            return name, {**inputs, "outputs": outputs, "secretOutputNames": []}
        if typ == "docker-build:index:Image":
            tag = inputs["tags"][0]
            pushed = inputs.get("push", False)
            digest = f"sha256:{_digest(tag)}" if pushed else ""
            state = dict(inputs)
            if not self.preview:  # a preview builds nothing: the digest stays unknown, as under the CLI
                state |= {"digest": digest, "ref": f"{tag}@{digest}" if pushed else tag}
            return f"{tag}-id", state
        if typ.startswith("azure-native:"):
            return self._azure(typ, name, inputs)
        return f"{name}-id", inputs

    def _azure(self, typ: str, name: str, inputs: dict) -> tuple[str, dict]:
        explicit = {
            "azure-native:resources:ResourceGroup": "resourceGroupName",
            "azure-native:storage:StorageAccount": "accountName",
            "azure-native:storage:FileShare": "shareName",
            "azure-native:storage:BlobContainer": "containerName",
            "azure-native:containerregistry:Registry": "registryName",
        }
        resource_name = inputs.get(explicit.get(typ, ""), name)
        state = {**inputs, "name": resource_name}
        if typ == "azure-native:containerregistry:Registry":
            state["loginServer"] = f"{resource_name}.azurecr.io"
        return f"/subscriptions/{MOCK_SECRETS['subscription']}/{typ}/{resource_name}", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list[tuple[str, str]]]:
        if args.token == "azure-native:storage:listStorageAccountKeys":
            return (
                {"keys": [{"keyName": "key1", "permissions": "Full", "value": MOCK_SECRETS["storage_key"]}]},
                [],
            )
        if args.token == "azure-native:containerregistry:listRegistryCredentials":
            return (
                {
                    "username": args.args.get("registryName", "registry"),
                    "passwords": [{"name": "password", "value": MOCK_SECRETS["registry_password"]}],
                },
                [],
            )
        if args.token == "azure-native:authorization:getClientConfig":
            return (
                {
                    "subscriptionId": MOCK_SECRETS["subscription"],
                    "tenantId": "00000000-mock-tenant",
                    "clientId": "00000000-mock-client",
                    "objectId": "00000000-mock-object",
                },
                [],
            )
        return {}, []  # (result, no check failures)


class Monitor(sdk_internals.MockMonitor):
    """The stock mock monitor, also keeping what it loses: parents, options, secret markers."""

    def __init__(self, mocks: Mocks):
        super().__init__(mocks)
        self._mocks = mocks
        self.registered: list[RenderedResource] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self._record(request, response.urn, custom=bool(request.custom), registered=True)
        return response

    def ReadResource(self, request):
        response = super().ReadResource(request)
        self._record(request, response.urn, custom=True, registered=False)
        return response

    def _record(self, request, urn: str, custom: bool, registered: bool) -> None:
        raw = self._mocks.seen.inputs  # deserialized once, by the stock monitor, secrets still marked
        options = {}
        if registered:
            options = {
                "ignoreChanges": sorted(request.ignoreChanges),
                "replaceOnChanges": sorted(request.replaceOnChanges),
                "deleteBeforeReplace": bool(request.deleteBeforeReplace),
                "protect": bool(request.protect),
                "retainOnDelete": bool(request.retainOnDelete),
                "customTimeouts": {
                    "create": request.customTimeouts.create,
                    "update": request.customTimeouts.update,
                    "delete": request.customTimeouts.delete,
                },
                "dependencies": sorted(request.dependencies),
            }
        self.registered.append(
            RenderedResource(
                type=request.type,
                name=request.name,
                urn=urn,
                parent=request.parent or None,
                custom=custom,
                inputs=reveal_secrets(raw),
                public_inputs=_mask(raw),
                options=options,
            )
        )


def mock_trainer_message(job: Mapping[str, Any]) -> str:
    """What the mocked trainer of the declared Job `job` leaves as its termination message: a line
    for a person, then the summary line apps/trainer writes (trainer.outcome.summary), its digests
    derived from the Job's name as the mocked image digests are from the image's. Nothing trains
    under mocks: no metrics, no family."""
    name = job["metadata"]["name"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    summary = {
        "build": env.get("BUILD_NUMBER"),
        "modelSha256": _digest(f"model of {name}"),
        "gitSha": env.get("GIT_SHA"),
        "trainerImage": env.get("TRAINER_IMAGE"),
        "data": {
            "source": job["metadata"].get("annotations", {}).get("mlpipeline/data"),
            "sha256": _digest(f"data of {name}"),
            "files": None,
            "rowsUsed": None,
        },
        "family": None,
        "params": None,
        "test": None,
        "liftNdcg": None,
        "gatePassed": None,
        "champion": None,
    }
    return f"build {summary['build']} trained under mocks\n" + json.dumps(summary, separators=(",", ":"))


def kubelet(monitor: Monitor, pod_messages: Mapping[str, str] | None) -> training_results.PodMessages:
    """The termination messages of a Job's trainer containers, as the mocks' kubelet answers them."""

    def messages(namespace: str, job: str) -> list[str]:
        if pod_messages is not None:
            return [pod_messages[job]] if job in pod_messages else []
        declared = [
            r.inputs
            for r in list(monitor.registered)
            if r.type == "kubernetes:batch/v1:Job"
            and r.inputs["metadata"]["name"] == job
            and r.inputs["metadata"].get("namespace") == namespace
        ]
        return [mock_trainer_message(manifest) for manifest in declared]

    return messages


MOCK_VOLUMES = "/var/lib/mock-volumes"  # where the mocked provisioner puts a local claim's files


def binder(monitor: Monitor) -> volume_source.BoundVolume:
    """The volume bound to a claim, as the mocks' API server answers: the declared PersistentVolume
    reserved for it (a static one: the Azure share), else what a hostPath provisioner would make."""

    def bound(namespace: str, claim: str) -> dict[str, Any]:
        for r in list(monitor.registered):
            ref = (
                r.inputs.get("spec", {}).get("claimRef")
                if r.type == "kubernetes:core/v1:PersistentVolume"
                else None
            )
            if ref == {"namespace": namespace, "name": claim}:
                return r.inputs["spec"]
        claims = [
            r
            for r in list(monitor.registered)
            if r.type == "kubernetes:core/v1:PersistentVolumeClaim"
            and r.inputs["metadata"]["name"] == claim
            and r.inputs["metadata"].get("namespace") == namespace
        ]
        if not claims:
            raise RenderError(f"no claim {namespace}/{claim} is declared")
        return {
            "hostPath": {"path": f"{MOCK_VOLUMES}/{namespace}-{claim}"},
            "claimRef": {"namespace": namespace, "name": claim},
        }

    return bound
