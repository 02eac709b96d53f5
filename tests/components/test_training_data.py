"""Where the trainer reads its CSVs: a read-only claim, or blob storage with the key from a Secret."""

from tests.components.conftest import AZURITE_KEY


def trainer_of(rendering):
    job = rendering.k8s("Job")[0]
    return job["spec"]["template"]["spec"], job["spec"]["template"]["spec"]["containers"][0]


def env(container):
    return {e["name"]: e for e in container["env"]}


def test_volume_source_mounts_the_claim_read_only_at_data_dir(local_first):
    pod, trainer = trainer_of(local_first)
    assert env(trainer)["DATA_DIR"]["value"] == "/mnt/data"
    assert {"name": "data", "mountPath": "/mnt/data", "readOnly": True} in trainer["volumeMounts"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "csv-data", "readOnly": True}} in pod["volumes"]
    assert not {"BLOB_STORAGE_ACCOUNT", "BLOB_STORAGE_KEY"} & set(env(trainer))


def test_azure_blob_source_reads_the_stacks_container_with_the_store_key(dev):
    _, trainer = trainer_of(dev)
    variables = env(trainer)
    account = dev.outputs["modelStore"]["account"]
    assert variables["BLOB_STORAGE_ACCOUNT"]["value"] == account
    assert variables["BLOB_STORAGE_CONTAINER"]["value"] == "csv"
    assert variables["BLOB_STORAGE_KEY"] == {
        "name": "BLOB_STORAGE_KEY",
        "valueFrom": {"secretKeyRef": {"name": "azure-storage", "key": "azurestorageaccountkey"}},
    }
    assert "DATA_DIR" not in variables


def test_azurite_source_gets_its_own_secret_and_endpoint(azurite):
    _, trainer = trainer_of(azurite)
    variables = env(trainer)
    assert variables["BLOB_STORAGE_ACCOUNT"]["value"] == "devstoreaccount1"
    assert variables["BLOB_STORAGE_ENDPOINT"]["value"] == "http://azurite.default.svc:10000/devstoreaccount1"
    ref = variables["BLOB_STORAGE_KEY"]["valueFrom"]["secretKeyRef"]
    [secret] = [r for r in azurite.resources if r.kind == "Secret" and r.inputs["metadata"]["name"] == ref["name"]]
    assert secret.inputs["stringData"][ref["key"]] == AZURITE_KEY
    assert secret.public_inputs["stringData"] == "[secret]"
    assert azurite.outputs["trainingData"] == "blob://devstoreaccount1/etl/2018/05/08"
