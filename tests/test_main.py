"""The whole program under mocks: the release diagram, and the invariant that `pulumi up` with a new
build, or a traffic change, changes no input of any object of an earlier release, its guards included;
only the stack's operating policy (scale bounds, ingress sources) reaches every live release's guards
(docs/CONTRACTS.md, section 5)."""

import json

import pytest

from components import release_spec
from components.plan import normalize
from components.settings import SettingsError
from local.mocks import MOCK_SECRETS
from local.render import render
from tests.components.conftest import AZURITE_KEY, GIT_SHA, everything_of_release, public_text
from tests.components.crd_schemas import validate as validate_object

FEEDBACK_KEY = "feedback-key-for-leak-tests-71b3e9"  # a secret config value: must never leak
# The local stack reading its CSVs from blob storage (Azurite's account): blobKey is a secret too.
LOCAL_FROM_BLOB = {
    "dataSource": "blob",
    "dataClaim": "",
    "blobAccount": "devstoreaccount1",
    "blobKey": AZURITE_KEY,
    "dataContainer": "etl",
    "csvFolder": "2018/05/08",
}


def state_of(rendering, build_dns):
    """URN -> (inputs, update-relevant options) of every object that belongs to one release: its
    Job, Deployment, Service and its guards (NetworkPolicies, budget, autoscaler)."""
    objects = everything_of_release(rendering, build_dns)
    assert objects, f"release {build_dns} is not declared"
    return {
        r.urn: (normalize(r.inputs), {k: v for k, v in r.options.items() if k != "dependencies"})
        for r in objects
    }


def up(stack, build, previous=None, **config):
    return render(
        stack,
        {"build": build, "gitSha": GIT_SHA, "keepReleases": 3, **config},
        previous_releases=None if previous is None else previous.outputs["releases"],
    )


@pytest.fixture(scope="module")
def history():
    """Four `pulumi up`s of one stack, keepReleases 3, each fed the previous run's `releases`."""
    first = up("local", "153")
    second = up("local", "154", first)
    third = up("local", "155", second)
    fourth = up("local", "156", third)
    return first, second, third, fourth


def kinds(rendering):
    return sorted(r.kind for r in rendering.resources if r.type.startswith("kubernetes:"))


def test_first_run_declares_one_release(history):
    first = history[0]
    # The second Service is the router's (router service on the local stack): the stable address.
    assert kinds(first) == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "Namespace",
        "NetworkPolicy",
        "NetworkPolicy",
        "NetworkPolicy",  # default-deny, score-153, train-153
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "Service",
        "Service",
    ]
    assert [o["metadata"]["name"] for o in first.k8s("Job")] == ["train-153"]
    assert [o["metadata"]["name"] for o in first.k8s("Deployment")] == ["score-153"]
    assert first.outputs["addresses"] == {"153": "score-153.mlpipeline-local.svc.cluster.local"}
    assert len(first.of_type("docker-build:index:Image")) == 3


def test_second_run_keeps_the_first_release_with_identical_inputs(history):
    first, second = history[:2]
    assert sorted(o["metadata"]["name"] for o in second.k8s("Job")) == ["train-153", "train-154"]
    assert state_of(second, "153") == state_of(first, "153")
    # Only the new build gets images; the old release reuses the references of its record.
    assert {r.name for r in second.of_type("docker-build:index:Image")} == {
        f"ledger-images-154-{app}" for app in ("trainer", "waiter", "scorer")
    }


def test_every_later_run_leaves_every_earlier_release_identical(history):
    _, second, third, fourth = history
    assert state_of(third, "154") == state_of(second, "154")
    assert state_of(fourth, "154") == state_of(second, "154")
    assert state_of(fourth, "155") == state_of(third, "155")


def test_retention_retires_exactly_the_oldest(history):
    third, fourth = history[2], history[3]
    assert third.outputs["liveBuilds"] == ["153", "154", "155"] and third.outputs["retiredBuilds"] == []
    assert fourth.outputs["liveBuilds"] == ["154", "155", "156"] and fourth.outputs["retiredBuilds"] == [
        "153"
    ]
    assert set(fourth.outputs["releases"]) == {"154", "155", "156"}
    assert not [r for r in fourth.resources if "153" in r.name]


def test_a_change_of_the_template_code_never_reaches_an_old_release(history, monkeypatch):
    second = history[1]
    # Simulate a later commit that changes how releases are rendered.
    monkeypatch.setattr(release_spec, "BACKOFF_LIMIT", 6)
    monkeypatch.setattr(release_spec, "POLL_INTERVAL_SECONDS", 1)
    monkeypatch.setattr(
        release_spec, "CONTAINER_SECURITY", {**release_spec.CONTAINER_SECURITY, "runAsUser": 20002}
    )
    changed = up("local", "155", second)
    assert state_of(changed, "153") == state_of(second, "153")
    assert state_of(changed, "154") == state_of(second, "154")
    new_job = next(o for o in changed.k8s("Job") if o["metadata"]["name"] == "train-155")
    assert new_job["spec"]["backoffLimit"] == 6  # the change does reach the new build


def test_a_change_of_config_never_reaches_an_old_release(history):
    second = history[1]
    changed = up(
        "local",
        "155",
        second,
        trainerEnv={"TRAIN_FAMILIES": "als"},
        csvFolder="2018/05/09",
        trainTimeoutMinutes=5,
        resources={"scorer": {"limits": {"memory": "3Gi"}}},
        gitSha="feedface",
        feedbackKey=FEEDBACK_KEY,
        feedbackEvents=["view"],
        feedbackWindowSeconds=600,
    )
    assert state_of(changed, "153") == state_of(second, "153")
    assert state_of(changed, "154") == state_of(second, "154")
    new = next(o for o in changed.k8s("Job") if o["metadata"]["name"] == "train-155")
    assert new["spec"]["activeDeadlineSeconds"] == 5 * 60  # the change does reach the new build


def test_a_traffic_change_leaves_every_release_identical(history):
    second = history[1]
    steady = up("local", "154", second)
    back = up("local", "154", second, traffic={"153": 100})  # a rollback: the router switches to 153
    for dns in ("153", "154"):
        assert state_of(back, dns) == state_of(steady, dns)
    changed = {
        r.urn
        for r in back.resources
        if normalize(r.inputs) != normalize(next(s for s in steady.resources if s.urn == r.urn).inputs)
    }
    assert changed == {r.urn for r in back.resources if r.name == "score-service"}  # the router only


def changes(before, after):
    """(resource name, dotted path) of every input that differs between two renderings."""
    found = set()

    def walk(name, a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in set(a) | set(b):
                walk(name, a.get(key), b.get(key), f"{path}.{key}" if path else key)
        elif a != b:
            found.add((name, path))

    old = {r.urn: r for r in before.resources}
    assert old.keys() == {r.urn for r in after.resources}
    for r in after.resources:
        walk(r.name, normalize(old[r.urn].inputs), normalize(r.inputs), "")
    return found


SCRAPERS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
INGRESS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "edge"}}}]


@pytest.mark.parametrize(
    "config, changed",
    [
        ({"minReplicas": 2}, {("autoscaler", "spec.minReplicas")}),
        ({"maxReplicas": 8}, {("autoscaler", "spec.maxReplicas")}),
        ({"metricsScrapers": SCRAPERS}, {("scorer-policy", "spec.ingress")}),
        ({"scorerIngressFrom": INGRESS}, {("scorer-policy", "spec.ingress")}),
    ],
)
def test_an_operating_policy_change_reaches_only_the_guards_it_names_on_every_live_release(
    history, config, changed
):
    """The one documented exception to release immutability: an operator raising maxReplicas during
    an incident reaches the release that serves, and every other live one, and nothing else."""
    second = history[1]
    steady = up("local", "154", second)
    operated = up("local", "154", second, **config)
    assert changes(steady, operated) == {
        (f"guards-{b}-{kind}", path) for b in ("153", "154") for kind, path in changed
    }
    # The Deployments keep their recorded replicas: the autoscaler owns the count (ignore_changes).
    assert {o["metadata"]["name"]: o["spec"]["replicas"] for o in operated.k8s("Deployment")} == {
        "score-153": 1,
        "score-154": 1,
    }


def test_deploying_a_build_again_rebuilds_nothing_and_changes_nothing(history):
    second = history[1]
    again = up("local", "154", second)
    assert again.of_type("docker-build:index:Image") == []
    assert state_of(again, "154") == state_of(second, "154")
    assert state_of(again, "153") == state_of(second, "153")
    assert normalize(again.outputs["releases"]) == normalize(second.outputs["releases"])


def test_old_release_urns_do_not_move(history):
    first, second = history[:2]
    assert set(state_of(first, "153")) == set(state_of(second, "153"))


def test_jobs_are_locked_against_replacement(history):
    for resource in history[1].resources:
        if resource.kind == "Job":
            assert resource.options["ignoreChanges"] == ["spec"]
            # a retry (`up --replace <urn>`) deletes the refused Job first: its name is fixed
            assert resource.options["deleteBeforeReplace"] is True


@pytest.mark.parametrize(
    "stack, config",
    [
        ("local", {}),
        ("dev", {}),
        ("prod", {}),
        (
            "dev",
            {"feedbackKey": FEEDBACK_KEY, "feedbackEvents": ["click", "cart"], "feedbackWindowSeconds": 60},
        ),
        (
            "local",
            LOCAL_FROM_BLOB,
        ),
    ],
)
def test_every_kubernetes_object_validates_against_the_1_30_schemas(stack, config):
    # prod promotes from dev: it needs dev's outputs holding the build.
    source = {"organization/mlpipeline/dev": up("dev", "20180523.5").outputs} if stack == "prod" else None
    rendering = render(
        stack, {"build": "20180523.5", "gitSha": GIT_SHA, "keepReleases": 3, **config}, other_stacks=source
    )
    objects = rendering.k8s()
    assert {o["kind"] for o in objects} >= {
        "Namespace",
        "PersistentVolumeClaim",
        "Job",
        "Deployment",
        "Service",
    }
    for obj in objects:
        # Core kinds: kubernetes_validate 1.30 strict; Gateway API / Istio CRDs: their documented structure.
        validate_object(obj)


def test_every_kubernetes_object_carries_labels_and_provenance():
    rendering = up("dev", "20180523.5")
    for obj in rendering.k8s():
        meta = obj["metadata"]
        labels = meta["labels"]
        assert labels["app.kubernetes.io/version"] == "20180523.5", meta["name"]
        assert labels["app.kubernetes.io/part-of"] == "mlpipeline"
        assert labels["app.kubernetes.io/managed-by"] == "pulumi"
        assert {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"} <= set(
            labels
        )
        assert meta["annotations"]["mlpipeline/build"] == "20180523.5"
        assert meta["annotations"]["mlpipeline/git-sha"] == GIT_SHA


def test_release_objects_carry_the_provenance_known_when_they_are_declared():
    rendering = up("dev", "20180523.5")
    record = rendering.outputs["releases"]["20180523.5"]
    for obj in record["objects"].values():
        annotations = obj["metadata"]["annotations"]
        assert {
            app: annotations[f"mlpipeline/{app}-image"] for app in ("trainer", "waiter", "scorer")
        } == record["images"]
        assert "@sha256:" in annotations["mlpipeline/trainer-image"]
        assert annotations["mlpipeline/data"] == rendering.outputs["trainingData"]
        assert annotations["mlpipeline/model-folder"] == "/mnt/models/20180523.5"
        config = json.loads(annotations["mlpipeline/config"])
        assert config["gate"]["GATE_MIN_LIFT"] == "1.0" and config["trainerEnv"] == {
            "TUNE_BUDGET_SECONDS": "1800"
        }


@pytest.mark.parametrize(
    "stack, config",
    [
        ("dev", {}),
        (
            "local",
            LOCAL_FROM_BLOB,
        ),
    ],
)
def test_no_secret_appears_outside_a_secret(stack, config):
    rendering = up(stack, "7", feedbackKey=FEEDBACK_KEY, **config)
    text = public_text(rendering)
    for secret in (MOCK_SECRETS["storage_key"], MOCK_SECRETS["registry_password"], AZURITE_KEY, FEEDBACK_KEY):
        assert secret not in text
    # ...while the Secrets do hold them (so the check above is not vacuous).
    revealed = json.dumps([r.inputs for r in rendering.resources])
    expected = (
        [MOCK_SECRETS["storage_key"], MOCK_SECRETS["registry_password"]] if stack == "dev" else [AZURITE_KEY]
    ) + [FEEDBACK_KEY]
    for secret in expected:
        assert secret in revealed
    # No output had to be wrapped but the one meant for promoting stacks, itself a secret.
    assert rendering.secret_outputs <= {"promotionCredentials"}


def test_unknown_config_key_fails_the_run_naming_it():
    with pytest.raises(SettingsError, match="unknown config key.*mlpipeline:keepRelease;"):
        render("local", {"build": "1", "keepRelease": "2"})


def test_a_renamed_config_key_says_what_it_is_now():
    with pytest.raises(SettingsError, match="mlpipeline:replicas is now minReplicas"):
        render("local", {"build": "1", "replicas": "2"})


def test_missing_build_fails_the_run():
    with pytest.raises(SettingsError, match="mlpipeline:build is required"):
        render("local", {})


def test_program_outputs_name_the_store_and_registry():
    dev = up("dev", "1")
    assert dev.outputs["modelStore"]["claim"] == "models"
    assert dev.outputs["modelStore"]["share"] == "models"
    assert dev.outputs["registry"].endswith(".azurecr.io")
    local = up("local", "1")
    assert local.outputs["registry"] is None and local.outputs["modelStore"]["account"] is None


def test_a_preview_declares_the_new_release_and_leaves_the_old_one_identical(history):
    first = history[0]
    preview = render(
        "local",
        {"build": "154", "gitSha": GIT_SHA, "keepReleases": 3},
        previous_releases=first.outputs["releases"],
        preview=True,
    )
    assert state_of(preview, "153") == state_of(first, "153")
    assert sorted(o["metadata"]["name"] for o in preview.k8s("Job")) == ["train-153", "train-154"]
    # Nothing is built in a preview: the new digests, hence the new ledger, are known only after `up`.
    assert "releases" in preview.unknown_outputs and preview.outputs["liveBuilds"] == ["153", "154"]
