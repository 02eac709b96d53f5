"""Each live release's NetworkPolicies, PodDisruptionBudget and HorizontalPodAutoscaler: present for
every release (kept ones too, whose records predate them), following the stack's operating policy
and nothing else (not the traffic), and gone with the release when it retires."""

import pytest

from local.render import render
from tests.components.conftest import GIT_SHA
from tests.components.crd_schemas import validate

KINDS = ("NetworkPolicy", "PodDisruptionBudget", "HorizontalPodAutoscaler")


def up(stack, build, previous=None, **config):
    return render(
        stack,
        {"build": build, "gitSha": GIT_SHA, **config},
        previous_outputs=None if previous is None else previous.outputs,
    )


def named(rendering, kind, name):
    found = [o for o in rendering.k8s(kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {[o['metadata']['name'] for o in rendering.k8s(kind)]}"
    return found[0]


def guards_of(rendering, dns):
    return {
        "scorer": named(rendering, "NetworkPolicy", f"score-{dns}"),
        "job": named(rendering, "NetworkPolicy", f"train-{dns}"),
        "budget": named(rendering, "PodDisruptionBudget", f"score-{dns}"),
        "autoscaler": named(rendering, "HorizontalPodAutoscaler", f"score-{dns}"),
    }


@pytest.fixture(scope="module")
def three_updates():
    """local: builds 1, 2, 3 with keepReleases 2, so build 1 retires on the third update."""
    first = up("local", "1", keepReleases=2)
    second = up("local", "2", first, keepReleases=2)
    third = up("local", "3", second, keepReleases=2)
    return first, second, third


def test_every_live_release_has_its_guards_and_a_retired_one_loses_them(three_updates):
    first, second, third = three_updates
    for rendering, live in ((first, ["1"]), (second, ["1", "2"]), (third, ["2", "3"])):
        names = {kind: sorted(o["metadata"]["name"] for o in rendering.k8s(kind)) for kind in KINDS}
        assert names["NetworkPolicy"] == sorted(
            ["default-deny"] + [f"score-{b}" for b in live] + [f"train-{b}" for b in live]
        )
        assert names["PodDisruptionBudget"] == [f"score-{b}" for b in live]
        assert names["HorizontalPodAutoscaler"] == [f"score-{b}" for b in live]
        for obj in [o for kind in KINDS for o in rendering.k8s(kind)]:
            validate(obj)


def test_guards_select_exactly_their_releases_pods(three_updates):
    _, second, _ = three_updates
    for dns in ("1", "2"):
        deployment = named(second, "Deployment", f"score-{dns}")
        job = named(second, "Job", f"train-{dns}")
        guards = guards_of(second, dns)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        for guard in (guards["scorer"], guards["budget"]):
            selector = guard["spec"].get("podSelector") or guard["spec"]["selector"]
            assert selector["matchLabels"].items() <= pod_labels.items()
        assert (
            guards["job"]["spec"]["podSelector"]["matchLabels"]
            == job["spec"]["template"]["metadata"]["labels"]
        )
        target = guards["autoscaler"]["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", f"score-{dns}")


def test_scorer_ingress_only_from_the_router_and_the_scraper_on_its_port():
    rendering = up(
        "local",
        "5",
        scorerIngressFrom=[{"namespaceSelector": {"matchLabels": {"team": "edge"}}}],
        metricsScrapers=[
            {
                "namespaceSelector": {"matchLabels": {"name": "obs"}},
                "podSelector": {"matchLabels": {"app": "prom"}},
            }
        ],
    )
    policy = guards_of(rendering, "5")["scorer"]["spec"]
    assert (
        policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"] == []
    )  # the scorer calls nobody
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"team": "edge"}}},
        {
            "namespaceSelector": {"matchLabels": {"name": "obs"}},
            "podSelector": {"matchLabels": {"app": "prom"}},
        },
    ]


def test_gateway_router_admits_the_gateways_namespace_by_default(dev):
    [rule] = guards_of(dev, "20180523-5")["scorer"]["spec"]["ingress"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway-system"}}} in rule[
        "from"
    ]


def test_training_egress_only_dns_and_the_storage_endpoint(dev, azurite, local_first):
    def egress(rendering, dns):
        return guards_of(rendering, dns)["job"]["spec"]["egress"]

    dns_rule = egress(local_first, "153")[0]
    assert {"port": 53, "protocol": "UDP"} in dns_rule["ports"]
    assert len(egress(local_first, "153")) == 1  # a claim needs no network
    assert egress(dev, "20180523-5")[1]["ports"] == [{"port": 443, "protocol": "TCP"}]  # Azure Blob, https
    assert egress(azurite, "7")[1]["ports"] == [{"port": 10000, "protocol": "TCP"}]  # blobEndpoint's port


def test_every_release_scales_within_the_stacks_bounds_with_traffic_or_without():
    first = up("local", "1", minReplicas=2, maxReplicas=6)
    second = up("local", "2", first, minReplicas=2, maxReplicas=6)  # the newest takes 100 %
    old, new = (guards_of(second, dns)["autoscaler"]["spec"] for dns in ("1", "2"))
    assert (new["minReplicas"], new["maxReplicas"]) == (2, 6)
    # 1 gets no requests: no load keeps it at its minimum, warm for a rollback, with nothing pinned
    # (a rollback moves traffic only; the autoscaler is not rewritten).
    assert (old["minReplicas"], old["maxReplicas"]) == (2, 6)
    assert guards_of(second, "1") == guards_of(first, "1")
    budget = guards_of(second, "2")["budget"]["spec"]
    assert budget["maxUnavailable"] == 1 and budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_kept_records_from_before_the_guards_get_them_and_stay_verbatim(three_updates):
    _, second, third = three_updates
    record = second.outputs["releases"]["2"]
    assert set(record["objects"]) == {"job", "deployment", "service"}  # guards are not in the record
    assert third.outputs["releases"]["2"] == record
    assert guards_of(third, "2") == guards_of(second, "2")  # 0 % now: its guards stay as they were
