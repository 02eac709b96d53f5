"""Where the trainer reads the ETL's CSVs (docs/CONTRACTS.md, sections 2 and 3), as container env + volumes.

    blob    BLOB_STORAGE_ACCOUNT / _CONTAINER / _CSV_FOLDER [/ _ENDPOINT]; the key is a file of a
            mounted Kubernetes Secret, named by BLOB_STORAGE_KEY_FILE (never an env value: those
            show in `kubectl describe` and in any dump of the environment): the model store's
            Secret for the stack's own account (azure), or a Secret made here from the secret
            config `blobKey` for another account (Azurite on a local cluster).
    volume  DATA_DIR under a read-only mount of the claim `dataClaim`.

The env and volumes are rendered into each release's Job, so a release keeps the folder it was
trained on even when `csvFolder` moves on to the next day's drop. `egress` is what the trainer's
NetworkPolicy lets out beside DNS (components/release_guards.py): the blob endpoint's port (443
for Azure, the port of `blobEndpoint` otherwise), to any address, in the cluster or outside
(NetworkPolicy selects by address, not by host name); nothing for a claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s

from components import secret_file
from components.model_store import ACCOUNT_KEY_KEY, ModelStore

DATA_MOUNT = "/mnt/data"
BLOB_KEY_MOUNT = "/var/run/secrets/blob-storage"
BLOB_KEY_FILE = "key"
BLOB_SECRET = "blob-credentials"
BLOB_SECRET_KEY = "accountKey"


@dataclass(frozen=True)
class DataSource:
    kind: str  # "blob" | "volume"
    csv_folder: str  # "" = the claim's root (volume only)
    container: str | None = None  # blob; None = the model store's CSV container (azure)
    account: str | None = None  # blob; None = the model store's account (azure)
    endpoint: str | None = None  # blob
    claim: str | None = None  # volume

    @property
    def uses_store_account(self) -> bool:
        return self.kind == "blob" and self.account is None


@dataclass(frozen=True)
class TrainingDataArgs:
    source: DataSource
    namespace: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    store: ModelStore | None = None  # the stack's own account (azure blob without blobAccount)
    blob_key: pulumi.Output[str] | None = None  # secret, for source.account


class TrainingData(pulumi.ComponentResource):
    env: list[dict[str, Any]]  # env entries for the trainer container
    volumes: list[dict[str, Any]]  # pod volumes
    mounts: list[dict[str, Any]]  # trainer volume mounts
    egress: list[dict[str, Any]]  # NetworkPolicy egress rules of the trainer beyond DNS
    secret: k8s.core.v1.Secret | None  # the blob key Secret this component made, if any
    location: pulumi.Output[str]  # human-readable source, for the stack outputs

    def __init__(self, name: str, args: TrainingDataArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlpipeline:training_data:TrainingData", name, None, opts)
        self.secret = None
        self.volumes, self.mounts, self.egress = [], [], []
        source = args.source
        if source.kind == "volume":
            data_dir = f"{DATA_MOUNT}/{source.csv_folder}" if source.csv_folder else DATA_MOUNT
            self.env = [{"name": "DATA_DIR", "value": data_dir}]
            self.volumes = [
                {"name": "data", "persistentVolumeClaim": {"claimName": source.claim, "readOnly": True}}
            ]
            self.mounts = [{"name": "data", "mountPath": DATA_MOUNT, "readOnly": True}]
            self.location = pulumi.Output.from_input(f"pvc://{source.claim}/{source.csv_folder}")
        else:
            account, container, key_ref = self._blob(name, args)
            self.volumes = [secret_file.volume("blob-key", key_ref["name"], key_ref["key"], BLOB_KEY_FILE)]
            self.mounts = [{"name": "blob-key", "mountPath": BLOB_KEY_MOUNT, "readOnly": True}]
            self.env = [
                {"name": "BLOB_STORAGE_ACCOUNT", "value": account},
                {"name": "BLOB_STORAGE_KEY_FILE", "value": f"{BLOB_KEY_MOUNT}/{BLOB_KEY_FILE}"},
                {"name": "BLOB_STORAGE_CONTAINER", "value": container},
                {"name": "BLOB_STORAGE_CSV_FOLDER", "value": source.csv_folder},
            ]
            if source.endpoint:
                self.env.append({"name": "BLOB_STORAGE_ENDPOINT", "value": source.endpoint})
            self.egress = [storage_egress(source.endpoint)]
            self.location = pulumi.Output.concat("blob://", account, "/", container, "/", source.csv_folder)
        self.register_outputs({"location": self.location})

    def _blob(self, name: str, args: TrainingDataArgs) -> tuple[pulumi.Input[str], pulumi.Input[str], dict]:
        source, store = args.source, args.store
        if source.uses_store_account:  # the stack's own storage account
            if store is None or store.account_name is None or store.credentials_secret_name is None:
                raise ValueError("dataSource blob without blobAccount needs the azure model store's account")
            container = source.container or store.csv_container
            assert container is not None  # the azure model store has a CSV container
            return (
                store.account_name,
                container,
                {"name": store.credentials_secret_name, "key": ACCOUNT_KEY_KEY},
            )
        if args.blob_key is None:
            raise ValueError(f"blobAccount {source.account} needs the secret config blobKey")
        if source.account is None or source.container is None:
            raise ValueError(
                f"blobAccount {source.account} needs dataContainer: the container of the CSVs there"
            )
        self.secret = secret_file.secret(
            f"{name}-blob-key",
            BLOB_SECRET,
            BLOB_SECRET_KEY,
            args.blob_key,
            args.namespace,
            args.labels,
            args.annotations,
            self,
        )
        return source.account, source.container, {"name": BLOB_SECRET, "key": BLOB_SECRET_KEY}


def storage_egress(endpoint: str | None) -> dict[str, Any]:
    """The NetworkPolicy egress rule to a blob endpoint (None: Azure's, https): its port, to any
    address outside the cluster (Azure Storage) or any pod in it (Azurite)."""
    url = urlsplit(endpoint or "https://blob.core.windows.net")
    port = url.port or (443 if url.scheme == "https" else 80)
    return {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"namespaceSelector": {}}],
        "ports": [{"port": port, "protocol": "TCP"}],
    }
