"""The stable address in front of the live releases: weighted split, header pin, shadow mirror.

Three kinds (config `router`), one plan (components/traffic.py):

    gateway  Gateway API HTTPRoute attached to an existing Gateway: one rule per live release
             pinning `x-model-build: <build>` to it, one rule splitting the rest by weight,
             optionally mirroring a share of it to the shadow release.
    istio    the same as a VirtualService over subsets of a DestinationRule, behind a stable
             Service that selects every live release's pods (clients in the mesh or via the
             Istio gateway follow the VirtualService; the subsets do the split).
    service  no mesh, no gateway: a stable Service whose selector is the one serving release's
             pod labels. Blue/green by label switch; no split, no pin, no mirror.

Gated rollout: every routing object depends on the Deployments of the releases it sends
requests to, and pulumi-kubernetes only finishes a Deployment once it is Available, which the
waiter init container allows only after the checksums and the quality gate pass. A release that
never gets Ready fails the update before any traffic moves to it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.core.v1 import Service, ServicePortArgs, ServiceSpecArgs
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.build import Build
from components.traffic import TrafficPlan

ROUTER_KINDS = ("gateway", "istio", "service")
PIN_HEADER = "x-model-build"
# An HTTPRoute holds at most 16 rules: one pin per live release plus the split.
MAX_GATEWAY_RELEASES = 15
MAX_HOSTNAMES = 16
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class RouterError(ValueError):
    """Router settings that cannot work together; the message says what to change."""


class Routed(Protocol):
    """What the router reads of a live release (components/release.py Release has it all)."""

    @property
    def build(self) -> Build: ...  # its id is the pin header value; its DNS form names subsets and rules

    @property
    def service_name(self) -> str: ...  # the release's own Service

    @property
    def service_port(self) -> int: ...  # that Service's port

    @property
    def target_port(self) -> int: ...  # the scorer container's port: stable Services select pods directly

    @property
    def selector_labels(self) -> Mapping[str, str]: ...  # labels selecting exactly this release's pods

    @property
    def deployment(self) -> pulumi.Resource: ...  # traffic waits for it to be Ready


@dataclass(frozen=True)
class GatewayRef:
    """The Gateway (Gateway API) or Istio Gateway the route attaches to."""

    name: str
    namespace: str | None = None
    section_name: str | None = None  # a listener of the Gateway (Gateway API only)

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | str | None) -> GatewayRef | None:
        """`{"name": "web", "namespace": "infra", "sectionName": "https"}` or `"infra/web"`."""
        if not raw:
            return None
        if isinstance(raw, str):
            namespace, _, name = raw.rpartition("/")
            return cls(name=name, namespace=namespace or None)
        unknown = sorted(set(raw) - {"name", "namespace", "sectionName"})
        if unknown or not raw.get("name"):
            raise RouterError(
                f"gateway {dict(raw)} must name the Gateway: keys name (required), namespace, "
                f"sectionName{f'; unknown keys {unknown}' if unknown else ''}"
            )
        return cls(raw["name"], raw.get("namespace"), raw.get("sectionName"))


def check_router(
    kind: str, plan: TrafficPlan, gateway: GatewayRef | None = None, hostnames: Sequence[str] = ()
) -> None:
    """Reject router settings the chosen kind cannot carry out. Call before declaring anything."""
    if kind not in ROUTER_KINDS:
        raise RouterError(f"router must be one of {', '.join(ROUTER_KINDS)}, got {kind!r}")
    bad = [host for host in hostnames if not _HOSTNAME.match(host) or len(host) > 253]
    if bad:
        raise RouterError(f"hostnames {bad} are not DNS names (lowercase, optional leading '*.')")
    if len(hostnames) > MAX_HOSTNAMES:
        raise RouterError(f"at most {MAX_HOSTNAMES} hostnames, got {len(hostnames)}")
    if kind == "gateway":
        if gateway is None:
            raise RouterError("router 'gateway' needs config `gateway`: the Gateway to attach the route to")
        if len(plan.weights) > MAX_GATEWAY_RELEASES:
            raise RouterError(
                f"router 'gateway' routes at most {MAX_GATEWAY_RELEASES} live releases (an HTTPRoute "
                f"holds 16 rules), {len(plan.weights)} are live: lower keepReleases"
            )
    elif kind == "istio":
        if gateway is not None and gateway.section_name:
            raise RouterError("gateway.sectionName is a Gateway API listener; router 'istio' has none")
    else:
        if gateway is not None or hostnames:
            raise RouterError(
                "router 'service' has no gateway or hostnames; remove them or pick gateway/istio"
            )
        if len(plan.serving) != 1:
            split = {build: weight for build, weight in plan.weights.items() if weight}
            raise RouterError(
                f"router 'service' switches all traffic to one build (blue/green); {split} is a split: "
                "give one build 100 or use router gateway/istio"
            )
        if plan.shadow is not None:
            raise RouterError("router 'service' cannot mirror traffic: shadow needs router gateway or istio")


@dataclass(frozen=True)
class RouterArgs:
    kind: str  # one of ROUTER_KINDS
    releases: Sequence[Routed]  # the live releases (Release objects), oldest first, as the plan names them
    plan: TrafficPlan
    namespace: pulumi.Input[str] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    gateway: GatewayRef | None = None
    hostnames: Sequence[str] = ()


class Router(pulumi.ComponentResource):
    """Routes the stable address across `args.releases` as `args.plan` says."""

    def __init__(self, name: str, args: RouterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlpipeline:router:Router", name, None, opts)
        kind, releases, plan, gateway, hostnames = (
            args.kind,
            args.releases,
            args.plan,
            args.gateway,
            args.hostnames,
        )
        check_router(kind, plan, gateway, hostnames)
        if [r.build.id for r in releases] != list(plan.weights):
            raise RouterError(
                f"router releases {[r.build.id for r in releases]} differ from the traffic plan's "
                f"live builds {list(plan.weights)}"
            )
        self._name = name
        self._namespace = args.namespace
        self._labels = {**args.labels, "app.kubernetes.io/component": "router"}
        self._annotations = dict(args.annotations)
        self._releases = {release.build.id: release for release in releases}
        self._plan = plan

        self.weights: dict[str, int] = dict(plan.weights)
        self.champion: str = plan.champion
        self.shadow: str | None = plan.shadow.build if plan.shadow else None
        # In-cluster address of the stable Service (istio, service); the Gateway's own address
        # plus `hostnames` for router gateway.
        self.service_name: pulumi.Output[str] | None = None
        if kind == "gateway":
            assert gateway is not None  # check_router requires it
            self._http_route(gateway, hostnames)
        elif kind == "istio":
            self._virtual_service(gateway, hostnames)
        else:
            self._switched_service()
        self.register_outputs({"weights": self.weights, "champion": self.champion, "shadow": self.shadow})

    # --- kinds ---------------------------------------------------------------------------------

    def _http_route(self, gateway: GatewayRef, hostnames: Sequence[str]) -> None:
        parent = {"name": gateway.name}
        if gateway.namespace:
            parent["namespace"] = gateway.namespace
        if gateway.section_name:
            parent["sectionName"] = gateway.section_name
        # Header matches outrank a bare path match (Gateway API precedence), so a pinned request
        # never falls into the split.
        rules: list[dict[str, Any]] = [
            {
                "matches": [{"headers": [{"type": "Exact", "name": PIN_HEADER, "value": r.build.id}]}],
                "backendRefs": [self._backend_ref(r)],
            }
            for r in self._releases.values()
        ]
        split: dict[str, Any] = {
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [
                {**self._backend_ref(self._releases[build]), "weight": weight}
                for build, weight in self._plan.weights.items()
            ],
        }
        if self._plan.shadow:
            split["filters"] = [
                {
                    "type": "RequestMirror",
                    "requestMirror": {
                        "backendRef": self._backend_ref(self._releases[self._plan.shadow.build]),
                        "percent": self._plan.shadow.percent,
                    },
                }
            ]
        rules.append(split)
        spec: dict[str, Any] = {"parentRefs": [parent], "rules": rules}
        if hostnames:
            spec["hostnames"] = list(hostnames)
        CustomResource(
            f"{self._name}-httproute",
            api_version="gateway.networking.k8s.io/v1",
            kind="HTTPRoute",
            metadata=self._metadata(),
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._gates()),
        )

    def _virtual_service(self, gateway: GatewayRef | None, hostnames: Sequence[str]) -> None:
        service = self._stable_service(_shared_labels(self._releases.values()), self._champion_release())
        host = self._name  # the stable Service, by short name: same namespace as the rules
        rule = CustomResource(
            f"{self._name}-destinationrule",
            api_version="networking.istio.io/v1",
            kind="DestinationRule",
            metadata=self._metadata(),
            spec={
                "host": host,
                "subsets": [
                    {"name": _subset(r), "labels": dict(r.selector_labels)} for r in self._releases.values()
                ],
            },
            opts=pulumi.ResourceOptions(parent=self),
        )

        def destination(build: str) -> dict[str, Any]:
            release = self._releases[build]
            return {"host": host, "subset": _subset(release), "port": {"number": release.service_port}}

        http: list[dict[str, Any]] = [
            {
                "name": f"pin-{r.build.dns}",
                "match": [{"headers": {PIN_HEADER: {"exact": r.build.id}}}],
                "route": [{"destination": destination(r.build.id)}],
            }
            for r in self._releases.values()
        ]
        split: dict[str, Any] = {
            "name": "split",
            "route": [
                {"destination": destination(build), "weight": weight}
                for build, weight in self._plan.weights.items()
            ],
        }
        if self._plan.shadow:
            split["mirror"] = destination(self._plan.shadow.build)
            split["mirrorPercentage"] = {"value": float(self._plan.shadow.percent)}
        http.append(split)
        spec: dict[str, Any] = {"hosts": [host, *hostnames], "http": http}
        if gateway is not None:
            spec["gateways"] = [
                f"{gateway.namespace}/{gateway.name}" if gateway.namespace else gateway.name,
                "mesh",  # keep routing in-mesh clients too, not only the gateway's
            ]
        CustomResource(
            f"{self._name}-virtualservice",
            api_version="networking.istio.io/v1",
            kind="VirtualService",
            metadata=self._metadata(),
            spec=spec,
            # Subsets must exist before a route names them, or Envoy answers 503 meanwhile.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[service, rule, *self._gates()]),
        )

    def _switched_service(self) -> None:
        (active,) = self._plan.serving
        release = self._releases[active]
        self._stable_service(dict(release.selector_labels), release, depends_on=self._gates())

    # --- parts ---------------------------------------------------------------------------------

    def _stable_service(
        self, selector: dict[str, str], release: Routed, depends_on: list[pulumi.Resource] | None = None
    ) -> Service:
        service = Service(
            f"{self._name}-service",
            metadata=ObjectMetaArgs(
                name=self._name,
                namespace=self._namespace,
                labels=self._labels,
                annotations=self._annotations,
            ),
            spec=ServiceSpecArgs(
                type="ClusterIP",
                selector=selector,
                # Named and typed http so a mesh applies L7 routing to it.
                ports=[
                    ServicePortArgs(
                        name="http",
                        app_protocol="http",
                        port=release.service_port,
                        target_port=release.target_port,
                        protocol="TCP",
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on or []),
        )
        self.service_name = service.metadata.name
        return service

    def _backend_ref(self, release: Routed) -> dict[str, Any]:
        return {"name": release.service_name, "port": release.service_port}

    def _gates(self) -> list[pulumi.Resource]:
        """Deployments that must be Ready before this routing takes effect."""
        builds = list(self._plan.serving)
        if self._plan.shadow:
            builds.append(self._plan.shadow.build)
        return [self._releases[b].deployment for b in builds]

    def _champion_release(self) -> Routed:
        return self._releases[self._plan.champion]

    def _metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self._name, "labels": self._labels}
        if self._namespace is not None:
            metadata["namespace"] = self._namespace
        if self._annotations:
            metadata["annotations"] = self._annotations
        return metadata


def _subset(release: Routed) -> str:
    return f"build-{release.build.dns}"


def _shared_labels(releases: Any) -> dict[str, str]:
    """Labels every live release's pods carry: the stable Service selects all of them and the
    DestinationRule subsets tell them apart."""
    label_sets = [dict(r.selector_labels) for r in releases]
    shared = {k: v for k, v in label_sets[0].items() if all(s.get(k) == v for s in label_sets[1:])}
    if len(label_sets) > 1 and not shared:
        raise RouterError("the live releases' selector labels share nothing a stable Service could select")
    return shared


def router_peers(router: str, gateway: GatewayRef | None, namespace: str) -> tuple[dict[str, Any], ...]:
    """Who sends the scorer its requests, by router kind (the default of scorerIngressFrom)."""
    if router == "gateway":  # the Gateway's implementation runs in the Gateway's namespace
        gateway_namespace = (gateway.namespace if gateway else None) or namespace
        return ({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": gateway_namespace}}},)
    if router == "istio":
        return (
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
                "podSelector": {"matchLabels": {"istio": "ingressgateway"}},
            },
        )
    return ({"namespaceSelector": {}},)  # service: the stable Service is an address for the cluster
