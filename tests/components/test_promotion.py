"""Promotion: the copy Job in a promoted record, the source checks, and the read-only source access."""

import dataclasses

import pulumi
import pytest

from components import release_spec
from components.build import Build
from components.config_reader import DEFAULT_RESOURCES
from components.promotion import (
    PromotionError,
    Source,
    SourceAccess,
    SourceAccessArgs,
    promoted_record,
    promotion_job,
    source_record,
)
from local.render import MASK, render_components
from tests.components.crd_schemas import validate
from tests.components.job_await import pulumi_job_error

DIGEST = "@sha256:" + "a" * 64
IMAGES = {app: f"mlpdev.azurecr.io/mlpipeline/{app}{DIGEST}" for app in ("trainer", "waiter", "scorer")}
KEY = "c291cmNlLWFjY291bnQta2V5LWJhc2U2NA=="
PASSWORD = "registry-password-5d1e"


def template(namespace="mlpipeline-prod", train_timeout_seconds=1800):
    return release_spec.ReleaseTemplate(
        namespace=namespace,
        models_claim="models",
        data_env=[],
        data_volumes=[],
        data_mounts=[],
        trainer_env={},
        gate_min_ndcg=0.01,
        gate_min_lift=1.1,
        wait_timeout_seconds=600,
        train_timeout_seconds=train_timeout_seconds,
        rollout_timeout_seconds=900,
        replicas=2,
        resources=DEFAULT_RESOURCES,
        pull_secret="registry-pull",
    )


def source_build(build="153"):
    """The source's release of `build`: its images, git sha and created time."""
    return release_spec.BuildInfo(Build(build), 4, "2026-11-20T03:00:00Z", "0123abc", IMAGES)


def test_promoted_record_swaps_training_for_the_copy_job_and_keeps_the_rest():
    trained = release_spec.render(template(), source_build())
    record = promoted_record(template(), source_build(), "dev")
    assert record["promotedFrom"] == "dev"
    assert record["objects"]["deployment"] == trained["objects"]["deployment"]
    assert record["objects"]["service"] == trained["objects"]["service"]
    assert record["images"] == IMAGES
    job = record["objects"]["job"]
    validate(job)
    assert job["metadata"]["name"] == "promote-153"
    assert job["metadata"]["namespace"] == "mlpipeline-prod"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "promotion"
    assert job["metadata"]["annotations"]["pulumi.com/timeoutSeconds"] == str(
        1800 + release_spec.AWAIT_MARGIN_SECONDS
    )
    assert job["metadata"]["annotations"]["mlpipeline/git-sha"] == "0123abc"


def test_copy_job_runs_the_waiter_image_as_modelshare_promote():
    job = promotion_job(template(), source_build())
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGES["waiter"]
    assert container["command"] == ["python", "-m", "modelshare.promote"]
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "SOURCE_MODELFOLDER": "/mnt/source/153",
        "MODELFOLDER": "/mnt/models/153",
        "BUILD_NUMBER": "153",
        "GATE_MIN_NDCG": "0.01",  # this stack's gate (template()), not the source's
        "GATE_MIN_LIFT": "1.1",
    }
    assert pod["restartPolicy"] == "Never"
    assert pod["imagePullSecrets"] == [{"name": "registry-pull"}]
    assert job["spec"]["activeDeadlineSeconds"] == 1800


def test_copy_job_holds_the_build_to_this_stacks_gate_as_its_waiter_does():
    champion = dataclasses.replace(template(), champion="152", champion_tolerance=0.02)
    record = promoted_record(champion, source_build(), "dev")
    copier = record["objects"]["job"]["spec"]["template"]["spec"]["containers"][0]
    waiter = record["objects"]["deployment"]["spec"]["template"]["spec"]["initContainers"][0]

    def gate(container):
        return {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("GATE_")}

    assert (
        gate(copier)
        == gate(waiter)
        == {
            "GATE_MIN_NDCG": "0.01",
            "GATE_MIN_LIFT": "1.1",
            "GATE_CHAMPION_MODELFOLDER": "/mnt/models/152",
            "GATE_CHAMPION_TOLERANCE": "0.02",
        }
    )


@pytest.mark.parametrize(
    "refusal",
    [
        "promotion of build 153 refused: it is below this stack's quality gate: "
        "model.ndcg_at_k 0.0080 < GATE_MIN_NDCG 0.0100",
        "promotion of build 153 from /mnt/source/153 failed: /mnt/source/153/model/item_ids.json has sha256 "
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, the manifest says 2c26b46b",
    ],
)
def test_a_refused_copy_fails_the_update_within_a_minute_naming_the_gate_or_the_file(refusal):
    job = promotion_job(template(), source_build())
    copier = job["spec"]["template"]["spec"]["containers"][0]
    assert copier["terminationMessagePolicy"] == "FallbackToLogsOnError"
    seconds, error = pulumi_job_error(job, [(60.0, 5, refusal, False)])
    assert seconds < 60 and error.startswith("[BackoffLimitExceeded]") and refusal in error
    # Before: only the waiter checked this stack's gate, crash-looping until the rollout deadline.
    assert (
        release_spec.render(template(), source_build())["objects"]["deployment"]["spec"][
            "progressDeadlineSeconds"
        ]
        >= 10 * 60
        > 10 * seconds
    )


def test_a_copy_pod_lost_with_its_node_is_replaced_not_counted():
    job = promotion_job(template(), source_build())
    seconds, error = pulumi_job_error(
        job, [(60.0, 137, "node lost", True), (400.0, 5, "below this stack's quality gate", False)]
    )
    assert error.startswith("[BackoffLimitExceeded]") and seconds - (400.0 - 60.0) < 60


def test_source_share_is_mounted_read_only_and_this_stacks_share_writable():
    pod = promotion_job(template(), source_build())["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["source"]["persistentVolumeClaim"] == {"claimName": "promotion-source", "readOnly": True}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "models"}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["source"] == {"name": "source", "mountPath": "/mnt/source", "readOnly": True}
    assert mounts["models"]["readOnly"] is False


def test_copy_job_runs_under_the_releases_restricted_profile():
    record = promoted_record(template(), source_build(), "dev")
    pod = record["objects"]["job"]["spec"]["template"]["spec"]
    release_pod = record["objects"]["deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == release_pod["securityContext"]
    assert pod["containers"][0]["securityContext"] == release_pod["initContainers"][0]["securityContext"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_copy_job_has_the_training_jobs_resources_whose_place_it_takes():
    pod = promotion_job(template(), source_build())["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == DEFAULT_RESOURCES["trainer"]
    assert float(pod["containers"][0]["resources"]["limits"]["cpu"]) >= 2  # modelshare.promote.COPY_THREADS


def test_build_with_dots_keeps_its_folder_and_gets_a_dns_job_name():
    job = promotion_job(template(), source_build("20180523.5"))
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert job["metadata"]["name"] == "promote-20180523-5"
    assert {k: env[k] for k in ("SOURCE_MODELFOLDER", "MODELFOLDER", "BUILD_NUMBER")} == {
        "SOURCE_MODELFOLDER": "/mnt/source/20180523.5",
        "MODELFOLDER": "/mnt/models/20180523.5",
        "BUILD_NUMBER": "20180523.5",
    }


def test_only_a_live_source_release_pinned_by_digest_can_be_promoted():
    record = {"build": "153", "images": IMAGES, "modelFolder": "/mnt/models/153"}
    assert source_record("153", "dev", {"153": record}) == record
    with pytest.raises(PromotionError, match="build 150 is not a live release of stack dev .*153"):
        source_record("150", "dev", {"153": record})
    tagged = {**record, "images": {**IMAGES, "scorer": "mlpipeline/scorer:153"}}
    with pytest.raises(PromotionError, match=r"not pinned by digest \(scorer\)"):
        source_record("153", "dev", {"153": tagged})
    with pytest.raises(PromotionError, match="model folder '/elsewhere'"):
        source_record("153", "dev", {"153": {**record, "modelFolder": "/elsewhere"}})


# The volume dev's model share is bound to, as dev exports it (components/volume_source.py).
AZURE_SHARE = {
    "csi": {
        "driver": "file.csi.azure.com",
        "volumeHandle": "mlpdev-mlpdevaccount-models",
        "volumeAttributes": {"shareName": "models"},
        "nodeStageSecretRef": {"name": "azure-storage", "namespace": "mlpipeline-dev"},
    },
    "mountOptions": ["uid=1000", "gid=1000", "dir_mode=0750", "file_mode=0640", "mfsymlinks"],
}
LOCAL_SHARE = {"hostPath": {"path": "/var/lib/volumes/7", "type": ""}}


def source_access(account_key=KEY, password=PASSWORD, volume=AZURE_SHARE, azure=True):
    def declare():
        source = Source(
            stack="dev",
            record=None,
            volume=volume,
            account="mlpdevaccount" if azure else None,
            registry="mlpdev.azurecr.io" if azure else None,
            credentials=pulumi.Output.from_input(  # plain on purpose: the component must keep it secret
                {"storageKey": account_key, "registryUsername": "mlpdev", "registryPassword": password}
            )
            if azure
            else None,
        )
        return SourceAccess(
            "source",
            SourceAccessArgs(
                namespace="mlpipeline-prod",
                source=source,
                labels={"app.kubernetes.io/part-of": "mlpipeline"},
                annotations={"mlpipeline/build": "153"},
            ),
        ).claim_name

    rendering = render_components(declare)
    for child in rendering.descendants(rendering.one("SourceAccess").urn):
        validate(child.inputs)
    return rendering


def test_source_volume_is_read_only_azure_files_reserved_for_its_claim():
    rendering = source_access()
    volume = rendering.one("PersistentVolume").inputs
    claim = rendering.one("PersistentVolumeClaim").inputs
    spec = volume["spec"]
    assert spec["accessModes"] == ["ReadOnlyMany"] and claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert spec["csi"]["driver"] == "file.csi.azure.com"
    assert spec["csi"]["readOnly"] is True
    assert "ro" in spec["mountOptions"]
    assert spec["csi"]["volumeAttributes"] == {"shareName": "models"}
    # its own handle: a node stages a handle once, and dev's staging of the share is read-write
    assert spec["csi"]["volumeHandle"] == "mlpipeline-prod-promotion-source-mlpdev-mlpdevaccount-models"
    assert spec["mountOptions"][0] == "ro" and "uid=1000" in spec["mountOptions"]
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"
    assert spec["csi"]["nodeStageSecretRef"] == {
        "name": "promotion-source-storage",
        "namespace": "mlpipeline-prod",
    }
    assert spec["claimRef"] == {"name": "promotion-source", "namespace": "mlpipeline-prod"}
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"] == "mlpipeline-prod-promotion-source"
    assert spec["storageClassName"] == claim["spec"]["storageClassName"] == ""
    assert rendering.result == claim["metadata"]["name"] == "promotion-source"


def test_source_credentials_reach_the_engine_only_as_secrets():
    rendering = source_access()
    storage, pull = rendering.named("source-storage"), rendering.named("source-pull-secret")
    assert storage.public_inputs["stringData"] == pull.public_inputs["stringData"] == MASK
    assert storage.inputs["stringData"]["azurestorageaccountkey"] == KEY
    assert PASSWORD in pull.inputs["stringData"][".dockerconfigjson"]
    assert pull.inputs["metadata"]["name"] == "registry-pull"
    # Nowhere in plain text: not in the component's own state, the volume or the claim.
    for resource in rendering.resources:
        if resource not in (storage, pull):
            assert KEY not in repr(resource.public_inputs) and PASSWORD not in repr(resource.public_inputs)
            assert KEY not in repr(resource.inputs) and PASSWORD not in repr(resource.inputs), resource.name


def test_a_local_source_is_the_same_folder_read_only_with_no_secret():
    rendering = source_access(volume=LOCAL_SHARE, azure=False)
    spec = rendering.one("PersistentVolume").inputs["spec"]
    assert spec["hostPath"] == LOCAL_SHARE["hostPath"] and "mountOptions" not in spec
    assert spec["accessModes"] == ["ReadOnlyMany"]
    assert spec["claimRef"] == {"name": "promotion-source", "namespace": "mlpipeline-prod"}
    assert rendering.of_type("kubernetes:core/v1:Secret") == []  # the nodes pull from localRegistry


def test_a_source_volume_that_is_not_one_volume_source_is_refused_naming_it():
    with pytest.raises(PromotionError, match="stack dev: .* is not one volume source: fields hostPath, nfs"):
        source_access(volume={**LOCAL_SHARE, "nfs": {"server": "n", "path": "/"}}, azure=False)
