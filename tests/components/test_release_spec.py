"""What a release runs: explicit commands, one model folder and volume for trainer, waiter and scorer,
probes, restricted pods, per-release names and address."""

import pytest

from components.release_spec import MODEL_MOUNT, PORT, PROBE_PORT
from local.render import render


def release_objects(rendering, build):
    def one(kind):
        [obj] = [
            o for o in rendering.k8s(kind) if o["metadata"]["labels"]["app.kubernetes.io/version"] == build
        ]
        return obj

    return one("Job"), one("Deployment"), one("Service")


def env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def mounts(container):
    return {m["mountPath"]: m for m in container["volumeMounts"]}


@pytest.fixture(scope="module")
def dotted(dev):
    return release_objects(dev, "20180523.5")


def test_names_are_dns_safe_and_labels_keep_the_build(dotted):
    job, deployment, service = dotted
    assert (job["metadata"]["name"], deployment["metadata"]["name"], service["metadata"]["name"]) == (
        "train-20180523-5",
        "score-20180523-5",
        "score-20180523-5",
    )
    assert job["metadata"]["labels"]["app.kubernetes.io/version"] == "20180523.5"


def test_commands_are_explicit(dotted):
    job, deployment, _ = dotted
    pod = deployment["spec"]["template"]["spec"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["python", "-m", "trainer"]
    assert [c["command"] for c in pod["initContainers"]] == [["python", "-m", "waiter"]]
    assert [c["command"] for c in pod["containers"]] == [["python", "-m", "scorer"]]


def test_trainer_waiter_and_scorer_agree_on_the_model_folder_and_volume(dotted, dev):
    job, deployment, _ = dotted
    trainer = job["spec"]["template"]["spec"]["containers"][0]
    waiter = deployment["spec"]["template"]["spec"]["initContainers"][0]
    scorer = deployment["spec"]["template"]["spec"]["containers"][0]
    folders = {env(c)["MODELFOLDER"] for c in (trainer, waiter, scorer)}
    assert folders == {f"{MODEL_MOUNT}/20180523.5"}
    assert {env(c)["BUILD_NUMBER"] for c in (trainer, waiter, scorer)} == {"20180523.5"}
    [claim] = dev.k8s("PersistentVolumeClaim")
    for pod in (job["spec"]["template"]["spec"], deployment["spec"]["template"]["spec"]):
        models = next(v for v in pod["volumes"] if v["name"] == "models")
        assert models["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert mounts(trainer)[MODEL_MOUNT] == {"name": "models", "mountPath": MODEL_MOUNT, "readOnly": False}
    for reader in (waiter, scorer):
        assert mounts(reader)[MODEL_MOUNT] == {"name": "models", "mountPath": MODEL_MOUNT, "readOnly": True}


def test_scorer_listens_on_8080_behind_a_per_release_service_on_80(dotted, dev):
    _, deployment, service = dotted
    scorer = deployment["spec"]["template"]["spec"]["containers"][0]
    assert env(scorer)["PORT"] == str(PORT) and scorer["ports"][0]["containerPort"] == PORT
    # the kubelet probes a port of its own, where no request queues ahead of a probe
    assert env(scorer)["PROBE_PORT"] == str(PROBE_PORT) != str(PORT)
    assert {"name": "probes", "containerPort": PROBE_PORT, "protocol": "TCP"} in scorer["ports"]
    assert scorer["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "probes"}
    assert scorer["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "probes"}
    assert scorer["readinessProbe"]["timeoutSeconds"] == scorer["livenessProbe"]["timeoutSeconds"] == 2
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": PORT, "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in service["spec"]["selector"].items())
    assert dev.outputs["addresses"] == {"20180523.5": "score-20180523-5.mlpipeline-dev.svc.cluster.local"}


def test_waiter_gets_the_gate_and_timeouts_from_config(dotted):
    _, deployment, _ = dotted
    waiter = env(deployment["spec"]["template"]["spec"]["initContainers"][0])
    # Pulumi.dev.yaml: gateMinLift 1.0; defaults: gateMinNdcg 0.0, waitTimeoutSeconds 600.
    assert (waiter["GATE_MIN_LIFT"], waiter["GATE_MIN_NDCG"], waiter["WAIT_TIMEOUT_SECONDS"]) == (
        "1.0",
        "0.0",
        "600",
    )


def test_job_deadlines_and_await_timeouts_follow_config(dotted):
    job, deployment, _ = dotted
    # Pulumi.dev.yaml: trainTimeoutMinutes 90; default rolloutTimeoutMinutes 10.
    assert job["spec"]["activeDeadlineSeconds"] == 90 * 60
    assert int(job["metadata"]["annotations"]["pulumi.com/timeoutSeconds"]) > 90 * 60
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    assert deployment["metadata"]["annotations"]["pulumi.com/timeoutSeconds"] == str(10 * 60)
    assert deployment["spec"]["progressDeadlineSeconds"] == 10 * 60


def test_every_pod_is_restricted_and_every_container_bounded(dotted):
    job, deployment, _ = dotted
    for pod in (job["spec"]["template"]["spec"], deployment["spec"]["template"]["spec"]):
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert pod["automountServiceAccountToken"] is False
        for container in pod.get("initContainers", []) + pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {
                "type": "RuntimeDefault"
            }
            assert sc["runAsUser"] == 10001
            assert set(container["resources"]) == {"requests", "limits"}
            assert mounts(container)["/tmp"]["name"] == "tmp"  # writable scratch on a read-only root


def test_trainer_gets_hyperparameters_and_data_location_as_env(dev):
    job, _, _ = release_objects(dev, "20180523.5")
    trainer = env(job["spec"]["template"]["spec"]["containers"][0])
    assert trainer["TUNE_BUDGET_SECONDS"] == "1800"  # trainerEnv of Pulumi.dev.yaml
    assert trainer["BLOB_STORAGE_CSV_FOLDER"] == "2018/05/08"
    assert trainer["GIT_SHA"] == dev.outputs["releases"]["20180523.5"]["gitSha"]


def test_trainer_and_waiter_get_the_same_gate_and_the_release_identity(dev):
    job, deployment, _ = release_objects(dev, "20180523.5")
    trainer = env(job["spec"]["template"]["spec"]["containers"][0])
    waiter = env(deployment["spec"]["template"]["spec"]["initContainers"][0])
    record = dev.outputs["releases"]["20180523.5"]
    for name in ("GATE_MIN_NDCG", "GATE_MIN_LIFT", "GIT_SHA", "TRAINER_IMAGE"):
        assert trainer[name] == waiter[name], name
    # The trainer records its own image (by digest) in the manifest; the waiter refuses another.
    assert trainer["TRAINER_IMAGE"] == record["images"]["trainer"] and "@sha256:" in trainer["TRAINER_IMAGE"]


# --- fail fast: from the trainer's decision to `pulumi up`'s error, with mocked timings -----------
# What happens between the trainer's exit and the update's error is Kubernetes' and pulumi-
# kubernetes' behaviour, modelled here from their documented rules and source:
# - the Job controller counts a failed pod unless a podFailurePolicy rule says Ignore (pods with the
#   DisruptionTarget condition: node loss, drain, preemption); once failures exceed backoffLimit it
#   sets the condition Failed with reason BackoffLimitExceeded, otherwise it starts another pod;
# - pulumi-kubernetes' Job await (provider/pkg/await/job.go, checker/job) fails at once on Failed with
#   reason BackoffLimitExceeded or DeadlineExceeded only (a FailJob rule's reason PodFailurePolicy
#   is not one of them: it would wait out the timeout), printing each pod's termination message;
#   otherwise it fails at the object's pulumi.com/timeoutSeconds.
KUBELET_REPORT, CONTROLLER_SYNC, WATCH = 2.0, 1.0, 1.0  # seconds; mocked
IMMEDIATE_REASONS = ("BackoffLimitExceeded", "DeadlineExceeded")


def pulumi_job_error(job, pods):
    """(seconds after the first decision, error text) for pods = [(decision time, exit code, message,
    disrupted)], each a pod the Job controller starts after the previous one failed."""
    spec, failed = job["spec"], 0
    ignored = [
        rule for rule in spec.get("podFailurePolicy", {}).get("rules", []) if rule["action"] == "Ignore"
    ]
    subErrors = []
    for decided, _exit_code, message, disrupted in pods:
        seen = decided + KUBELET_REPORT
        subErrors.append(f"[Pod {job['metadata']['name']}-x]: -- [Error] {message}")
        if disrupted and any(c["type"] == "DisruptionTarget" for r in ignored for c in r["onPodConditions"]):
            continue
        failed += 1
        if failed > spec["backoffLimit"]:
            at = seen + CONTROLLER_SYNC + WATCH
            return at - pods[0][
                0
            ], "[BackoffLimitExceeded] Job has reached the specified backoff limit; " + "; ".join(subErrors)
    return float(job["metadata"]["annotations"]["pulumi.com/timeoutSeconds"]), "timeout"


@pytest.mark.parametrize(
    "reason",
    [
        "build 20180523.5 is below the quality gate: paired NDCG gain over champion build 152 on 4000 test "
        "users -0.0312 (one-sided 95% lower bound -0.0401) < -GATE_CHAMPION_TOLERANCE 0.0200",
        "training of build 20180523.5 failed: the data cannot make a trustworthy model: 1 users < "
        "TRAIN_MIN_USERS 100",
    ],
)
def test_a_failed_training_or_gate_fails_the_update_within_a_minute_naming_build_and_reason(dotted, reason):
    job, _, _ = dotted
    trainer = job["spec"]["template"]["spec"]["containers"][0]
    assert trainer["terminationMessagePolicy"] == "FallbackToLogsOnError"
    seconds, error = pulumi_job_error(job, [(3600.0, 3, reason, False)])
    assert seconds < 60 and error.startswith("[BackoffLimitExceeded]")
    assert "20180523.5" in error and reason in error
    # Before: a gate failure surfaced only in the waiter, when the Deployment's rollout deadline passed.
    deployment_wait = int(dotted[1]["metadata"]["annotations"]["pulumi.com/timeoutSeconds"])
    assert deployment_wait >= 10 * 60 > 10 * seconds


def test_a_pod_lost_with_its_node_is_replaced_not_counted(dotted):
    job, _, _ = dotted
    seconds, error = pulumi_job_error(
        job, [(600.0, 137, "node lost", True), (4200.0, 3, "below the gate", False)]
    )
    assert error.startswith("[BackoffLimitExceeded]") and "below the gate" in error
    assert seconds - (4200.0 - 600.0) < 60  # the failure of the replacement decides, at once


def test_scorer_pods_spread_over_nodes_and_stop_after_the_endpoints(dotted):
    _, deployment, _ = dotted
    pod = deployment["spec"]["template"]["spec"]
    [spread] = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["maxSkew"] == 1
    assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # a one-node cluster still schedules
    [scorer] = pod["containers"]
    pre_stop = scorer["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert 0 < pre_stop < pod["terminationGracePeriodSeconds"]


def test_only_never_pushed_local_images_skip_the_pull_and_digest_checks(dotted, local_first):
    skips = {"CKV_K8S_15", "CKV_K8S_43"}

    def skipped(obj):
        annotations = obj["metadata"].get("annotations", {})
        return {v.split("=")[0] for k, v in annotations.items() if k.startswith("checkov.io/skip")}

    job, deployment, _ = dotted
    assert skipped(job) == skipped(deployment) == set()  # dev: pushed, by digest
    [local_job] = local_first.k8s("Job")
    [local_deployment] = local_first.k8s("Deployment")
    assert skipped(local_job) == skipped(local_deployment) == skips
    prebuilt = render("local", {"build": "1", "images": "prebuilt"})  # tags in the nodes' store
    assert {frozenset(skipped(o)) for o in prebuilt.k8s("Job") + prebuilt.k8s("Deployment")} == {
        frozenset(skips)
    }
    pushed = render("local", {"build": "1", "localRegistry": "localhost:5001"})  # pulled by digest
    assert all(
        "@sha256:" in c["image"]
        for c in pushed.k8s("Deployment")[0]["spec"]["template"]["spec"]["containers"]
    )
    assert {frozenset(skipped(o)) for o in pushed.k8s("Job") + pushed.k8s("Deployment")} == {frozenset()}
