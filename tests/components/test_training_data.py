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
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "csv-data", "readOnly": True}} in pod[
        "volumes"
    ]
    assert not {"BLOB_STORAGE_ACCOUNT", "BLOB_STORAGE_KEY_FILE"} & set(env(trainer))
    assert not [v for v in pod["volumes"] if "secret" in v]


def key_file(pod, trainer) -> tuple[str, str]:
    """(Secret name, key) of the file BLOB_STORAGE_KEY_FILE names, through the pod's volume."""
    path = env(trainer)["BLOB_STORAGE_KEY_FILE"]["value"]
    [mount] = [m for m in trainer["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]
    assert secret["defaultMode"] == 0o440  # the pod's group (fsGroup) reads it, nobody else
    [item] = [i for i in secret["items"] if path == f"{mount['mountPath']}/{i['path']}"]
    return secret["secretName"], item["key"]


def test_no_credential_is_an_env_value(dev, azurite):
    for rendering in (dev, azurite):
        _, trainer = trainer_of(rendering)
        assert not [e for e in trainer["env"] if "valueFrom" in e]
        assert "BLOB_STORAGE_KEY" not in env(trainer)


def test_azure_blob_source_reads_the_stacks_container_with_the_store_key(dev):
    pod, trainer = trainer_of(dev)
    variables = env(trainer)
    account = dev.outputs["modelStore"]["account"]
    assert variables["BLOB_STORAGE_ACCOUNT"]["value"] == account
    assert variables["BLOB_STORAGE_CONTAINER"]["value"] == "csv"
    assert key_file(pod, trainer) == ("azure-storage", "azurestorageaccountkey")
    assert "DATA_DIR" not in variables


def test_azurite_source_gets_its_own_secret_and_endpoint(azurite):
    pod, trainer = trainer_of(azurite)
    variables = env(trainer)
    assert variables["BLOB_STORAGE_ACCOUNT"]["value"] == "devstoreaccount1"
    assert variables["BLOB_STORAGE_ENDPOINT"]["value"] == "http://azurite.default.svc:10000/devstoreaccount1"
    name, key = key_file(pod, trainer)
    [secret] = [r for r in azurite.resources if r.kind == "Secret" and r.inputs["metadata"]["name"] == name]
    assert secret.inputs["stringData"][key] == AZURITE_KEY
    assert secret.public_inputs["stringData"] == "[secret]"
    assert azurite.outputs["trainingData"] == "blob://devstoreaccount1/etl/2018/05/08"
