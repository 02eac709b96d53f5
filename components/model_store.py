"""The model share every pod of the stack mounts at /mnt/models (docs/CONTRACTS.md, section 1).

cloud azure: a storage account (HTTPS only, TLS 1.2, no public blob access) with a file share for
the models and a blob container for the ETL's CSVs; the account key goes only into the Kubernetes
Secret the Azure Files CSI driver reads, and a static ReadWriteMany PersistentVolume + claim bind
the share, so every release of every node sees the same files.

cloud local: a claim on the cluster's default StorageClass (or `localStorageClass`). kind and
minikube only offer ReadWriteOnce, which still lets every pod on their single node share the
volume: that is the default (`localAccessMode`); a multi-node cluster needs ReadWriteMany.
The claim is not awaited: a WaitForFirstConsumer class binds it only once the training pod runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import storage

from components.azure_group import AzureGroup, global_name
from components.labels import object_metadata
from components.release_spec import RUN_AS  # the apps' user: owner of the files on the SMB share

CLAIM = "models"  # the claim every release mounts; its name is part of every release record
SHARE = "models"
CSV_CONTAINER = "csv"
CREDENTIALS_SECRET = "azure-storage"  # keys are the ones the Azure Files CSI driver expects
ACCOUNT_NAME_KEY = "azurestorageaccountname"
ACCOUNT_KEY_KEY = "azurestorageaccountkey"
CSI_DRIVER = "file.csi.azure.com"


@dataclass(frozen=True)
class ModelStoreArgs:
    namespace: str
    size_gib: int
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    azure: AzureGroup | None = None  # cloud azure
    storage_class: str | None = None  # cloud local; None = the cluster's default
    access_mode: str = "ReadWriteOnce"  # cloud local


class ModelStore(pulumi.ComponentResource):
    claim_name: str
    claim: k8s.core.v1.PersistentVolumeClaim
    account_name: pulumi.Output[str] | None  # azure
    csv_container: pulumi.Output[str] | None  # azure
    share_name: pulumi.Output[str] | None  # azure
    credentials_secret_name: str | None  # azure: Secret holding the account name and key
    credentials_secret: k8s.core.v1.Secret | None
    account_key: pulumi.Output[str] | None  # azure; secret, for the stacks that promote from this one

    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlpipeline:model_store:ModelStore", name, None, opts)
        self._name = name
        self._args = args
        self.claim_name = CLAIM
        self.account_name = self.csv_container = self.share_name = None
        self.credentials_secret_name = None
        self.credentials_secret = None
        self.account_key = None
        if args.azure is not None:
            self._azure_files(args.azure)
        else:
            self._local_claim()
        self.register_outputs(
            {
                "claimName": self.claim_name,
                "accountName": self.account_name,
                "shareName": self.share_name,
                "csvContainer": self.csv_container,
            }
        )

    def _metadata(self, name: str, **annotations: str) -> dict:
        args = self._args
        return object_metadata(name, args.namespace, args.labels, {**args.annotations, **annotations})

    def _azure_files(self, azure: AzureGroup) -> None:
        args, child = self._args, pulumi.ResourceOptions(parent=self)
        account = storage.StorageAccount(
            f"{self._name}-account",
            account_name=global_name("mlp", azure.unique_suffix),
            resource_group_name=azure.name,
            location=azure.location,
            kind="StorageV2",
            sku={"name": "Standard_LRS"},
            enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2",
            allow_blob_public_access=False,
            tags=dict(azure.tags),
            opts=child,
        )
        share = storage.FileShare(
            f"{self._name}-share",
            account_name=account.name,
            resource_group_name=azure.name,
            share_name=SHARE,
            share_quota=args.size_gib,
            enabled_protocols="SMB",
            opts=child,
        )
        container = storage.BlobContainer(
            f"{self._name}-csv",
            account_name=account.name,
            resource_group_name=azure.name,
            container_name=CSV_CONTAINER,
            public_access="None",
            opts=child,
        )
        keys = storage.list_storage_account_keys_output(
            resource_group_name=azure.name,
            account_name=account.name,
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        account_key = pulumi.Output.secret(keys.keys[0].value)
        self.account_key = account_key
        self.credentials_secret = k8s.core.v1.Secret(
            f"{self._name}-credentials",
            metadata=self._metadata(CREDENTIALS_SECRET),
            type="Opaque",
            string_data={ACCOUNT_NAME_KEY: account.name, ACCOUNT_KEY_KEY: account_key},
            opts=child,
        )
        self.claim = azure_files_claim(
            self._name,
            namespace=args.namespace,
            claim=CLAIM,
            metadata={"labels": dict(args.labels), "annotations": dict(args.annotations)},
            size_gib=args.size_gib,
            share_name=share.name,
            secret_name=CREDENTIALS_SECRET,
            volume_handle=pulumi.Output.concat(azure.name, "-", account.name, "-", share.name),
            mount_options=[f"uid={RUN_AS}", f"gid={RUN_AS}", "dir_mode=0750", "file_mode=0640", "actimeo=30"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.credentials_secret]),
        )
        self.account_name = account.name
        self.share_name = share.name
        self.csv_container = container.name
        self.credentials_secret_name = CREDENTIALS_SECRET

    def _local_claim(self) -> None:
        args = self._args
        spec: dict = {
            "accessModes": [args.access_mode],
            "resources": {"requests": {"storage": f"{args.size_gib}Gi"}},
        }
        if args.storage_class:
            spec["storageClassName"] = args.storage_class
        self.claim = k8s.core.v1.PersistentVolumeClaim(
            f"{self._name}-claim",
            metadata=self._metadata(CLAIM, **{"pulumi.com/skipAwait": "true"}),
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self),
        )


def azure_files_claim(
    name: str,
    *,
    namespace: str,
    claim: str,
    metadata: Mapping,
    size_gib: int,
    share_name: pulumi.Input[str],
    secret_name: str,
    volume_handle: pulumi.Input[str],
    mount_options: list[str],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.PersistentVolumeClaim:
    """A static PersistentVolume on an Azure file share, reserved for one claim, and that claim.

    Static (no StorageClass, no provisioner) because the share is ours, made by Pulumi; Retain
    because the files outlive the Kubernetes objects. A stack promoting from this one mounts the
    same share read-only (components/volume_source.py).
    """
    spec = {
        "capacity": {"storage": f"{size_gib}Gi"},
        "accessModes": ["ReadWriteMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": "",
        "claimRef": {"namespace": namespace, "name": claim},  # no other claim can take it
        "mountOptions": [*mount_options, "mfsymlinks", "cache=strict", "nosharesock"],
        "csi": {
            "driver": CSI_DRIVER,
            # Unique per share across the cluster; the driver refuses '#' in a
            # self-chosen handle (its own handles use it as a separator).
            "volumeHandle": volume_handle,
            "volumeAttributes": {"shareName": share_name},
            "nodeStageSecretRef": {"name": secret_name, "namespace": namespace},
        },
    }
    return static_claim(name, namespace=namespace, claim=claim, metadata=metadata, spec=spec, opts=opts)


def static_claim(
    name: str, *, namespace: str, claim: str, metadata: Mapping, spec: Mapping, opts: pulumi.ResourceOptions
) -> k8s.core.v1.PersistentVolumeClaim:
    """The PersistentVolume `spec` (reserved for `claim` by its claimRef) and that claim, with the
    volume's access modes and size: the volume under `opts`, the claim beside it."""
    volume = k8s.core.v1.PersistentVolume(
        f"{name}-volume",
        # Cluster-scoped: the namespace in the name keeps two stacks on one cluster apart.
        metadata={**metadata, "name": f"{namespace}-{claim}"},
        spec=spec,
        opts=opts,
    )
    return k8s.core.v1.PersistentVolumeClaim(
        f"{name}-claim",
        metadata={**metadata, "name": claim, "namespace": namespace},
        spec={
            "accessModes": spec["accessModes"],
            "storageClassName": "",
            "volumeName": volume.metadata.name,
            "resources": {"requests": {"storage": spec["capacity"]["storage"]}},
        },
        opts=pulumi.ResourceOptions(parent=opts.parent),
    )
