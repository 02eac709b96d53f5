"""The whole program under mocks, issue 3: routing, gated rollout, rollback, retention, promotion.

Each `up` feeds the previous run's outputs back, as the stack's StackReference to itself would.
"""

import copy
import json

import pytest

from components.plan import normalize
from components.promotion import PromotionError
from components.router import RouterError
from components.traffic import TrafficError
from local import mocks
from local.mocks import MOCK_SECRETS
from local.render import render
from tests.components.conftest import GIT_SHA, public_text
from tests.components.crd_schemas import validate

DEV = "organization/mlpipeline/dev"
NOTHING_DECLARED = {"pulumi:pulumi:Stack", "pulumi:pulumi:StackReference"}


def up(stack, build, previous=None, other_stacks=None, **config):
    return render(
        stack,
        {"build": build, "gitSha": GIT_SHA, **config},
        previous_outputs=None if previous is None else previous.outputs,
        other_stacks=other_stacks,
    )


def router_objects(rendering):
    router = next(r for r in rendering.resources if r.type == "mlpipeline:router:Router")
    return {r.name: r for r in rendering.descendants(router.urn)}


def deployment_urn(rendering, dns):
    return next(
        r.urn
        for r in rendering.resources
        if r.kind == "Deployment" and r.inputs["metadata"]["name"] == f"score-{dns}"
    )


def waiter_env(rendering, dns):
    deployment = next(o for o in rendering.k8s("Deployment") if o["metadata"]["name"] == f"score-{dns}")
    (waiter,) = deployment["spec"]["template"]["spec"]["initContainers"]
    return {e["name"]: e["value"] for e in waiter["env"]}


def trainer_env(rendering, dns):
    job = next(o for o in rendering.k8s("Job") if o["metadata"]["name"] == f"train-{dns}")
    (trainer,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in trainer["env"]}


@pytest.fixture(scope="module")
def local_runs():
    first = up("local", "153")
    second = up("local", "154", first)
    return first, second


@pytest.fixture(scope="module")
def dev_runs():
    first = up("dev", "153")
    second = up("dev", "154", first)
    return first, second


# --- router, per stack ------------------------------------------------------------------------


def test_local_stack_switches_its_stable_service_to_the_newest_release_once_ready(local_runs):
    first, second = local_runs
    service = router_objects(second)["score-service"]
    validate(service.inputs)
    assert service.inputs["metadata"]["name"] == "score"
    assert service.inputs["spec"]["selector"] == second.outputs["releases"]["154"]["service"]["selector"]
    assert deployment_urn(second, "154") in service.options["dependencies"]
    assert deployment_urn(second, "153") not in service.options["dependencies"]
    assert second.outputs["traffic"]["weights"] == {"153": 0, "154": 100}
    assert second.outputs["traffic"]["champion"] == "154"
    assert first.outputs["traffic"]["weights"] == {"153": 100}


def test_dev_stack_routes_through_its_gateway_with_a_pin_per_release(dev_runs):
    route = router_objects(dev_runs[1])["score-httproute"]
    validate(route.inputs)
    spec = route.inputs["spec"]
    assert spec["parentRefs"] == [{"name": "web", "namespace": "gateway-system"}]
    *pins, split = spec["rules"]
    assert [p["matches"][0]["headers"][0]["value"] for p in pins] == ["153", "154"]
    assert [p["backendRefs"] for p in pins] == [
        [{"name": "score-153", "port": 80}],
        [{"name": "score-154", "port": 80}],
    ]
    # Pulumi.dev.yaml's canaryPercent: 10: the nightly build joins the champion as a canary, and the
    # split turns explicit for the canary analysis to promote or roll back.
    assert [(b["name"], b["weight"]) for b in split["backendRefs"]] == [("score-153", 90), ("score-154", 10)]
    assert dev_runs[1].outputs["traffic"]["mode"] == "explicit"
    assert dev_runs[1].outputs["traffic"]["champion"] == "153"
    # Gated rollout: the split gives 154 its share only once 154's Deployment is Available.
    assert deployment_urn(dev_runs[1], "154") in route.options["dependencies"]


def test_istio_router_renders_valid_rules_on_the_same_releases(dev_runs):
    rendering = up(
        "dev",
        "154",
        dev_runs[0],
        router="istio",
        traffic={"153": 80, "154": 20},
        hostnames=["reco.example.com"],
    )
    objects = router_objects(rendering)
    assert set(objects) == {"score-service", "score-destinationrule", "score-virtualservice"}
    for obj in objects.values():
        validate(obj.inputs)
    vs = objects["score-virtualservice"].inputs["spec"]
    assert vs["hosts"] == ["score", "reco.example.com"]
    assert vs["gateways"] == ["gateway-system/web", "mesh"]
    assert {d["destination"]["subset"]: d["weight"] for d in vs["http"][-1]["route"]} == {
        "build-153": 80,
        "build-154": 20,
    }


def test_a_shadow_gets_mirrored_copies_and_no_split_share(dev_runs):
    rendering = up("dev", "154", dev_runs[0], traffic={"153": 100}, shadow={"build": "154", "percent": 10})
    split = router_objects(rendering)["score-httproute"].inputs["spec"]["rules"][-1]
    assert split["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": "score-154", "port": 80}, "percent": 10},
        }
    ]
    assert rendering.outputs["traffic"]["shadow"] == {"build": "154", "percent": 10}


# --- bad traffic config: rejected before any resource is declared -----------------------------


@pytest.fixture
def registrations(monkeypatch):
    """Types of every resource the program registers, kept even when it then fails."""
    seen = []
    original = mocks.Monitor.RegisterResource

    def recording(self, request):
        seen.append(request.type)
        return original(self, request)

    monkeypatch.setattr(mocks.Monitor, "RegisterResource", recording)
    return seen


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        ({"153": 60, "154": 30}, "weights sum to 90, not 100"),
        ({"150": 100}, "build 150 is not live (live builds: 153, 154)"),
        ({"153": -10, "154": 110}, "weight of build 153 is -10"),
    ],
)
def test_bad_traffic_fails_the_update_before_anything_is_declared(dev_runs, registrations, traffic, message):
    with pytest.raises(TrafficError, match=message.replace("(", r"\(").replace(")", r"\)")):
        up("dev", "154", dev_runs[0], traffic=traffic)
    # Only the stack itself and the read of its previous outputs: no object was declared.
    assert set(registrations) <= NOTHING_DECLARED


def test_a_split_on_the_blue_green_router_is_refused(local_runs, registrations):
    with pytest.raises(RouterError, match="router 'service' switches all traffic to one build"):
        up("local", "154", local_runs[0], traffic={"153": 50, "154": 50})
    assert set(registrations) <= NOTHING_DECLARED


# --- rollback -----------------------------------------------------------------------------------


def test_rollback_changes_only_the_routers_weights(dev_runs):
    second = dev_runs[1]
    steady = up("dev", "154", second)  # the same update without the traffic change
    back = up("dev", "154", second, traffic={"153": 100})
    before = {r.urn: r for r in steady.resources}
    after = {r.urn: r for r in back.resources}
    assert before.keys() == after.keys()
    route_urn = router_objects(steady)["score-httproute"].urn
    # One API write: nothing else moves, the autoscalers included (an idle release sits at its
    # minimum by itself; nothing is pinned or unpinned).
    for urn in before:
        if urn == route_urn:
            continue
        assert normalize(after[urn].inputs) == normalize(before[urn].inputs), urn
        assert after[urn].options == before[urn].options, urn
    old, new = before[route_urn].inputs, after[route_urn].inputs
    assert [b["weight"] for b in old["spec"]["rules"][-1]["backendRefs"]] == [90, 10]  # 154 a canary
    assert [b["weight"] for b in new["spec"]["rules"][-1]["backendRefs"]] == [100, 0]
    for obj in (old, new):
        for ref in obj["spec"]["rules"][-1]["backendRefs"]:
            ref.pop("weight")
    assert normalize(new) == normalize(old)
    # The warm release takes the traffic only once its Deployment is Available (it already is).
    assert deployment_urn(back, "153") in after[route_urn].options["dependencies"]
    assert normalize(back.outputs["releases"]) == normalize(second.outputs["releases"])


# --- retention protections (local stack: keepReleases 2) ---------------------------------------


def live(rendering):
    return rendering.outputs["liveBuilds"]


def test_without_protection_the_oldest_is_retired(local_runs):
    third = up("local", "155", local_runs[1])
    assert live(third) == ["154", "155"] and third.outputs["retiredBuilds"] == ["153"]


def test_a_release_carrying_traffic_is_never_retired(local_runs):
    third = up("local", "155", local_runs[1], traffic={"153": 100})
    assert live(third) == ["153", "154", "155"] and third.outputs["retiredBuilds"] == []
    assert third.outputs["traffic"]["weights"] == {"153": 100, "154": 0, "155": 0}


def test_the_shadow_is_never_retired(dev_runs):
    third = up(
        "dev", "155", dev_runs[1], keepReleases=2, shadow={"build": "153", "percent": 5}, traffic={"154": 100}
    )
    assert live(third) == ["153", "154", "155"]


def test_the_previous_champion_stays_warm_for_rollback(local_runs):
    first = local_runs[0]
    second = up("local", "154", first, traffic={"153": 100})  # 153 stays champion
    third = up("local", "155", second, traffic="auto")  # the newest takes 100; 153 held it until now
    assert live(third) == ["153", "154", "155"]
    assert third.outputs["traffic"]["weights"] == {"153": 0, "154": 0, "155": 100}
    fourth = up("local", "156", third)  # 153 is no longer the previous champion: retired
    assert live(fourth) == ["155", "156"] and fourth.outputs["retiredBuilds"] == ["153", "154"]


def test_a_build_whose_record_is_gone_is_refused_not_rendered_again(local_runs):
    first, second = local_runs
    third = up("local", "155", second)
    assert third.outputs["deployedBuilds"] == ["153", "154", "155"]
    forgotten = copy.deepcopy(third)
    forgotten.outputs["retiredReleases"].pop("153")  # dropped out of the newest 20 retired records
    with pytest.raises(
        Exception,
        match="build 153 was deployed on this stack before and its record is no "
        "longer kept .* deploy under a new build id",
    ):
        up("local", "153", forgotten)
    assert up("local", "156", forgotten).outputs["deployedBuilds"] == ["153", "154", "155", "156"]


def test_a_retired_build_comes_back_verbatim_from_the_ledger_history(local_runs):
    first, second = local_runs
    third = up("local", "155", second)
    assert "153" in third.outputs["retiredReleases"] and "153" not in third.outputs["releases"]
    again = up("local", "153", third)
    assert again.of_type("docker-build:index:Image") == []  # nothing rebuilt
    assert normalize(again.outputs["releases"]["153"]) == normalize(first.outputs["releases"]["153"])
    train = next(o for o in again.k8s("Job") if o["metadata"]["name"] == "train-153")
    assert normalize(train) == normalize(first.outputs["releases"]["153"]["objects"]["job"])
    assert "153" not in again.outputs["retiredReleases"]


# --- traffic modes: a rollback survives the nightly updates that follow ---------------------------


def test_a_rollback_survives_two_nightly_updates_until_traffic_is_set_again(dev_runs):
    back = up("dev", "154", dev_runs[1], traffic={"153": 100})  # roll back from 154 to 153
    assert back.outputs["traffic"]["mode"] == "explicit"
    # the nightly template sets build and csvFolder, no traffic; a stack without canaries
    nightly = up("dev", "155", back, canaryPercent=0)
    assert nightly.outputs["traffic"]["weights"] == {"153": 100, "154": 0, "155": 0}
    assert (nightly.outputs["traffic"]["mode"], nightly.outputs["traffic"]["champion"]) == ("explicit", "153")
    assert waiter_env(nightly, "155")["GATE_CHAMPION_MODELFOLDER"] == "/mnt/models/153"  # gated against 153
    second_nightly = up("dev", "156", nightly, canaryPercent=0)
    assert second_nightly.outputs["traffic"]["weights"] == {"153": 100, "154": 0, "155": 0, "156": 0}
    assert second_nightly.outputs["traffic"]["mode"] == "explicit"
    promoted = up("dev", "156", second_nightly, traffic={"156": 100})  # someone decides: promote 156
    assert {b: w for b, w in promoted.outputs["traffic"]["weights"].items() if w} == {"156": 100}
    auto = up("dev", "157", promoted, traffic="auto", canaryPercent=0)
    assert auto.outputs["traffic"]["weights"]["157"] == 100 and auto.outputs["traffic"]["mode"] == "auto"
    assert up("dev", "158", auto, canaryPercent=0).outputs["traffic"]["weights"]["158"] == 100  # auto stays


def test_a_new_build_joins_an_explicit_split_at_the_canary_percent(dev_runs):
    back = up("dev", "154", dev_runs[1], traffic={"153": 100})
    canary = up("dev", "155", back, canaryPercent=10)
    assert canary.outputs["traffic"]["weights"] == {"153": 90, "154": 0, "155": 10}
    assert canary.outputs["traffic"]["canaryPercent"] == 10


# --- champion / challenger gate ------------------------------------------------------------------


def test_a_new_release_is_gated_against_the_champions_model(dev_runs):
    first, second = dev_runs  # Pulumi.dev.yaml: championTolerance 0.02
    assert "GATE_CHAMPION_MODELFOLDER" not in waiter_env(first, "153")  # nothing to beat yet
    env = waiter_env(second, "154")
    assert env["GATE_CHAMPION_MODELFOLDER"] == "/mnt/models/153"
    assert env["GATE_CHAMPION_TOLERANCE"] == "0.02"
    assert normalize(second.outputs["releases"]["153"]) == normalize(first.outputs["releases"]["153"])


def test_without_a_tolerance_there_is_no_champion_gate(local_runs):
    assert "GATE_CHAMPION_MODELFOLDER" not in waiter_env(local_runs[1], "154")


def test_drift_thresholds_reach_the_new_trainer_only(dev_runs):
    drifted = up("dev", "155", dev_runs[1], drift={"fail": {"item_popularity_psi": 0.25}})
    env = trainer_env(drifted, "155")
    assert (
        env["DRIFT_FAIL_ITEM_POPULARITY_PSI"] == "0.25"
        and env["GATE_CHAMPION_MODELFOLDER"] == "/mnt/models/153"  # the champion; 154 is a 10 % canary
    )
    assert not any(name.startswith("DRIFT_") for name in waiter_env(drifted, "155"))  # the trainer decides
    assert not any(name.startswith("DRIFT_") for name in trainer_env(drifted, "154"))  # kept releases stay
    assert normalize(drifted.outputs["releases"]["154"]) == normalize(dev_runs[1].outputs["releases"]["154"])


# --- promotion dev -> prod --------------------------------------------------------------------


@pytest.fixture(scope="module")
def promoted(dev_runs):
    dev = dev_runs[1]
    prod = up("prod", "153", other_stacks={DEV: dev.outputs})
    return dev, prod


def test_dev_offers_its_credentials_to_promoting_stacks_only_as_a_secret(dev_runs):
    dev = dev_runs[1]
    assert "promotionCredentials" in dev.secret_outputs
    assert MOCK_SECRETS["storage_key"] not in json.dumps(dev.public_outputs())


def test_prod_deploys_devs_digests_and_trains_nothing(promoted):
    dev, prod = promoted
    assert prod.of_type("docker-build:index:Image") == []
    assert [o["metadata"]["name"] for o in prod.k8s("Job")] == ["promote-153"]
    record, source = prod.outputs["releases"]["153"], dev.outputs["releases"]["153"]
    assert record["images"] == source["images"] and all(
        "@sha256:" in ref for ref in record["images"].values()
    )
    assert (record["gitSha"], record["createdAt"], record["modelFolder"]) == (
        source["gitSha"],
        source["createdAt"],
        source["modelFolder"],
    )
    assert record["promotedFrom"] == "dev"
    deployment = next(o for o in prod.k8s("Deployment"))
    pod = deployment["spec"]["template"]["spec"]
    assert {c["image"] for c in pod["initContainers"] + pod["containers"]} == {
        source["images"]["waiter"],
        source["images"]["scorer"],
    }
    assert deployment["metadata"]["namespace"] == "mlpipeline-prod" and deployment["spec"]["replicas"] == 2
    assert pod["imagePullSecrets"] == [{"name": "registry-pull"}]
    assert not [r for r in prod.resources if r.type.startswith("mlpipeline:training_data")]
    assert not [r for r in prod.resources if r.type.startswith("mlpipeline:registry")]
    for obj in prod.k8s():
        validate(obj)


def test_prod_copies_the_model_with_a_verified_read_only_copy_before_the_scorer_starts(promoted):
    dev, prod = promoted
    (job,) = prod.k8s("Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["python", "-m", "modelshare.promote"]
    assert pod["containers"][0]["image"] == dev.outputs["releases"]["153"]["images"]["waiter"]
    source = next(v for v in pod["volumes"] if v["name"] == "source")
    assert source["persistentVolumeClaim"] == {"claimName": "promotion-source", "readOnly": True}
    volume = next(
        o for o in prod.k8s("PersistentVolume") if o["metadata"]["name"].endswith("promotion-source")
    )
    assert volume["spec"]["csi"]["readOnly"] is True and volume["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert volume["spec"]["csi"]["volumeAttributes"] == {"shareName": dev.outputs["modelStore"]["share"]}
    job_urn = next(r.urn for r in prod.resources if r.kind == "Job")
    deployment = next(r for r in prod.resources if r.kind == "Deployment")
    assert job_urn in deployment.options["dependencies"]  # the scorer's pods come after the copy
    # The source's account key and registry password reach prod only inside its Secrets.
    text = public_text(prod)
    assert MOCK_SECRETS["storage_key"] not in text and MOCK_SECRETS["registry_password"] not in text
    secrets = json.dumps([o for o in prod.k8s("Secret")])
    assert MOCK_SECRETS["storage_key"] in secrets and MOCK_SECRETS["registry_password"] in secrets


def test_prods_copy_job_holds_devs_build_to_prods_own_gate_and_fails_fast(promoted):
    _, prod = promoted
    (job,) = prod.k8s("Job")
    copier = job["spec"]["template"]["spec"]["containers"][0]
    waiter = next(o for o in prod.k8s("Deployment"))["spec"]["template"]["spec"]["initContainers"][0]
    gate = {e["name"]: e["value"] for e in copier["env"] if e["name"].startswith("GATE_")}
    # Pulumi.prod.yaml's gate (dev's is laxer), exactly as prod's waiter checks it again.
    assert gate == {"GATE_MIN_NDCG": "0.01", "GATE_MIN_LIFT": "1.1"}
    assert gate == {e["name"]: e["value"] for e in waiter["env"] if e["name"].startswith("GATE_")}
    assert job["spec"]["backoffLimit"] == 0 and copier["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_prod_keeps_its_own_ledger_when_dev_moves_on(promoted):
    dev, prod = promoted
    dev_later = copy.deepcopy(dev.outputs)
    dev_later["releases"].pop("153")  # dev retired 153
    again = up("prod", "153", prod, other_stacks={DEV: dev_later})
    assert normalize(again.outputs["releases"]) == normalize(prod.outputs["releases"])
    assert again.outputs["traffic"]["weights"] == {"153": 100}


def test_dev_exports_the_volume_its_model_share_is_bound_to(dev_runs):
    volume = dev_runs[1].outputs["modelStore"]["volume"]
    assert volume["csi"]["volumeAttributes"] == {"shareName": dev_runs[1].outputs["modelStore"]["share"]}
    assert "claimRef" not in volume and "accessModes" not in volume  # prod binds its own


def test_a_local_stack_promotes_from_a_local_stack_through_the_same_folder_read_only():
    source = up("local", "153", localRegistry="localhost:5001")  # pushed: pinned by digest
    folder = source.outputs["modelStore"]["volume"]["hostPath"]["path"]
    qa = up(  # another local stack, in its own namespace, promoting from the first
        "local",
        "153",
        other_stacks={"organization/mlpipeline/e2e": source.outputs},
        promoteFrom="e2e",
        namespace="mlpipeline-qa",
    )
    (job,) = qa.k8s("Job")
    assert job["metadata"]["name"].startswith("promote-")
    volume = next(o for o in qa.k8s("PersistentVolume"))
    assert volume["spec"]["hostPath"]["path"] == folder and volume["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert qa.k8s("Secret") == []  # no storage key, no registry password: the nodes pull from localRegistry
    pod = next(o for o in qa.k8s("Deployment"))["spec"]["template"]["spec"]
    assert "imagePullSecrets" not in pod
    assert qa.outputs["releases"]["153"]["images"] == source.outputs["releases"]["153"]["images"]


def test_prod_refuses_a_source_that_exports_no_volume(dev_runs):
    dev = copy.deepcopy(dev_runs[1].outputs)
    del dev["modelStore"]["volume"]  # a dev stack last updated before volumes were exported
    with pytest.raises(
        PromotionError, match="stack dev exports no model share volume.*run `pulumi up` on dev"
    ):
        up("prod", "153", other_stacks={DEV: dev})


def test_prod_refuses_a_share_it_cannot_stage_before_declaring_anything(dev_runs):
    dev = copy.deepcopy(dev_runs[1].outputs)
    del dev["promotionCredentials"]  # the Azure share's node stage needs the account key
    with pytest.raises(PromotionError, match="stack dev's model share volume needs a node-stage secret"):
        up("prod", "153", other_stacks={DEV: dev})


def test_prod_refuses_a_build_dev_does_not_have(dev_runs):
    with pytest.raises(PromotionError, match="build 999 is not a live release of stack dev .*153, 154"):
        up("prod", "999", other_stacks={DEV: dev_runs[1].outputs})
