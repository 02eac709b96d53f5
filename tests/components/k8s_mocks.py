"""Render components under Pulumi mocks and keep what reached the engine.

`render(declare)` runs `declare()` as a Pulumi program (`@pulumi.runtime.test`, so every
registration and output is really awaited) and returns each registered resource with its
inputs, explicit + implicit dependencies and custom timeouts, as the engine would see them.
Secrets stay wrapped in the inputs (so a test can check they arrive as secrets);
`Registered.object()` unwraps them to give the Kubernetes object to validate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

from local.render import reveal_secrets as unwrap_secrets


@dataclass
class Registered:
    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    dependencies: list[str]  # URNs
    state: dict[str, Any]  # what the (mock) provider answered: auto-names filled in
    timeouts: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]

    def object(self) -> dict[str, Any]:
        return unwrap_secrets(self.inputs)


class K8sMocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ.startswith("kubernetes:"):
            metadata = dict(state.get("metadata") or {})
            metadata.setdefault("name", f"{args.name}-a1b2c3")  # auto-naming appends a suffix
            state["metadata"] = metadata
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class RecordingMonitor(MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registered: list[Registered] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        timeouts = request.customTimeouts
        self.registered.append(
            Registered(
                type=request.type,
                name=request.name,
                urn=response.urn,
                inputs=rpc.deserialize_properties(request.object),
                dependencies=list(request.dependencies),
                state=self.resources[response.urn].state if response.urn in self.resources else {},
                timeouts={
                    k: getattr(timeouts, k) for k in ("create", "update", "delete") if getattr(timeouts, k)
                },
            )
        )
        return response


@dataclass
class Rendering:
    resources: list[Registered]
    result: Any = None

    def of_kind(self, kind: str) -> list[Registered]:
        return [r for r in self.resources if r.kind == kind]

    def one(self, kind: str) -> Registered:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, rendered {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> Registered:
        (found,) = [r for r in self.resources if r.name == name]
        return found

    def depends_on(self, resource: Registered) -> set[str]:
        """Names of the resources `resource` waits for."""
        by_urn = {r.urn: r.name for r in self.resources}
        return {by_urn.get(urn, urn) for urn in resource.dependencies}

    def children_of(self, component_type: str) -> list[Registered]:
        return [r for r in self.resources if f"{component_type}$" in r.urn]


def render(declare: Callable[[], Any], stack: str = "dev") -> Rendering:
    """Run `declare` as a Pulumi program under mocks; an Output it returns is awaited."""
    mocks = K8sMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="mlpipeline", stack=stack, preview=False, monitor=monitor)
    rendering = Rendering(monitor.registered)

    @pulumi.runtime.test
    def program():
        result = declare()
        if isinstance(result, pulumi.Output):
            return result.apply(lambda value: setattr(rendering, "result", value))
        rendering.result = result
        return None

    program()
    return rendering


def contains_secret(value: Any) -> bool:
    if rpc.is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)
    return False
