"""Azure Container Registry and the pull Secret pods use; nothing of it on a local stack."""

import base64
import json

from components.registry import docker_config_json
from local.mocks import MOCK_SECRETS


def test_azure_stack_gets_a_registry_and_a_dockerconfigjson_pull_secret(dev):
    [acr] = dev.of_type("azure-native:containerregistry:Registry")
    assert acr.inputs["adminUserEnabled"] is True and acr.inputs["sku"] == {"name": "Basic"}
    [secret] = [
        r
        for r in dev.resources
        if r.kind == "Secret" and r.inputs["type"] == "kubernetes.io/dockerconfigjson"
    ]
    assert secret.public_inputs["stringData"] == "[secret]"
    auths = json.loads(secret.inputs["stringData"][".dockerconfigjson"])["auths"]
    server = dev.outputs["registry"]
    assert auths[server]["password"] == MOCK_SECRETS["registry_password"]
    job = next(o for o in dev.k8s("Job"))
    assert job["spec"]["template"]["spec"]["imagePullSecrets"] == [
        {"name": secret.inputs["metadata"]["name"]}
    ]


def test_docker_config_auth_is_user_colon_password():
    config = json.loads(docker_config_json("r.azurecr.io", "u", "p"))
    assert base64.b64decode(config["auths"]["r.azurecr.io"]["auth"]) == b"u:p"


def test_local_stack_has_no_registry_and_no_pull_secret(local_first):
    assert not local_first.of_type("azure-native:containerregistry:Registry")
    assert not [o for o in local_first.k8s("Secret")]
    job = local_first.k8s("Job")[0]
    assert "imagePullSecrets" not in job["spec"]["template"]["spec"]
