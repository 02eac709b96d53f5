"""A throwaway Kubernetes cluster on 127.0.0.1 for the engine suite: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and one node, from the e2e toolchain's bin/; with a real
node, metrics-server too, so the autoscalers have CPU figures.

Certificates (openssl) and the admin kubeconfig are generated under .e2e/cluster/, every process
logs to .e2e/cluster/logs/, every wait is bounded, and `stop()` (or leaving the `with` block)
ends what `start()` started, whatever happened in between. The node is either real (an
e2e.node.Node: containerd and a kubelet running the pods) or, without one, simulated by kwok: the
scheduler places pods on it, pods become Ready and a Job's pods complete without running anything.
A default StorageClass with static hostPath PersistentVolumes (folders any UID may write, as the
pods run as UID 10001) lets claims bind as they would on a laptop cluster, and the Gateway API CRDs
from the toolchain are applied so the gateway router is real.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from e2e.node import NODE_IP, Node
from e2e.process import Started, free_port, spawn, terminate

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".e2e" / "cluster"
NODE = "kwok-node-0"
STORAGE_CLASS = "standard"
VOLUMES = 8  # static PVs of VOLUME_GIB each: enough for a few stacks' model shares and CSV claims
VOLUME_GIB = 100


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _self_signed(pki: Path, name: str, subject: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
        "-days", "2", "-subj", subject, cwd=pki,
    )  # fmt: skip


class ClusterError(RuntimeError):
    pass


class Cluster(Started):
    def __init__(
        self,
        bin_dir: Path,
        crds: Path | None = None,
        stages: Path | None = None,
        home: Path = HOME,
        node: Node | None = None,
    ):
        self.bin = Path(bin_dir)
        self.crds = crds
        self.stages = stages
        self.home = home
        self.node = node  # None: a kwok node
        self.node_name = node.name if node else NODE
        self.kubeconfig = home / "admin.kubeconfig"
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.server = ""
        self._ssl: ssl.SSLContext | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        if self.home.exists():
            shutil.rmtree(self.home)
        (self.home / "logs").mkdir(parents=True)
        self._certificates()
        etcd_client, etcd_peer, api = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{api}"
        self._write_kubeconfig()
        self._spawn(
            "etcd",
            "--name=e2e",
            f"--data-dir={self.home / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=e2e=http://127.0.0.1:{etcd_peer}",
            "--log-level=warn",
        )
        pki = self.home / "pki"
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=RBAC",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            f"--cert-dir={pki}",
            # pod logs from a real node: at its address (it has no DNS name), as the admin
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={pki / 'admin.crt'}",
            f"--kubelet-client-key={pki / 'admin.key'}",
            # the aggregation layer (metrics.k8s.io from metrics-server), reaching it at its address
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--enable-aggregator-routing=true",
        )
        self._wait("kube-apiserver /readyz", lambda: self._get_raw("/readyz") == "ok", deadline)
        common = [f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", "--bind-address=127.0.0.1"]
        self._spawn(
            "kube-controller-manager",
            *common,
            f"--secure-port={free_port()}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--controllers=*",
        )
        self._spawn("kube-scheduler", *common, f"--secure-port={free_port()}")
        if self.node is not None:
            self.node.start(self.kubeconfig, pki / "ca.crt", deadline)
        else:
            kwok = [
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-ip=127.0.0.1",
                f"--server-address=127.0.0.1:{free_port()}",
                "--cidr=10.244.0.0/16",
            ]
            if self.stages is not None:
                kwok.append(f"--config={self.stages}")
            self._spawn("kwok", *kwok)
            self._kwok_node()
        self._storage()
        self._wait(f"node {self.node_name} Ready", self._node_ready, deadline)
        if self.node is not None:
            self._metrics_server(deadline)
        if self.crds is not None:
            for crd in sorted(Path(self.crds).glob("*.yaml")):
                for document in yaml.safe_load_all(crd.read_text()):
                    if document:
                        self.apply(document)
            self._wait("Gateway API CRDs established", self._crds_established, deadline)
        self._wait(
            "default service account",
            lambda: self.get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
            deadline,
        )

    def stop(self, grace: float = 10) -> None:
        """End the node, then every process this cluster started (newest first): SIGTERM, then
        SIGKILL after `grace`. The control plane ends even when the node's stop raises (it raises
        when something of the node is left on the machine), and that error is raised after."""
        try:
            if self.node is not None:
                self.node.stop(grace)
        finally:
            terminate([process for _name, process in reversed(self.processes)], grace)
            self.processes.clear()

    # --- the API ---------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: dict | str | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> tuple[int, str]:
        data = None
        if body is not None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=self._context(), timeout=timeout) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def get(self, path: str) -> dict | None:
        """The object at `path`, or None when it does not exist."""
        status, text = self.request("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise ClusterError(f"GET {path}: {status} {text[:300]}")
        return json.loads(text)

    def apply(self, document: dict, manager: str = "e2e") -> dict:
        """Server-side apply of one object (as the harness, not as Pulumi)."""
        path = self.path_of(document)
        status, text = self.request(
            "PATCH",
            f"{path}?fieldManager={manager}&force=true",
            document,
            content_type="application/apply-patch+yaml",
        )
        if status not in (200, 201):
            raise ClusterError(f"apply {path}: {status} {text[:300]}")
        return json.loads(text)

    def path_of(self, document: dict) -> str:
        group_version = document["apiVersion"]
        base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
        plural = self._plural(group_version, document["kind"])
        namespace = document["metadata"].get("namespace")
        scope = f"/namespaces/{namespace}" if namespace else ""
        return f"{base}{scope}/{plural}/{document['metadata']['name']}"

    def _plural(self, group_version: str, kind: str) -> str:
        base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
        for resource in (self.get(base) or {}).get("resources", []):
            if resource["kind"] == kind and "/" not in resource["name"]:
                return resource["name"]
        raise ClusterError(f"the API server serves no {kind} in {group_version}")

    def _get_raw(self, path: str) -> str:
        try:
            return self.request("GET", path, timeout=5)[1]
        except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
            return ""

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            pki = self.home / "pki"
            context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
            self._ssl = context
        return self._ssl

    # --- setup -----------------------------------------------------------------------------
    def _spawn(self, name: str, *args: str) -> None:
        process = spawn([str(self.bin / name), *args], self.home / "logs" / f"{name}.log", cwd=self.home)
        self.processes.append((name, process))

    def _wait(self, what: str, ready, deadline: float) -> None:
        while True:
            for name, process in self.processes:
                if process.poll() is not None:
                    tail = (self.home / "logs" / f"{name}.log").read_text()[-2000:]
                    raise ClusterError(
                        f"{name} exited ({process.returncode}) while waiting for {what}:\n{tail}"
                    )
            if self.node is not None:
                self.node.check_alive(what)
            try:
                if ready():
                    return
            except ClusterError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {what} (logs in {self.home / 'logs'})")
            time.sleep(0.5)

    def _certificates(self) -> None:
        pki = self.home / "pki"
        pki.mkdir()
        _self_signed(pki, "ca", "/CN=mlpipeline-e2e-ca")
        (pki / "apiserver.ext").write_text(
            "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
            "DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
            "extendedKeyUsage=serverAuth\n"
        )
        (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
        # The node's address serves the kubelet and, for the API server's aggregation layer, metrics-server.
        (pki / "node.ext").write_text(f"subjectAltName=IP:{NODE_IP}\nextendedKeyUsage=serverAuth\n")
        # The aggregation layer checks metrics-server's certificate against its Service's DNS name.
        (pki / "metrics-server.ext").write_text(
            f"subjectAltName=IP:{NODE_IP},DNS:metrics-server.kube-system.svc\nextendedKeyUsage=serverAuth\n"
        )
        # A CA of its own for the aggregation layer's front proxy, as kubeadm makes it.
        _self_signed(pki, "front-proxy-ca", "/CN=mlpipeline-e2e-front-proxy-ca")
        for name, subject, ext, ca in (
            ("apiserver", "/CN=kube-apiserver", "apiserver.ext", "ca"),
            ("admin", "/O=system:masters/CN=e2e-admin", "client.ext", "ca"),
            ("kubelet", "/CN=e2e-kubelet", "node.ext", "ca"),
            ("metrics-server", "/CN=metrics-server", "metrics-server.ext", "ca"),
            ("front-proxy-client", "/CN=front-proxy-client", "client.ext", "front-proxy-ca"),
        ):
            _openssl(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                f"{name}.key",
                "-out",
                f"{name}.csr",
                "-subj",
                subject,
                cwd=pki,
            )
            _openssl(
                "x509",
                "-req",
                "-in",
                f"{name}.csr",
                "-CA",
                f"{ca}.crt",
                "-CAkey",
                f"{ca}.key",
                "-CAcreateserial",
                "-out",
                f"{name}.crt",
                "-days",
                "2",
                "-extfile",
                ext,
                cwd=pki,
            )
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)

    def _write_kubeconfig(self) -> None:
        pki = self.home / "pki"
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "e2e",
                    "clusters": [
                        {
                            "name": "e2e",
                            "cluster": {"server": self.server, "certificate-authority": str(pki / "ca.crt")},
                        }
                    ],
                    "users": [
                        {
                            "name": "admin",
                            "user": {
                                "client-certificate": str(pki / "admin.crt"),
                                "client-key": str(pki / "admin.key"),
                            },
                        }
                    ],
                    "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
                }
            )
        )

    def _metrics_server(self, deadline: float) -> None:
        """metrics-server on the node's address, serving metrics.k8s.io through the API server's
        aggregation layer (a selectorless Service whose endpoint is that address), so that the
        HorizontalPodAutoscalers act on the kubelet's CPU figures."""
        pki, port = self.home / "pki", free_port()
        self._spawn(
            "metrics-server",
            f"--secure-port={port}",
            f"--bind-address={NODE_IP}",
            f"--tls-cert-file={pki / 'metrics-server.crt'}",
            f"--tls-private-key-file={pki / 'metrics-server.key'}",
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'admin.crt'}",
            f"--kubelet-client-key={pki / 'admin.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--metric-resolution=10s",
            "--kubelet-request-timeout=5s",
        )
        meta = {"name": "metrics-server", "namespace": "kube-system"}
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {"ports": [{"port": 443, "targetPort": port}]},
            }
        )
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": meta,
                "subsets": [{"addresses": [{"ip": NODE_IP}], "ports": [{"port": port}]}],
            }
        )
        self.apply(
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1beta1.metrics.k8s.io"},
                "spec": {
                    "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "caBundle": base64.b64encode((pki / "ca.crt").read_bytes()).decode(),
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            }
        )

        def available() -> bool:
            service = self.get("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io") or {}
            return any(
                c["type"] == "Available" and c["status"] == "True"
                for c in service.get("status", {}).get("conditions", [])
            )

        self._wait("metrics.k8s.io available (metrics-server)", available, deadline)
        # Available only means reachable; a request through the aggregation layer proves the TLS
        # and front-proxy trust (without it, namespace deletion stalls on a stale API group).
        self._wait(
            "metrics.k8s.io answering through the API server",
            lambda: self.request("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")[0] == 200,
            deadline,
        )

    def _kwok_node(self) -> None:
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": NODE,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {
                        "kubernetes.io/hostname": NODE,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
            }
        )

    def _storage(self) -> None:
        self.apply(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": STORAGE_CLASS,
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "Immediate",
                "reclaimPolicy": "Retain",
            }
        )
        for number in range(VOLUMES):
            folder = self.home / "volumes" / str(number)
            folder.mkdir(parents=True)
            folder.chmod(0o777)  # hostPath takes no fsGroup: the pods' UID must be able to write
            self.apply(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": f"e2e-volume-{number}"},
                    "spec": {
                        "capacity": {"storage": f"{VOLUME_GIB}Gi"},
                        "storageClassName": STORAGE_CLASS,
                        "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {"path": str(folder)},
                    },
                }
            )

    def _node_ready(self) -> bool:
        node = self.get(f"/api/v1/nodes/{self.node_name}") or {}
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )

    def _crds_established(self) -> bool:
        crds = self.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions") or {"items": []}
        gateway = [c for c in crds["items"] if c["spec"]["group"] == "gateway.networking.k8s.io"]
        return bool(gateway) and all(
            any(
                k["type"] == "Established" and k["status"] == "True"
                for k in c.get("status", {}).get("conditions", [])
            )
            for c in gateway
        )
