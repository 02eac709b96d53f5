"""The e2e cluster's certificates: each party presents one that the party checking it accepts
(the aggregation layer checks metrics-server's against its Service's DNS name; metrics-server checks
the kubelet's against the node's address; the front proxy has a CA of its own)."""

import subprocess

from e2e.cluster import Cluster
from e2e.node import NODE_IP


def openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout


def test_every_server_certificate_names_what_its_clients_ask_for_and_chains_to_its_ca(tmp_path):
    cluster = Cluster(tmp_path / "bin", home=tmp_path)
    cluster._certificates()
    pki = tmp_path / "pki"
    names = {
        "metrics-server": ["DNS:metrics-server.kube-system.svc", f"IP Address:{NODE_IP}"],
        "kubelet": [f"IP Address:{NODE_IP}"],
        "apiserver": ["IP Address:127.0.0.1", "DNS:kubernetes.default.svc"],
    }
    for name, wanted in names.items():
        text = openssl("x509", "-in", str(pki / f"{name}.crt"), "-noout", "-ext", "subjectAltName")
        assert all(entry in text for entry in wanted), (name, text)
        assert "OK" in openssl("verify", "-CAfile", str(pki / "ca.crt"), str(pki / f"{name}.crt"))
    proxy = str(pki / "front-proxy-client.crt")
    assert "OK" in openssl("verify", "-CAfile", str(pki / "front-proxy-ca.crt"), proxy)
    done = subprocess.run(["openssl", "verify", "-CAfile", str(pki / "ca.crt"), proxy], capture_output=True)
    assert done.returncode != 0  # the cluster's own CA does not vouch for the front proxy
