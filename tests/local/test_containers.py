"""The container runtime turns a rendered pod spec into the `docker run` a kubelet's would amount to.

These check the translation without a Docker engine; `make e2e` runs the real images through it.
"""

import stat

import pytest

from local.containers import cpus, memory_bytes, prepare
from local.play import PlayError, Pod

SECURITY = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001}
CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def pod(containers, init=(), kind="Deployment"):
    spec = {
        "securityContext": SECURITY,
        "initContainers": list(init),
        "containers": list(containers),
        "volumes": [
            {"name": "models", "persistentVolumeClaim": {"claimName": "models"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
    }
    return {
        "kind": kind,
        "metadata": {"name": "score-7", "namespace": "ml"},
        "spec": {"template": {"metadata": {"labels": {}}, "spec": spec}},
    }


def scorer(**extra):
    return {
        "name": "scorer",
        "image": "mlpipeline/scorer:7",
        "command": ["python", "-m", "scorer"],
        "env": [
            {"name": "PORT", "value": "8080"},
            {"name": "BLOB_KEY", "valueFrom": {"secretKeyRef": {"name": "blob", "key": "key"}}},
        ],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
        "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "500m", "memory": "1Gi"}},
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [
            {"name": "models", "mountPath": "/mnt/models", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        **extra,
    }


def option_values(args, option):
    return [args[i + 1] for i, arg in enumerate(args) if arg == option]


@pytest.fixture
def played(tmp_path):
    the_pod = Pod.of(pod([scorer()]), tmp_path / "volumes", {"blob": {"key": "s3cret"}})
    yield the_pod, prepare(the_pod, the_pod.spec["containers"][0])
    the_pod.cleanup()


def test_image_command_and_env_are_the_spec_s_and_secret_values_stay_out_of_the_arguments(played):
    _, container = played
    args = container.run_args
    entry = args.index("--entrypoint")
    assert args[entry:] == ["--entrypoint", "python", "mlpipeline/scorer:7", "-m", "scorer"]
    assert container.env == {"PORT": "8080", "BLOB_KEY": "s3cret"}
    assert option_values(args, "--env") == ["PORT", "BLOB_KEY"]  # values come from the client's env
    assert not any("s3cret" in arg for arg in args)


def test_security_context_becomes_user_read_only_root_and_no_capabilities(played):
    _, container = played
    args = container.run_args
    assert option_values(args, "--user") == ["10001:10001"] and option_values(args, "--group-add") == [
        "10001"
    ]
    assert "--read-only" in args and option_values(args, "--cap-drop") == ["ALL"]
    assert option_values(args, "--security-opt") == ["no-new-privileges"]


def test_limits_ports_and_mounts(played, tmp_path):
    the_pod, container = played
    args = container.run_args
    assert option_values(args, "--cpus") == ["0.5"] and option_values(args, "--memory") == [str(2**30)]
    published = option_values(args, "--publish")
    assert published == [f"127.0.0.1:{container.ports[8080]}:8080"] and "--network" not in args
    mounts = option_values(args, "--mount")
    models = tmp_path / "volumes" / "models"
    assert f"type=bind,source={models.resolve()},target=/mnt/models,readonly" in mounts
    tmp = the_pod.volume_path("tmp")
    assert f"type=bind,source={tmp.resolve()},target=/tmp" in mounts
    # A writable volume is made writable for the pod's fsGroup, as the kubelet does.
    assert tmp.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def test_a_container_without_ports_gets_no_network(tmp_path):
    trainer = scorer(name="trainer", ports=[])
    del trainer["readinessProbe"]
    the_pod = Pod.of(pod([trainer], kind="Job"), tmp_path, {"blob": {"key": "k"}})
    container = prepare(the_pod, trainer)
    assert option_values(container.run_args, "--network") == ["none"]
    assert "--publish" not in container.run_args
    the_pod.cleanup()


def test_unplayable_specs_fail_with_the_reason(tmp_path):
    the_pod = Pod.of(pod([scorer()]), tmp_path, {"blob": {"key": "k"}})
    with pytest.raises(PlayError, match="names no image"):
        prepare(the_pod, scorer(image=""))
    rooted = scorer(securityContext={"runAsNonRoot": True, "runAsUser": 0})
    with pytest.raises(PlayError, match="runAsNonRoot"):
        prepare(the_pod, rooted)
    with pytest.raises(PlayError, match="memory quantity"):
        memory_bytes("lots")


def test_kubernetes_quantities():
    assert cpus("2") == "2" and cpus("250m") == "0.25" and cpus(1.5) == "1.5"
    assert (
        memory_bytes("512Mi") == 512 * 2**20 and memory_bytes("1G") == 10**9 and memory_bytes("1000") == 1000
    )
