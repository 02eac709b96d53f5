"""A real node for the engine suite: containerd's CRI plugin and a kubelet, so that a release's pods
run for real — the Job trains, the waiter gates, the scorer serves.

Everything is this harness's own: a containerd instance (root, state, socket and CNI config under
.e2e/node/, never the system's or Docker's), a Linux bridge `mlpe2e0` on 10.89.0.0/24 whose gateway
address is the node's InternalIP (the kubelet refuses a loopback node IP; the kubelet and the pods
listen there, reachable from this machine only), and a kubelet registering node `e2e-node-0` with the
admin client certificate (the API server authorises with RBAC only, so a system:node certificate
would need the Node authorizer). Nothing is pulled: the sandbox image is a static `pause` compiled
here with gcc and built FROM scratch, and the app images are copied from the Docker engine
(`docker save | ctr import`). `stop()` ends what `start()` started whatever happened: the pods'
containers, the kubelet, containerd, their mounts under .e2e/node, the bridge and the kubepods cgroups.

Settings this machine needs, and why: `restrict_oom_score_adj` (root here lacks CAP_SYS_RESOURCE, so
runc cannot lower a pod's oom_score_adj), `failCgroupV1: false` (a cgroup v1 machine), image garbage
collection off and disk eviction at 500 MiB free (images removed here could not be pulled back;
the disk may be shared and fuller than the kubelet's 10-15 % defaults).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from e2e import docker_engine, host
from e2e.process import spawn, terminate

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".e2e" / "node"
NAME = "e2e-node-0"
BRIDGE = "mlpe2e0"
NODE_IP = "10.89.0.1"
SUBNET = "10.89.0.0/24"
CNI_BIN = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
CRI_NAMESPACE = "k8s.io"  # the containerd namespace the CRI plugin keeps pods and images in
PAUSE_IMAGE = "e2e.local/pause:1"
PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, quit); signal(SIGTERM, quit); signal(SIGCHLD, reap);
  for (;;) pause();
}
"""
# The Debian package of each tool the node needs (containerd brings ctr; docker.io `docker save`s the images).
PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "gcc": "gcc",
    "iproute2": "ip",
    "docker.io": "docker",
    "containernetworking-plugins": str(CNI_BIN / "bridge"),
}


class NodeError(RuntimeError):
    pass


def install_packages() -> str | None:
    """Install what the node needs from Debian when missing (as root); None, or why it could not."""
    if os.geteuid() != 0:
        return None  # unavailable() says so
    try:
        docker_engine.install_missing(PACKAGES)
    except (docker_engine.EngineError, subprocess.TimeoutExpired) as error:
        return f"installing the node's Debian packages failed: {error}"
    return None


def unavailable(bin_dir: Path) -> str | None:
    """Why a kubelet cannot run here (None: it can), in a sentence for the report."""
    if os.geteuid() != 0:
        return "a kubelet needs root"
    missing = [tool for tool in PACKAGES.values() if not tool.startswith("/") and shutil.which(tool) is None]
    if missing:
        return f"not installed: {', '.join(missing)}"
    if not (CNI_BIN / "bridge").is_file():
        return f"no CNI bridge plugin in {CNI_BIN} (Debian package containernetworking-plugins)"
    if not (Path(bin_dir) / "kubelet").is_file():
        return f"no kubelet in {bin_dir}"
    return None


def _run(*argv: str, timeout: float = 120, **kwargs) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-1500:]
        raise NodeError(f"`{' '.join(argv[:5])}` exited {done.returncode}: {output}")
    return done.stdout


def normalized(tag: str) -> str:
    """The name containerd gives a Docker tag: Docker Hub's implicit registry and library spelled out."""
    first, _, rest = tag.partition("/")
    if not rest:
        return f"docker.io/library/{tag}"
    if "." in first or ":" in first or first == "localhost":
        return tag
    return f"docker.io/{tag}"


class Node:
    def __init__(self, bin_dir: Path, home: Path = HOME):
        self.bin = Path(bin_dir)
        self.home = home
        self.socket = home / "containerd" / "containerd.sock"
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.name = NAME
        self.stop_notes: list[str] = []  # what the last stop() recovered from

    # --- lifecycle -------------------------------------------------------------------------
    def start(self, kubeconfig: Path, ca: Path, deadline: float) -> None:
        """containerd with its CNI bridge, the pause image, then the kubelet (the caller waits for
        Ready). `kubeconfig` is the kubelet's client identity, `ca` the CA its callers' certificates
        must chain to."""
        # What an earlier run could not end or remove (see stop()), ended and removed first.
        host.kill(host.node_processes(self.home))
        self._clean()
        mounted = host.mounts_under(self.home)
        if mounted:
            raise NodeError(f"mounts under {self.home} that cannot be unmounted: {mounted}")
        shutil.rmtree(self.home, ignore_errors=True)
        for folder in ("logs", "containerd", "cni", "kubelet", "pause"):
            (self.home / folder).mkdir(parents=True)
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        self._containerd_config()
        self._spawn("containerd", "containerd", "--config", str(self.home / "containerd" / "config.toml"))
        self._wait("containerd answers", lambda: self._ctr_ok(), deadline)
        self._pause_image()
        self._kubelet_config(ca)
        self._spawn(
            "kubelet",
            str(self.bin / "kubelet"),
            f"--config={self.home / 'kubelet' / 'config.yaml'}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.home / 'kubelet' / 'root'}",
            f"--cert-dir={self.home / 'kubelet' / 'pki'}",
            f"--hostname-override={NAME}",
            f"--node-ip={NODE_IP}",
            "--v=1",
        )

    def stop(self, grace: float = 10) -> None:
        """The kubelet first (it would restart the pods), then every container, containerd, what its
        shims left running, their mounts, the bridge and the pods' cgroups; the logs stay, the image
        store and pod folders go. Raises NodeError naming whatever is still on the machine after all
        that; a step that failed but whose work a later one did is printed (and kept in `stop_notes`)."""
        notes: list[str] = []
        running = dict(self.processes)
        if "kubelet" in running:
            terminate([running["kubelet"]], grace)
        if "containerd" in running and running["containerd"].poll() is None:
            notes += self._remove_containers()
        terminate([process for _name, process in reversed(self.processes)], grace)
        self.processes.clear()
        # A shim outlives its containerd by design, and its pod's processes with it.
        still = host.kill(host.node_processes(self.home), grace)
        notes += [f"process {process} survived SIGKILL" for process in still]
        notes += self._clean()
        left = host.leftovers(self.home, BRIDGE)
        if "mounts" not in left:  # a folder still mounted would take the mounted files with it
            for folder in ("containerd", "kubelet", "cni"):
                shutil.rmtree(self.home / folder, ignore_errors=True)
        self.stop_notes = notes
        if left:
            raise NodeError(f"the node did not stop cleanly, left on this machine: {left}; {notes}")
        for note in notes:
            print(f"e2e: node stop: {note} (recovered)", flush=True)

    def check_alive(self, what: str = "the node") -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                tail = (self.home / "logs" / f"{name}.log").read_text()[-2000:]
                raise NodeError(f"{name} exited ({process.returncode}) while waiting for {what}:\n{tail}")

    # --- images ----------------------------------------------------------------------------
    def load_images(self, images: dict[str, str]) -> dict:
        """Docker images into the node's store, {name the pods use: Docker tag}: an image containerd
        already holds (same id) is only named, the others are copied in one `docker save`."""
        began = time.monotonic()
        ids = {
            name: _run("docker", "image", "inspect", "--format", "{{.Id}}", tag).strip()
            for name, tag in images.items()
        }
        held = set(self._ctr("images", "ls", "-q").split())
        copy: dict[str, str] = {}  # image id -> the one tag it is saved under
        for name, image_id in ids.items():
            if image_id not in held:
                copy.setdefault(image_id, images[name])
        if copy:
            # leaving the block closes the pipe and waits for docker save
            with subprocess.Popen(["docker", "save", *copy.values()], stdout=subprocess.PIPE) as save:
                self._ctr("images", "import", "-", stdin=save.stdout, timeout=900)
            if save.returncode != 0:
                raise NodeError(f"`docker save {' '.join(copy.values())}` exited {save.returncode}")
        for name, image_id in ids.items():
            self._ctr("images", "tag", "--force", image_id, normalized(name))
        return {
            "names": len(images),
            "copied": sorted(copy.values()),
            "seconds": round(time.monotonic() - began, 2),
        }

    # --- setup -----------------------------------------------------------------------------
    def pull_over_http(self, registry_host: str) -> None:
        """Let the node's containerd pull from `registry_host` (the suite's registry on 127.0.0.1)
        over plain HTTP: a hosts.toml in its registry config folder, read at every pull."""
        folder = self.home / "containerd" / "hosts" / registry_host
        folder.mkdir(parents=True, exist_ok=True)
        url = f"http://{registry_host}"
        (folder / "hosts.toml").write_text(
            f'server = "{url}"\n[host."{url}"]\n  capabilities = ["pull", "resolve"]\n'
        )

    def _ctr(self, *args: str, timeout: float = 120, stdin=None) -> str:
        return _run(
            "ctr",
            "--address",
            str(self.socket),
            "--namespace",
            CRI_NAMESPACE,
            *args,
            timeout=timeout,
            stdin=stdin,
        )

    def _ctr_ok(self) -> bool:
        try:
            self._ctr("version", timeout=5)
            return True
        except (NodeError, subprocess.TimeoutExpired):
            return False

    def _spawn(self, name: str, *argv: str) -> None:
        self.processes.append((name, spawn(list(argv), self.home / "logs" / f"{name}.log", cwd=self.home)))

    def _wait(self, what: str, ready, deadline: float) -> None:
        while not ready():
            self.check_alive(what)
            if time.monotonic() > deadline:
                raise NodeError(f"timed out waiting for {what} (logs in {self.home / 'logs'})")
            time.sleep(0.5)

    def _containerd_config(self) -> None:
        folder = self.home / "containerd"
        cri = "io.containerd.grpc.v1.cri"
        (self.home / "cni" / "10-bridge.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "mlpipeline-e2e",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": SUBNET, "gateway": NODE_IP}]],
                                "dataDir": str(self.home / "cni" / "ipam"),
                            },
                        }
                    ],
                },
                indent=2,
            )
        )
        # TOML written by hand: the few keys below, all strings, booleans or string lists.
        (folder / "config.toml").write_text(f"""version = 2
root = "{folder / "root"}"
state = "{folder / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."{cri}"]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."{cri}".containerd]
    snapshotter = "{self._snapshotter()}"
    default_runtime_name = "runc"
    [plugins."{cri}".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."{cri}".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."{cri}".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{self.home / "cni"}"
  [plugins."{cri}".registry]
    config_path = "{folder / "hosts"}"
""")

    def _snapshotter(self) -> str:
        """overlayfs when this filesystem takes an overlay mount, else native (a copy per layer)."""
        return "overlayfs" if docker_engine.takes_overlay(self.home / "containerd") else "native"

    def _pause_image(self) -> None:
        folder = self.home / "pause"
        (folder / "pause.c").write_text(PAUSE_C)
        _run("gcc", "-static", "-Os", "-s", "-o", str(folder / "pause"), str(folder / "pause.c"))
        (folder / "Dockerfile").write_text('FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n')
        _run(
            "docker",
            "build",
            "--quiet",
            "--tag",
            PAUSE_IMAGE,
            str(folder),
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )
        self.load_images({PAUSE_IMAGE: PAUSE_IMAGE})

    def _kubelet_config(self, ca: Path) -> None:
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": NODE_IP,
            "healthzPort": 10248,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(ca)},
            },
            "authorization": {"mode": "AlwaysAllow"},  # callers hold a certificate of the cluster's CA
            # served with a certificate of the cluster's CA for its address: metrics-server verifies it
            "tlsCertFile": str(ca.parent / "kubelet.crt"),
            "tlsPrivateKeyFile": str(ca.parent / "kubelet.key"),
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            # Disk pressure would evict the pods and delete every image, which cannot be pulled
            # back: the thresholds sit just above a full disk (other jobs may share this one).
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "500Mi",
                "imagefs.available": "500Mi",
                "nodefs.inodesFree": "1%",
                "imagefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
        }
        (self.home / "kubelet" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    # --- teardown --------------------------------------------------------------------------
    def _remove_containers(self) -> list[str]:
        """Every container of the node's containerd, killed and deleted (their shims exit with them);
        returns what failed."""
        failed = []
        try:
            tasks = self._ctr("tasks", "ls", "-q").split()
        except (NodeError, subprocess.TimeoutExpired) as error:
            return [f"listing the node's tasks failed: {error}"]
        for task in tasks:
            try:
                self._ctr("tasks", "rm", "--force", task, timeout=30)
            except (NodeError, subprocess.TimeoutExpired) as error:
                if isinstance(error, NodeError) and "not found" in str(error):
                    continue  # it exited between the listing and now: gone, as wanted
                failed.append(f"removing task {task} failed: {error}")
        try:
            containers = self._ctr("containers", "ls", "-q").split()
            if containers:
                self._ctr("containers", "rm", *containers, timeout=60)
        except (NodeError, subprocess.TimeoutExpired) as error:
            failed.append(f"removing the node's containers failed: {error}")
        return failed

    def _clean(self) -> list[str]:
        """Unmount everything under home (deepest first), drop the bridge and the empty pod cgroups;
        returns what failed."""
        failed = []
        for point in host.mounts_under(self.home):
            done = subprocess.run(["umount", "--lazy", point], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                failed.append(f"umount {point}: {done.stderr.strip()}")
        if host.link_exists(BRIDGE):
            done = subprocess.run(
                ["ip", "link", "delete", BRIDGE], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                failed.append(f"ip link delete {BRIDGE}: {done.stderr.strip()}")
        for folder in host.pod_cgroups():
            try:
                os.rmdir(folder)
            except FileNotFoundError:
                pass  # the same folder reached through a co-mounted controller's link
            except OSError as error:
                failed.append(f"rmdir {folder}: {error}")
        return failed
