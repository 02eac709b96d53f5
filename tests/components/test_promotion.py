"""Promotion: the copy Job and the read-only, secret-authenticated mount of the source share."""


from components.promotion import Promotion, SourceShare
from tests.components.crd_schemas import validate
from tests.components.k8s_mocks import contains_secret, render

WAITER = "registry.example/waiter@sha256:" + "a" * 64
KEY = "c291cmNlLWFjY291bnQta2V5LWJhc2U2NA=="


def promote(build="153", dns_name="153", source_claim="promotion-source"):
    rendering = render(
        lambda: (
            Promotion(
                f"promote-{dns_name}",
                build=build,
                dns_name=dns_name,
                waiter_image=WAITER,
                models_claim="models",
                source_claim=source_claim,
                namespace="ml-prod",
                labels={"app.kubernetes.io/part-of": "mlpipeline", "app.kubernetes.io/version": build},
                annotations={"mlpipeline/build": build},
                timeout_seconds=5400,
            ).job_name
        )
    )
    job = rendering.one("Job")
    validate(job.object())
    return rendering, job


def source_share(account_key=KEY):
    rendering = render(
        lambda: (
            SourceShare(
                "promotion-source",
                account_name="mlpipelinedev",
                share_name="models",
                account_key=account_key,  # plain on purpose: the component must make it secret
                namespace="ml-prod",
                labels={"app.kubernetes.io/part-of": "mlpipeline"},
            ).claim_name
        )
    )
    for child in rendering.children_of("mlpipeline:promotion:SourceShare"):
        validate(child.object())
    return rendering


def test_job_runs_the_waiter_image_as_modelshare_promote_for_the_build():
    rendering, job = promote()
    obj = job.object()
    assert obj["metadata"]["name"] == "promote-153" and rendering.result == "promote-153"
    pod = obj["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == WAITER
    assert container["command"] == ["python", "-m", "modelshare.promote"]
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "SOURCE_MODELFOLDER": "/mnt/source/153",
        "MODELFOLDER": "/mnt/models/153",
        "BUILD_NUMBER": "153",
    }
    assert pod["restartPolicy"] == "Never"
    assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == "promotion"
    assert obj["metadata"]["annotations"] == {"mlpipeline/build": "153"}


def test_source_share_is_mounted_read_only_and_this_stacks_share_writable():
    _, job = promote()
    pod = job.object()["spec"]["template"]["spec"]
    volumes = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"]}
    assert volumes == {
        "models": {"claimName": "models"},
        "source": {"claimName": "promotion-source", "readOnly": True},
    }
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["source"] == {"name": "source", "mountPath": "/mnt/source", "readOnly": True}
    assert mounts["models"].get("readOnly") is not True


def test_job_runs_under_the_restricted_profile():
    _, job = promote()
    pod = job.object()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = pod["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_waiting_for_the_copy_follows_the_configured_timeout():
    _, job = promote()
    assert job.timeouts == {"create": "5400s", "update": "5400s"}
    assert job.object()["spec"]["activeDeadlineSeconds"] == 5400


def test_build_with_dots_keeps_its_folder_and_gets_a_dns_job_name():
    _, job = promote(build="20180523.5", dns_name="20180523-5")
    obj = job.object()
    assert obj["metadata"]["name"] == "promote-20180523-5"
    env = {e["name"]: e["value"] for e in obj["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MODELFOLDER"] == "/mnt/models/20180523.5"
    assert env["SOURCE_MODELFOLDER"] == "/mnt/source/20180523.5"
    assert env["BUILD_NUMBER"] == "20180523.5"


def test_source_volume_is_read_only_azure_files_reserved_for_its_claim():
    rendering = source_share()
    volume = rendering.one("PersistentVolume").object()["spec"]
    claim = rendering.one("PersistentVolumeClaim").object()
    secret = rendering.one("Secret").state
    assert volume["accessModes"] == ["ReadOnlyMany"] and claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert volume["csi"]["driver"] == "file.csi.azure.com"
    assert volume["csi"]["readOnly"] is True
    assert "ro" in volume["mountOptions"]
    assert volume["csi"]["volumeAttributes"] == {"shareName": "models"}
    assert "#" not in volume["csi"]["volumeHandle"]
    assert volume["persistentVolumeReclaimPolicy"] == "Retain"
    assert volume["csi"]["nodeStageSecretRef"] == {"name": secret["metadata"]["name"], "namespace": "ml-prod"}
    assert volume["claimRef"] == {"name": claim["metadata"]["name"], "namespace": "ml-prod"}
    assert claim["spec"]["volumeName"] == rendering.one("PersistentVolume").state["metadata"]["name"]
    assert volume["storageClassName"] == claim["spec"]["storageClassName"] == ""
    assert rendering.result == claim["metadata"]["name"] == "promotion-source"


def test_source_account_key_reaches_the_engine_only_as_a_secret():
    rendering = source_share()
    secret = rendering.one("Secret")
    assert contains_secret(secret.inputs["stringData"])
    assert secret.object()["stringData"] == {
        "azurestorageaccountname": "mlpipelinedev",
        "azurestorageaccountkey": KEY,
    }
    # Nowhere else in plain text: not in the component's own state, not in the volume or claim.
    for resource in rendering.resources:
        if resource is not secret:
            assert KEY not in repr(resource.inputs), resource.name
