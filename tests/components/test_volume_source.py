"""The volume a source stack exports of its model share, and the read-only volume a promoting stack
makes of it."""

import pytest

from components import volume_source
from components.volume_source import VolumeSourceError, export_of, read, read_only_spec

BOUND_HOSTPATH = {  # a local provisioner's volume, as the API server returns it
    "accessModes": ["ReadWriteOnce"],
    "capacity": {"storage": "5Gi"},
    "claimRef": {"namespace": "mlpipeline-dev", "name": "models", "uid": "1c0f"},
    "hostPath": {"path": "/var/lib/volumes/3", "type": ""},
    "persistentVolumeReclaimPolicy": "Delete",
    "storageClassName": "standard",
    "volumeMode": "Filesystem",
    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": []}]}},
}


def test_the_export_keeps_what_locates_the_files_and_drops_the_binding():
    assert export_of(BOUND_HOSTPATH, "claim dev/models") == {
        "hostPath": {"path": "/var/lib/volumes/3", "type": ""},
        "nodeAffinity": BOUND_HOSTPATH["nodeAffinity"],
    }


@pytest.mark.parametrize(
    "spec, fields",
    [
        ({"capacity": {"storage": "1Gi"}}, "none"),
        ({"hostPath": {"path": "/a"}, "nfs": {"path": "/b"}}, "hostPath, nfs"),
    ],
)
def test_a_volume_that_is_not_one_source_is_refused_naming_its_fields(spec, fields):
    with pytest.raises(
        VolumeSourceError, match=f"claim dev/models is not one volume source: fields {fields}"
    ):
        export_of(spec, "claim dev/models")


def test_a_failed_read_names_the_claim():
    def unreachable(namespace, claim):
        raise ConnectionRefusedError("connection refused")

    token = volume_source.READER.set(unreachable)
    try:
        with pytest.raises(VolumeSourceError, match="claim mlpipeline-dev/models could not be read.*refused"):
            read("mlpipeline-dev", "models")
    finally:
        volume_source.READER.reset(token)


def spec_of(volume, stage_secret=None):
    return read_only_spec(
        volume, namespace="mlpipeline-prod", claim="promotion-source", size="5Gi", stage_secret=stage_secret
    )


def test_a_hostpath_source_is_reserved_read_only_for_the_promoting_claim():
    spec = spec_of(export_of(BOUND_HOSTPATH, "claim"))
    assert (
        spec["hostPath"] == BOUND_HOSTPATH["hostPath"]
        and spec["nodeAffinity"] == BOUND_HOSTPATH["nodeAffinity"]
    )
    assert spec["accessModes"] == ["ReadOnlyMany"] and spec["storageClassName"] == ""
    assert spec["claimRef"] == {"namespace": "mlpipeline-prod", "name": "promotion-source"}
    assert spec["persistentVolumeReclaimPolicy"] == "Retain"  # the files are the source's
    assert "mountOptions" not in spec  # a hostPath takes none: the claim and the mount are read-only


def test_nfs_and_csi_sources_are_read_only_and_mount_ro():
    nfs = spec_of({"nfs": {"server": "files", "path": "/models"}, "mountOptions": ["rw", "nfsvers=4.1"]})
    assert nfs["nfs"]["readOnly"] is True and nfs["mountOptions"] == ["ro", "nfsvers=4.1"]
    csi = spec_of({"csi": {"driver": "nfs.csi.k8s.io", "volumeHandle": "files#models"}})
    # only an Azure Files handle is self-chosen: any other driver's handle names the volume
    assert csi["csi"] == {"driver": "nfs.csi.k8s.io", "volumeHandle": "files#models", "readOnly": True}


def test_a_csi_source_with_a_node_stage_secret_needs_the_promoting_stacks_own():
    share = {
        "csi": {"driver": "file.csi.azure.com", "volumeHandle": "h", "nodeStageSecretRef": {"name": "s"}}
    }
    with pytest.raises(
        VolumeSourceError, match="needs a node-stage secret, and the source offers no credentials"
    ):
        spec_of(share)
    csi = spec_of(share, stage_secret="promotion-source-storage")["csi"]
    assert csi["nodeStageSecretRef"] == {"name": "promotion-source-storage", "namespace": "mlpipeline-prod"}
    assert share["csi"]["nodeStageSecretRef"] == {"name": "s"}  # the export itself is left as it was
