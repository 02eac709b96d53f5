"""The router for each kind: weights, header pins, shadow mirror, readiness gates, valid objects."""

import copy
import re
from dataclasses import dataclass

import pulumi
import pytest

from components.build import Build
from components.router import GatewayRef, Router, RouterArgs, RouterError, check_router
from components.traffic import plan_traffic
from local.render import Rendering, render_components
from tests.components.crd_schemas import InvalidObject, validate

LIVE = ["151", "152", "153"]


@dataclass(frozen=True)
class StandIn:
    """What the router reads of a release (components/release.py Release), without its objects."""

    build: Build
    service_name: str
    service_port: int
    target_port: int
    selector_labels: dict
    deployment: pulumi.Resource | None = None


def stand_in(build, deployment=None):
    dns = Build(build).dns
    return StandIn(Build(build), f"score-{dns}", 80, 8080, pod_labels(build), deployment)


def pod_labels(build):
    return {
        "app.kubernetes.io/name": "scorer",
        "app.kubernetes.io/part-of": "mlpipeline",
        "app.kubernetes.io/instance": f"score-{build.replace('.', '-')}",
        "app.kubernetes.io/version": build,
    }


DEFAULT_GATEWAY = {
    "gateway": GatewayRef("web", "infra", "https"),
    "istio": GatewayRef("web", "infra"),
    "service": None,
}


def route(kind, traffic=None, shadow=None, live=LIVE, gateway="default", hostnames=()):
    """Render a Router over `live` releases, each with a stand-in Deployment named deploy-<build>."""
    gateway = DEFAULT_GATEWAY[kind] if gateway == "default" else gateway
    plan = plan_traffic(traffic, live, shadow)

    def declare():
        releases = [
            stand_in(build, pulumi.CustomResource("test:index:Deployment", f"deploy-{build}", {}))
            for build in live
        ]
        router = Router(
            "score",
            RouterArgs(
                kind=kind,
                releases=releases,
                plan=plan,
                namespace="ml-dev",
                labels={"app.kubernetes.io/part-of": "mlpipeline", "app.kubernetes.io/managed-by": "pulumi"},
                annotations={"mlpipeline/git-sha": "abc123"},
                gateway=gateway,
                hostnames=hostnames,
            ),
        )
        return router.service_name

    rendering = render_components(declare)
    for child in children(rendering):
        validate(child.inputs)
    return rendering


def children(rendering: Rendering):
    """What the Router declared, in order."""
    return rendering.descendants(rendering.one("Router").urn)


def spec(rendering: Rendering, kind: str) -> dict:
    return rendering.one(kind).inputs["spec"]


def gates(rendering: Rendering, kind: str) -> set[str]:
    return {name for name in rendering.depends_on(rendering.one(kind)) if name.startswith("deploy-")}


# --- gateway ----------------------------------------------------------------------------------


def test_gateway_route_splits_by_weight_and_pins_each_build_by_header():
    rendering = route("gateway", {"152": 90, "153": 10}, hostnames=["reco.example.com"])
    httproute = spec(rendering, "HTTPRoute")
    assert httproute["parentRefs"] == [{"name": "web", "namespace": "infra", "sectionName": "https"}]
    assert httproute["hostnames"] == ["reco.example.com"]
    *pins, split = httproute["rules"]
    assert [(p["matches"], p["backendRefs"]) for p in pins] == [
        (
            [{"headers": [{"type": "Exact", "name": "x-model-build", "value": b}]}],
            [{"name": f"score-{b}", "port": 80}],
        )
        for b in LIVE
    ]
    assert {ref["name"]: ref["weight"] for ref in split["backendRefs"]} == {
        "score-151": 0,
        "score-152": 90,
        "score-153": 10,
    }
    assert "filters" not in split
    meta = rendering.one("HTTPRoute").inputs["metadata"]
    assert meta["name"] == "score" and meta["namespace"] == "ml-dev"
    assert meta["labels"]["app.kubernetes.io/component"] == "router"
    assert meta["annotations"] == {"mlpipeline/git-sha": "abc123"}


def test_gateway_route_waits_only_for_releases_that_get_traffic():
    assert gates(route("gateway", {"152": 90, "153": 10}), "HTTPRoute") == {"deploy-152", "deploy-153"}
    assert gates(route("gateway", None), "HTTPRoute") == {"deploy-153"}


def test_gateway_route_mirrors_a_share_to_the_shadow_and_waits_for_it():
    rendering = route("gateway", {"152": 100}, shadow={"build": "153", "percent": 10})
    split = spec(rendering, "HTTPRoute")["rules"][-1]
    assert split["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": "score-153", "port": 80}, "percent": 10},
        }
    ]
    assert gates(rendering, "HTTPRoute") == {"deploy-152", "deploy-153"}


def test_gateway_router_declares_nothing_but_the_route():
    rendering = route("gateway", None)
    assert [c.kind for c in children(rendering)] == ["HTTPRoute"]
    assert rendering.result is None


def test_builds_with_dots_keep_their_name_in_the_pin_and_a_dns_name_in_objects():
    rendering = route("istio", None, live=["20180522.1", "20180523.5"])
    http = spec(rendering, "VirtualService")["http"]
    assert http[1]["name"] == "pin-20180523-5"
    assert http[1]["match"] == [{"headers": {"x-model-build": {"exact": "20180523.5"}}}]
    assert http[1]["route"][0]["destination"]["subset"] == "build-20180523-5"


# --- istio ------------------------------------------------------------------------------------


def test_istio_virtual_service_splits_subsets_pins_by_header_and_mirrors():
    rendering = route(
        "istio",
        {"151": 20, "152": 80},
        shadow={"build": "153", "percent": 25},
        hostnames=["reco.example.com"],
    )
    vs = spec(rendering, "VirtualService")
    assert vs["hosts"] == ["score", "reco.example.com"]
    assert vs["gateways"] == ["infra/web", "mesh"]
    *pins, split = vs["http"]
    for pin, build in zip(pins, LIVE, strict=True):
        assert pin["match"] == [{"headers": {"x-model-build": {"exact": build}}}]
        assert pin["route"] == [
            {"destination": {"host": "score", "subset": f"build-{build}", "port": {"number": 80}}}
        ]
    assert {d["destination"]["subset"]: d["weight"] for d in split["route"]} == {
        "build-151": 20,
        "build-152": 80,
        "build-153": 0,
    }
    assert split["mirror"] == {"host": "score", "subset": "build-153", "port": {"number": 80}}
    assert split["mirrorPercentage"] == {"value": 25}
    assert gates(rendering, "VirtualService") == {"deploy-151", "deploy-152", "deploy-153"}


def test_istio_subsets_select_each_release_and_the_stable_service_selects_them_all():
    rendering = route("istio", {"152": 100}, gateway=None)
    rule = spec(rendering, "DestinationRule")
    assert rule["host"] == "score"
    assert rule["subsets"] == [{"name": f"build-{b}", "labels": pod_labels(b)} for b in LIVE]
    service = spec(rendering, "Service")
    assert service["selector"] == {
        "app.kubernetes.io/name": "scorer",
        "app.kubernetes.io/part-of": "mlpipeline",
    }
    assert service["ports"] == [
        {"name": "http", "appProtocol": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
    ]
    assert "gateways" not in spec(rendering, "VirtualService")
    # Routes must not name a subset before the DestinationRule defines it.
    assert {"score-destinationrule", "score-service"} <= rendering.depends_on(rendering.one("VirtualService"))
    assert rendering.result == "score"


# --- service ----------------------------------------------------------------------------------


def test_service_router_points_the_stable_service_at_the_one_serving_release():
    blue = route("service", {"152": 100})
    green = route("service", None)
    assert spec(blue, "Service")["selector"] == pod_labels("152")
    assert spec(green, "Service")["selector"] == pod_labels("153")
    assert gates(blue, "Service") == {"deploy-152"}
    assert gates(green, "Service") == {"deploy-153"}
    assert [c.kind for c in children(green)] == ["Service"]


# --- rollback ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gateway", "istio", "service"])
def test_rolling_back_changes_only_weights(kind):
    """traffic={"152": 100} after {"153": 100}: same objects, same fields, other numbers."""
    forward, back = route(kind, {"153": 100}), route(kind, {"152": 100})
    before = {c.name: c.inputs for c in children(forward)}
    after = {c.name: c.inputs for c in children(back)}
    assert before.keys() == after.keys()
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {
        "score-service"
        if kind == "service"
        else ("score-httproute" if kind == "gateway" else "score-virtualservice")
    }
    for name in changed:
        assert without_weights(before[name], kind) == without_weights(after[name], kind)


def without_weights(obj, kind):
    obj = copy.deepcopy(obj)
    if kind == "gateway":
        for ref in obj["spec"]["rules"][-1]["backendRefs"]:
            ref.pop("weight")
    elif kind == "istio":
        for destination in obj["spec"]["http"][-1]["route"]:
            destination.pop("weight")
    else:  # blue/green: the weight is which release the selector names
        obj["spec"]["selector"].pop("app.kubernetes.io/version")
        obj["spec"]["selector"].pop("app.kubernetes.io/instance")
    return obj


# --- settings the kinds cannot carry out --------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "traffic", "shadow", "gateway", "hostnames", "message"),
    [
        ("mesh", None, None, None, (), "router must be one of gateway, istio, service, got 'mesh'"),
        ("gateway", None, None, None, (), "router 'gateway' needs config `gateway`"),
        (
            "service",
            {"152": 50, "153": 50},
            None,
            None,
            (),
            "router 'service' switches all traffic to one build",
        ),
        ("service", {"152": 100}, {"build": "153"}, None, (), "router 'service' cannot mirror traffic"),
        ("service", None, None, GatewayRef("web"), (), "router 'service' has no gateway or hostnames"),
        ("istio", None, None, GatewayRef("web", "infra", "https"), (), "router 'istio' has none"),
        ("gateway", None, None, GatewayRef("web"), ["Reco.Example.com"], "are not DNS names"),
    ],
)
def test_router_settings_a_kind_cannot_carry_out_are_rejected(
    kind, traffic, shadow, gateway, hostnames, message
):
    with pytest.raises(RouterError) as caught:
        check_router(kind, plan_traffic(traffic, LIVE, shadow), gateway, hostnames)
    assert message in str(caught.value)


def test_gateway_route_holds_at_most_fifteen_releases():
    live = [str(b) for b in range(100, 116)]
    with pytest.raises(RouterError, match="at most 15 live releases .* lower keepReleases"):
        check_router("gateway", plan_traffic(None, live), GatewayRef("web"))


def test_router_refuses_releases_that_differ_from_the_plan():
    with pytest.raises(RouterError, match="differ from the traffic plan"):
        render_components(
            lambda: Router(
                "score",
                RouterArgs(
                    kind="service",
                    releases=[stand_in("152")],
                    plan=plan_traffic(None, LIVE),
                ),
            )
        )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("infra/web", GatewayRef("web", "infra")),
        ("web", GatewayRef("web")),
        ({"name": "web", "namespace": "infra", "sectionName": "https"}, GatewayRef("web", "infra", "https")),
        (None, None),
    ],
)
def test_gateway_config_forms(raw, expected):
    assert GatewayRef.from_config(raw) == expected


def test_gateway_config_without_a_name_is_rejected():
    with pytest.raises(RouterError, match="must name the Gateway.*unknown keys \\['listener'\\]"):
        GatewayRef.from_config({"namespace": "infra", "listener": "https"})


# --- the structural validators catch what the API server would refuse --------------------------


def test_validators_reject_broken_routes():
    httproute = (
        route("gateway", {"152": 90, "153": 10}, shadow={"build": "151", "percent": 5})
        .one("HTTPRoute")
        .inputs
    )
    vs = route("istio", {"152": 100}).one("VirtualService").inputs
    rule = route("istio", {"152": 100}).one("DestinationRule").inputs

    cases = [
        (httproute, lambda s: s["rules"][0]["backendRefs"][0].pop("port"), "'port' is a required property"),
        (
            httproute,
            lambda s: s["rules"][0]["matches"][0]["headers"][0].update(value=""),
            "should be non-empty",
        ),
        (
            httproute,
            lambda s: s["rules"][0]["matches"][0]["headers"][0].update(type="Prefix"),
            "is not one of",
        ),
        (
            httproute,
            lambda s: s["rules"][-1]["filters"][0]["requestMirror"].update(percent=101),
            "maximum of 100",
        ),
        (
            httproute,
            lambda s: s["rules"][-1]["filters"][0].update(type="RequestRedirect"),
            "'RequestMirror' was expected",
        ),
        (httproute, lambda s: s["rules"][-1]["backendRefs"][0].update(weight=-1), "minimum of 0"),
        (httproute, lambda s: s.update(rules=s["rules"] * 6), "is too long at spec/rules"),
        (httproute, lambda s: s["parentRefs"][0].pop("name"), "'name' is a required property"),
        (
            httproute,
            lambda s: s["rules"][0].update(backendRef=s["rules"][0].pop("backendRefs")),
            "'backendRef' was unexpected",
        ),
        (
            vs,
            lambda s: s["http"][0]["match"][0].update(headers={"X-Model-Build": {"exact": "151"}}),
            "does not match",
        ),
        (vs, lambda s: s["http"][-1]["route"][0].update(weight=50), "route weights sum to 150"),
        (vs, lambda s: s["http"][-1]["route"][0]["destination"].pop("host"), "'host' is a required property"),
        (vs, lambda s: s["http"][-1].update(mirrorPercentage={"value": 150}), "maximum of 100"),
        (vs, lambda s: s.pop("hosts"), "'hosts' is a required property"),
        (rule, lambda s: s["subsets"][0].update(name="Build_151"), "'Build_151' does not match"),
    ]
    for obj, edit, message in cases:
        obj = copy.deepcopy(obj)
        edit(obj["spec"])
        with pytest.raises(InvalidObject, match=re.escape(message)):
            validate(obj)
    validate(httproute)
    validate(vs)
    validate(rule)
