"""The model share: Azure Files behind a static ReadWriteMany volume, or a local claim."""

import pytest

from local.mocks import MOCK_SECRETS


def one(rendering, type_):
    [resource] = rendering.of_type(type_)
    return resource


def test_azure_storage_account_is_locked_down(dev):
    account = one(dev, "azure-native:storage:StorageAccount").inputs
    assert account["enableHttpsTrafficOnly"] is True
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["allowBlobPublicAccess"] is False
    assert account["accountName"].startswith("mlp") and 3 <= len(account["accountName"]) <= 24
    container = one(dev, "azure-native:storage:BlobContainer").inputs
    assert container["publicAccess"] == "None"


def test_azure_share_is_bound_read_write_many_through_the_csi_driver(dev):
    share = one(dev, "azure-native:storage:FileShare").inputs
    volume = dev.k8s("PersistentVolume")[0]
    claim = dev.k8s("PersistentVolumeClaim")[0]
    csi = volume["spec"]["csi"]
    assert csi["driver"] == "file.csi.azure.com"
    assert csi["volumeAttributes"] == {"shareName": share["shareName"]}
    assert csi["nodeStageSecretRef"] == {"name": "azure-storage", "namespace": "mlpipeline-dev"}
    account = one(dev, "azure-native:storage:StorageAccount").inputs["accountName"]
    assert (
        csi["volumeHandle"] == f"mlpipeline-dev-{account}-{share['shareName']}"
    )  # no "#": the driver refuses it
    assert volume["spec"]["accessModes"] == claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["volumeName"] == volume["metadata"]["name"] == "mlpipeline-dev-models"
    assert claim["spec"]["storageClassName"] == volume["spec"]["storageClassName"] == ""
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    # Reserved for our claim: no other claim in the cluster can bind the models volume.
    assert volume["spec"]["claimRef"] == {"namespace": "mlpipeline-dev", "name": "models"}
    assert "readOnly" not in csi and "ro" not in volume["spec"]["mountOptions"]  # read-write: the default
    assert "uid=10001" in volume["spec"]["mountOptions"]  # the apps' user owns what the trainer writes


def test_account_key_reaches_the_cluster_only_as_a_secret(dev):
    [secret] = [
        r for r in dev.resources if r.kind == "Secret" and r.inputs["metadata"]["name"] == "azure-storage"
    ]
    assert secret.inputs["stringData"]["azurestorageaccountkey"] == MOCK_SECRETS["storage_key"]
    assert secret.public_inputs["stringData"] == "[secret]"


def test_local_claim_uses_the_default_class_and_is_not_awaited(local_first):
    [claim] = local_first.k8s("PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "models"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and "storageClassName" not in claim["spec"]
    assert claim["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"  # modelShareGiB of Pulumi.local.yaml
    assert not [r for r in local_first.resources if r.type.startswith("azure-native:")]


@pytest.mark.parametrize(
    "extra, mode, class_name",
    [
        ({"localAccessMode": "ReadWriteMany", "localStorageClass": "nfs"}, "ReadWriteMany", "nfs"),
    ],
)
def test_local_claim_can_ask_for_another_class_and_mode(extra, mode, class_name):
    from local.render import render

    rendering = render("local", {"build": "1", "gitSha": "abc", **extra})
    [claim] = rendering.k8s("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == [mode] and claim["spec"]["storageClassName"] == class_name
