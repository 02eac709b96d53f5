"""Evaluate the Pulumi program under mocks: every resource it declares, with its inputs, and its outputs.

The one mock harness: it runs `__main__.py` (or, for component tests, any function declaring
resources: `render_components`) without a Pulumi engine. Used by the tests, the benchmark and
`make demo` (which plays the rendered Job and Deployment as local processes):

    rendering = render("local", {"build": "153"})
    rendering = render("local", {"build": "154"}, previous_releases=rendering.outputs["releases"])
    rendering.k8s("Job")          # [{"apiVersion": "batch/v1", "kind": "Job", "metadata": ..., "spec": ...}]

What the mocks answer in place of the engine and providers:
  - the stack's StackReference to itself -> `previous_outputs` (all outputs of the last update),
    or {"releases": previous_releases} (absent if None);
    a reference to another stack -> `other_stacks[name]`, else an error (as Pulumi fails);
  - docker.Image -> a repo_digest `<image repo>@sha256:<hex of the name>` when pushed, "" when not,
    unknown in a preview (nothing is built then);
  - the kubelet, asked for a completed training Job's termination messages -> `pod_messages[job]`
    when given (none for a Job it does not name), else what the mocked trainer of each declared Job
    leaves (`mock_trainer_message`: the summary's shape, digests derived from the Job's name);
  - Azure resources -> their names, the registry's login server; the list-keys/credentials
    invokes -> the fake secrets in MOCK_SECRETS, so tests can check that they never leak.

Each call runs in a fresh contextvars.Context with its own event loop, so Pulumi's global
state (settings, root stack, config) does not leak from one evaluation into the next and many
evaluations can run in one process. Config comes from Pulumi.<stack>.yaml (as the CLI reads it;
Pulumi.yaml's defaults are not applied - the program's defaults are in code) overlaid by `config`.

`python -m local.render STACK [KEY=VALUE ...] [--previous FILE]` prints the rendering as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import hashlib
import json
import runpy
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from components import catalogue, sdk_internals, training_results

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "__main__.py"
PROJECT = "mlpipeline"
ORGANIZATION = "organization"  # what get_organization() answers on a self-managed backend
SECRET_KEYS = tuple(key.name for key in catalogue.KEYS if key.secret)  # set as `--secret` would
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


@dataclass
class Rendering:
    stack: str
    config: dict[str, str]
    resources: list[RenderedResource]
    outputs: dict[str, Any]  # stack outputs, secrets in clear
    secret_outputs: set[str] = field(default_factory=set)
    unknown_outputs: set[str] = field(default_factory=set)  # only known after an update (preview)
    result: Any = None  # render_components: what `declare` returned

    def of_type(self, type_: str) -> list[RenderedResource]:
        return [r for r in self.resources if r.type == type_]

    def by_urn(self) -> dict[str, RenderedResource]:
        return {r.urn: r for r in self.resources}

    def one(self, kind: str) -> RenderedResource:
        """The only resource of `kind` (the last part of its type: Job, HTTPRoute, Router...)."""
        return _only([r for r in self.resources if r.kind == kind], f"of kind {kind!r}")

    def depends_on(self, resource: RenderedResource) -> set[str]:
        """Names of the resources `resource` waits for (its explicit and implicit dependencies)."""
        names = {r.urn: r.name for r in self.resources}
        return {names.get(urn, urn) for urn in resource.options.get("dependencies", [])}

    def named(self, name: str) -> RenderedResource:
        return _only([r for r in self.resources if r.name == name], f"named {name!r}")

    def descendants(self, urn: str) -> list[RenderedResource]:
        """Every resource below `urn` in the parent tree."""
        children: dict[str | None, list[RenderedResource]] = {}
        for r in self.resources:
            children.setdefault(r.parent, []).append(r)
        found, todo = [], [urn]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child.urn)
        return found

    def k8s(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Kubernetes objects as manifests (secrets in clear), optionally of one kind."""
        return [r.inputs for r in self.resources if r.is_kubernetes and (kind is None or r.kind == kind)]

    def public_outputs(self) -> dict[str, Any]:
        return {k: (MASK if k in self.secret_outputs else v) for k, v in self.outputs.items()}


def _only(matches: list[RenderedResource], what: str) -> RenderedResource:
    if len(matches) != 1:
        raise KeyError(f"{len(matches)} resources {what}: {[r.name for r in matches]}")
    return matches[0]


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


class _Mocks(pulumi.runtime.Mocks):
    def __init__(
        self,
        stack: str,
        previous: Mapping[str, Any] | None,
        other_stacks: Mapping[str, Any],
        preview: bool = False,
    ):
        self.preview = preview
        self.self_reference = f"{ORGANIZATION}/{PROJECT}/{stack}"
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
        if typ == "docker:index/image:Image":
            image_name = inputs.get("imageName", "")
            pushed = not inputs.get("skipPush", False)
            repo = image_name.rsplit(":", 1)[0]
            digest = f"{repo}@sha256:{_digest(image_name)}" if pushed else ""
            state = {**inputs, "baseImageName": image_name}
            if not self.preview:  # a preview builds nothing: the digest stays unknown, as under the CLI
                state["repoDigest"] = digest
            return f"{image_name}-id", state
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


class _Monitor(sdk_internals.MockMonitor):
    """The stock mock monitor, also keeping what it loses: parents, options, secret markers."""

    def __init__(self, mocks: _Mocks):
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


def stack_config(stack: str) -> dict[str, Any]:
    """The plain values of Pulumi.<stack>.yaml, keys without the project prefix."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists():
        return {}
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    values = {}
    for key, value in (document.get("config") or {}).items():
        namespace, _, name = key.rpartition(":")
        if namespace not in ("", PROJECT):
            continue
        if isinstance(value, Mapping) and "secure" in value:
            continue  # encrypted with the stack's key: only the CLI can read it
        values[name] = value
    return values


def _config_strings(values: Mapping[str, Any]) -> dict[str, str]:
    # Pulumi hands every config value to the program as a string; maps and lists as JSON.
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            text = json.dumps(value)
        else:
            text = str(value)
        out[key if ":" in key else f"{PROJECT}:{key}"] = text
    return out


def render(
    stack: str,
    config: Mapping[str, Any] | None = None,
    previous_releases: Mapping[str, Any] | None = None,
    previous_outputs: Mapping[str, Any] | None = None,
    other_stacks: Mapping[str, Mapping[str, Any]] | None = None,
    use_stack_file: bool = True,
    preview: bool = False,
    pod_messages: Mapping[str, str] | None = None,
) -> Rendering:
    """Run the program for `stack` under mocks and return what it declared and exported.
    `pod_messages`: job name -> the termination message its trainer left (None: the mocked
    trainer's, `mock_trainer_message`)."""
    values = {**(stack_config(stack) if use_stack_file else {}), **(config or {})}
    strings = _config_strings(values)
    context = contextvars.Context()  # fresh Pulumi globals for this evaluation
    previous = (
        previous_outputs
        if previous_outputs is not None
        else (None if previous_releases is None else {"releases": previous_releases})
    )
    return context.run(
        _render,
        stack,
        strings,
        previous,
        dict(other_stacks or {}),
        preview,
        _run_program_file,
        None if pod_messages is None else dict(pod_messages),
    )


def render_components(
    declare: Callable[[], Any],
    stack: str = "dev",
    config: Mapping[str, Any] | None = None,
    previous_outputs: Mapping[str, Any] | None = None,
) -> Rendering:
    """Run `declare` as the whole program (component tests): what it declares, and in `result` what
    it returns (an Output is awaited). Same mocks as `render`, no stack file."""
    strings = _config_strings(config or {})
    return contextvars.Context().run(_render, stack, strings, previous_outputs, {}, False, declare, None)


def _run_program_file() -> None:
    runpy.run_path(str(PROGRAM), run_name="__main__")


def mock_trainer_message(job: Mapping[str, Any]) -> str:
    """What the mocked trainer of the declared Job `job` leaves as its termination message: a line
    for a person, then the summary line apps/trainer writes (trainer.main.summary), its digests
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


def _kubelet(monitor: _Monitor, pod_messages: Mapping[str, str] | None) -> training_results.PodMessages:
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


def _render(stack, strings, previous, other_stacks, preview, declare, pod_messages) -> Rendering:
    mocks = _Mocks(stack, previous, other_stacks, preview)
    monitor = _Monitor(mocks)
    # No cluster under mocks: the trainers' termination messages are the given or the mocked ones.
    training_results.READER.set(_kubelet(monitor, pod_messages))
    policy = asyncio.get_event_loop_policy()
    try:
        outer_loop = policy.get_event_loop()
    except RuntimeError:
        outer_loop = None
    loop = asyncio.new_event_loop()
    policy.set_event_loop(loop)  # Pulumi's runtime schedules its work on the thread's current loop
    try:
        sdk_internals.reset_root_resource()
        pulumi.runtime.set_mocks(
            mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor, organization=ORGANIZATION
        )
        pulumi.runtime.set_all_config(strings, [k for k in strings if k.split(":", 1)[1] in SECRET_KEYS])
        outputs, secret, unknown, result = loop.run_until_complete(_evaluate(declare))
    finally:
        policy.set_event_loop(outer_loop)  # leave the caller's loop (e.g. other Pulumi tests') in place
        loop.close()
    return Rendering(
        stack=stack,
        config=strings,
        resources=monitor.registered,
        outputs=outputs,
        secret_outputs=secret,
        unknown_outputs=unknown,
        result=result,
    )


async def _evaluate(declare: Callable[[], Any]) -> tuple[dict[str, Any], set[str], set[str], Any]:
    failure: list[BaseException] = []
    returned: list[Any] = []

    def program() -> None:
        try:
            returned.append(declare())
        except BaseException as exc:  # noqa: BLE001 - reported after the runtime settles
            failure.append(exc)
            raise

    try:
        await sdk_internals.run_program(program)
    except BaseException as exc:  # noqa: BLE001
        raise (failure[0] if failure else RenderError(str(exc))) from None
    stack = pulumi.runtime.get_root_resource()
    outputs, secret, unknown = {}, set(), set()
    for key, value in (stack.outputs if isinstance(stack, pulumi.runtime.stack.Stack) else {}).items():
        # An Output's value is plain data already; deep-unwrapping it again costs O(size) Outputs.
        output = value if isinstance(value, pulumi.Output) else pulumi.Output.from_input(value)
        outputs[key] = await output.future(with_unknowns=True)
        if await output.is_secret():
            secret.add(key)
        if not await output.is_known():
            unknown.add(key)
    result = returned[0] if returned else None
    if isinstance(result, pulumi.Output):
        result = await result.future()
    return outputs, secret, unknown, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stack")
    parser.add_argument("config", nargs="*", help="KEY=VALUE (VALUE may be JSON)")
    parser.add_argument("--previous", type=Path, help="JSON file with the previous `releases` output")
    args = parser.parse_args(argv)
    config = {}
    for item in args.config:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"{item!r} is not KEY=VALUE")
        config[key] = value
    previous = json.loads(args.previous.read_text()) if args.previous else None
    rendering = render(args.stack, config, previous_releases=previous)
    json.dump(
        {
            "outputs": rendering.public_outputs(),
            "resources": [
                {"type": r.type, "name": r.name, "parent": r.parent, "inputs": r.public_inputs}
                for r in rendering.resources
            ],
        },
        sys.stdout,
        indent=2,
        default=str,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
