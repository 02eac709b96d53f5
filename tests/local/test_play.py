"""The player runs a rendered container as the kubelet would: same command, env, mounts, probes."""

import json
import subprocess

import pytest

from local.play import PlayError, Pod, prepare, start, stop, wait_ready

PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def job(container, volumes):
    return {
        "kind": "Job",
        "metadata": {"name": "train-7", "namespace": "ml"},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [container], "volumes": volumes},
            }
        },
    }


def played_env(tmp_path, container, volumes, secrets=None):
    pod = Pod.of(job(container, volumes), tmp_path / "volumes", secrets)
    process = prepare(pod, pod.spec["containers"][0])
    out = subprocess.run(process.argv, env=process.env, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_env_mounts_and_secrets_are_translated(tmp_path):
    container = {
        "name": "trainer",
        "command": ["python", "-c", PRINT_ENV],
        "env": [
            {"name": "MODELFOLDER", "value": "/mnt/models/7"},
            {"name": "DATA_DIR", "value": "/mnt/data/2018/05/08"},
            {"name": "BLOB_STORAGE_KEY", "valueFrom": {"secretKeyRef": {"name": "blob", "key": "key"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "volumeMounts": [
            {"name": "models", "mountPath": "/mnt/models"},
            {"name": "data", "mountPath": "/mnt/data", "readOnly": True},
        ],
    }
    volumes = [
        {"name": "models", "persistentVolumeClaim": {"claimName": "models-claim"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-claim"}},
    ]
    env = played_env(tmp_path, container, volumes, {"blob": {"key": "s3cret"}})
    assert env["MODELFOLDER"] == str(tmp_path / "volumes" / "models-claim" / "7")
    assert env["DATA_DIR"] == str(tmp_path / "volumes" / "data-claim" / "2018" / "05" / "08")
    assert env["BLOB_STORAGE_KEY"] == "s3cret" and env["POD"] == "train-7"


def test_unplayable_objects_fail_with_the_reason(tmp_path):
    container = {
        "name": "scorer",
        "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}],
        "command": ["python"],
    }
    pod = Pod.of(job(container, []), tmp_path)
    with pytest.raises(PlayError, match="needs secret absent/k"):
        prepare(pod, container)
    with pytest.raises(PlayError, match="no explicit command"):
        prepare(pod, {"name": "c"})
    with pytest.raises(PlayError, match="cannot play a Service"):
        Pod.of({"kind": "Service"}, tmp_path)


def test_a_served_container_is_ready_by_its_own_probe_on_a_mapped_port(tmp_path):
    container = {
        "name": "web",
        "command": ["python", "-m", "http.server", "--bind", "127.0.0.1", "8080"],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
    }
    with socketserver_on(8080):  # the container port is taken: the player must map it
        pod = Pod.of(job(container, []), tmp_path)
        process = prepare(pod, container)
        assert process.ports[8080] != 8080 and process.argv[-1] == str(process.ports[8080])
        popen = start(process, stdout=subprocess.DEVNULL)
        try:
            assert wait_ready(process, popen, timeout=30).endswith(f":{process.ports[8080]}")
        finally:
            stop(popen)


def test_a_probe_on_a_port_of_its_own_is_polled_there_and_the_serving_port_returned(tmp_path):
    two_servers = (
        "import sys, threading, http.server as h\n"
        "for port in sys.argv[1:]:\n"
        "    s = h.HTTPServer(('127.0.0.1', int(port)), h.SimpleHTTPRequestHandler)\n"
        "    threading.Thread(target=s.serve_forever).start()\n"
    )
    container = {
        "name": "web",
        "command": ["python", "-c", two_servers, "8080", "8081"],
        "ports": [{"name": "http", "containerPort": 8080}, {"name": "probes", "containerPort": 8081}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "probes"}},
    }
    pod = Pod.of(job(container, []), tmp_path)
    process = prepare(pod, container)
    popen = start(process, stdout=subprocess.DEVNULL)
    try:
        assert wait_ready(process, popen, timeout=30) == f"http://127.0.0.1:{process.ports[8080]}"
    finally:
        stop(popen)


class socketserver_on:
    def __init__(self, port):
        import socket

        self.sock = socket.socket()
        self.port = port

    def __enter__(self):
        try:
            self.sock.bind(("127.0.0.1", self.port))
        except OSError:
            pass  # already taken by someone else: just as good
        return self

    def __exit__(self, *exc):
        self.sock.close()


def test_the_local_interpreter_is_not_mistaken_for_a_mounted_path(tmp_path, monkeypatch):
    # A container mounting /tmp (an emptyDir) must still run the venv's python, even when
    # that interpreter lives under /tmp, as in CI's clone.
    monkeypatch.setattr("sys.executable", "/tmp/ci/.venv/bin/python")
    container = {
        "name": "c",
        "command": ["python", "-m", "x", "/tmp/out"],
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod = Pod.of(job(container, [{"name": "tmp", "emptyDir": {}}]), tmp_path)
    process = prepare(pod, container)
    assert process.argv[0] == "/tmp/ci/.venv/bin/python"
    assert process.argv[-1].endswith("/out") and process.argv[-1] != "/tmp/out"
    pod.cleanup()
