"""Play rendered Kubernetes containers as local processes, the way a kubelet would run them.

`make demo` must never drift from what the cluster runs, so nothing here knows about the trainer,
waiter or scorer: a container's command, args, environment, volume mounts and probes come from
the rendered Job / Deployment objects, and are translated, not re-stated:

- image        -> this checkout (the apps are on the venv's path, as on the image's PYTHONPATH)
- `python`     -> the venv's interpreter
- volumes      -> folders under the demo's root: a claim by its claimName, an emptyDir per pod,
                  a secret volume per pod holding the rendered Secret's items with their modes
- mount paths  -> rewritten to those folders wherever they start an env value or an argument
- ports        -> the container port if free on 127.0.0.1, else a free one (like a port-forward),
                  with env values and arguments equal to the container port rewritten to match
- env valueFrom-> secretKeyRef from the rendered Secrets, fieldRef for the pod's own metadata
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class PlayError(RuntimeError):
    """The rendered object cannot be played, or a played container failed; the message says which."""


@dataclass
class Pod:
    """The parts of a rendered pod that playing needs: its spec plus where its volumes live."""

    name: str
    namespace: str
    spec: dict
    labels: dict
    volumes_root: Path
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> key -> value
    _empty_dirs: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def of(cls, obj: dict, volumes_root: Path, secrets: dict | None = None) -> Pod:
        """A Job or Deployment (their pod template) or a bare Pod."""
        kind = obj.get("kind")
        if kind in ("Job", "Deployment"):
            template = obj["spec"]["template"]
        elif kind == "Pod":
            template = obj
        else:
            raise PlayError(f"cannot play a {kind}: only Job, Deployment and Pod have containers")
        meta = obj.get("metadata", {})
        return cls(
            name=meta.get("name", "pod"),
            namespace=meta.get("namespace", "default"),
            spec=template["spec"],
            labels=template.get("metadata", {}).get("labels", {}),
            volumes_root=volumes_root,
            secrets=secrets or {},
        )

    def volume_path(self, volume_name: str) -> Path:
        for volume in self.spec.get("volumes", []):
            if volume["name"] != volume_name:
                continue
            if "persistentVolumeClaim" in volume:
                path = self.volumes_root / volume["persistentVolumeClaim"]["claimName"]
            elif "emptyDir" in volume:
                if volume_name not in self._empty_dirs:
                    self._empty_dirs[volume_name] = Path(
                        tempfile.mkdtemp(prefix=f"{self.name}-{volume_name}-")
                    )
                path = self._empty_dirs[volume_name]
            elif "secret" in volume:
                if volume_name not in self._empty_dirs:
                    self._empty_dirs[volume_name] = self._secret_files(volume["secret"])
                path = self._empty_dirs[volume_name]
            elif "hostPath" in volume:
                path = Path(volume["hostPath"]["path"])
            else:
                raise PlayError(f"pod {self.name}: volume {volume_name} has a type the player does not know")
            path.mkdir(parents=True, exist_ok=True)
            return path
        raise PlayError(
            f"pod {self.name}: a container mounts volume {volume_name}, which the pod does not declare"
        )

    def _secret_files(self, source: dict) -> Path:
        """A folder holding a secret volume's files as the kubelet writes them: each item (or every
        key) of the rendered Secret, with its mode (the item's, else defaultMode, else 0644)."""
        name = source["secretName"]
        if name not in self.secrets:
            raise PlayError(f"pod {self.name}: a volume mounts secret {name}, which is not rendered")
        values = self.secrets[name]
        items = source.get("items") or [{"key": key, "path": key} for key in values]
        folder = Path(tempfile.mkdtemp(prefix=f"{self.name}-{name}-"))
        for item in items:
            if item["key"] not in values:
                raise PlayError(f"pod {self.name}: secret {name} has no key {item['key']}")
            file = folder / item["path"]
            file.write_text(values[item["key"]])
            file.chmod(int(item.get("mode", source.get("defaultMode", 0o644))))  # mocks give floats
        return folder

    def mount_source(self, mount: dict) -> Path:
        """The folder a container's volumeMount shows: its volume's, or the subPath inside it."""
        path = self.volume_path(mount["name"])
        if mount.get("subPath"):
            path = path / mount["subPath"]
            path.mkdir(parents=True, exist_ok=True)
        return path

    def cleanup(self) -> None:
        for path in self._empty_dirs.values():
            shutil.rmtree(path, ignore_errors=True)
        self._empty_dirs.clear()


@dataclass
class Process:
    """A played container: its command line, environment and the ports it was given."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ports: dict[int, int]  # container port -> local port
    named_ports: dict[str, int]  # port name -> container port
    probes: dict[str, dict]


def free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise PlayError("no free TCP port on 127.0.0.1")


def _mount_map(pod: Pod, container: dict) -> list[tuple[str, str]]:
    mounts = []
    for mount in container.get("volumeMounts", []):
        mounts.append((mount["mountPath"].rstrip("/"), str(pod.mount_source(mount))))
    # Longest mount path first, so /mnt/models/x wins over /mnt/models.
    return sorted(mounts, key=lambda pair: len(pair[0]), reverse=True)


def _rewrite(value: str, mounts: list[tuple[str, str]]) -> str:
    for mount_path, local in mounts:
        if value == mount_path or value.startswith(mount_path + "/"):
            return local + value[len(mount_path) :]
    return value


def _env_value(pod: Pod, container: dict, item: dict) -> str | None:
    if "value" in item:
        return str(item["value"])
    source = item.get("valueFrom", {})
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        secret = pod.secrets.get(ref["name"])
        if secret is None or ref["key"] not in secret:
            if ref.get("optional"):
                return None
            raise PlayError(
                f"container {container['name']}: env {item['name']} needs secret "
                f"{ref['name']}/{ref['key']}, which is not rendered"
            )
        return secret[ref["key"]]
    if "fieldRef" in source:
        field_path = source["fieldRef"]["fieldPath"]
        fields = {"metadata.name": pod.name, "metadata.namespace": pod.namespace, "status.podIP": "127.0.0.1"}
        if field_path.startswith("metadata.labels['"):
            return pod.labels.get(field_path[len("metadata.labels['") : -2], "")
        if field_path in fields:
            return fields[field_path]
    raise PlayError(
        f"container {container['name']}: env {item['name']} uses a source the player does not know: {source}"
    )


def prepare(pod: Pod, container: dict) -> Process:
    """Translate one container of a pod into a local command line and environment."""
    mounts = _mount_map(pod, container)
    argv = [*container.get("command", []), *container.get("args", [])]
    if not argv:
        raise PlayError(
            f"container {container['name']} has no explicit command: the image's entrypoint cannot be played"
        )
    ports = {}
    for port in container.get("ports", []):
        number = int(port["containerPort"])  # mocked renderings carry numbers as floats
        ports[number] = free_port(number)

    def translate(value: str) -> str:
        value = _rewrite(value, mounts)
        return str(ports[int(value)]) if value.isdigit() and int(value) in ports else value

    argv = [translate(arg) for arg in argv]
    # After translating: the local interpreter's own path may well start with a mount path (/tmp).
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable

    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")
    }
    env["PYTHONUNBUFFERED"] = "1"
    for item in container.get("env", []):
        value = _env_value(pod, container, item)
        if value is None:
            continue
        env[item["name"]] = translate(value)
    probes = {
        kind: container[kind]
        for kind in ("readinessProbe", "livenessProbe", "startupProbe")
        if kind in container
    }
    named = {p["name"]: int(p["containerPort"]) for p in container.get("ports", []) if p.get("name")}
    return Process(name=container["name"], argv=argv, env=env, ports=ports, named_ports=named, probes=probes)


def run_to_completion(process: Process, log, timeout: float | None = None, stdout=None) -> str:
    """Run a Job's container or an init container; a non-zero exit is a failed pod. Output to `stdout`
    (default: ours). Returns the container's termination message."""
    log(f"  $ {' '.join(Path(a).name if i == 0 else a for i, a in enumerate(process.argv))}")
    # The kubelet's terminationMessagePath: what the container leaves there is the pod's message.
    with tempfile.TemporaryDirectory(prefix=f"{process.name}-termination-") as folder:
        message_file = Path(folder) / "termination-log"
        env = {**process.env, "TERMINATION_LOG": str(message_file)}
        result = subprocess.run(
            process.argv,
            env=env,
            cwd=ROOT,
            timeout=timeout,
            stdout=stdout or sys.stdout,
            stderr=subprocess.STDOUT if stdout else sys.stderr,
        )
        message = message_file.read_text().strip() if message_file.is_file() else ""
    if result.returncode != 0:
        raise PlayError(
            f"container {process.name} exited with code {result.returncode}"
            + (f": {message}" if message else "")
        )
    return message


def start(process: Process, stdout=None) -> subprocess.Popen:
    return subprocess.Popen(
        process.argv, env=process.env, cwd=ROOT, stdout=stdout, stderr=subprocess.STDOUT if stdout else None
    )


def wait_ready(process: Process, popen: subprocess.Popen, timeout: float = 60.0) -> str:
    """Poll the container's own readiness probe (httpGet) until it answers 2xx; return the base URL
    of the container's first port, where it serves (the probe may have a port of its own)."""
    probe = process.probes.get("readinessProbe", {}).get("httpGet")
    if not probe:
        raise PlayError(f"container {process.name} has no httpGet readiness probe to wait on")
    port = probe["port"]
    if isinstance(port, str):  # a named port
        if port not in process.named_ports:
            raise PlayError(f"container {process.name}: probe port {port!r} names no port of the container")
        port = process.named_ports[port]
    port = int(port)
    serving = next(iter(process.ports), port)
    probe_url = f"http://127.0.0.1:{process.ports.get(port, port)}" + probe.get("path", "/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise PlayError(
                f"container {process.name} exited with code {popen.returncode} before it was ready"
            )
        try:
            with urllib.request.urlopen(probe_url, timeout=2) as answer:
                if 200 <= answer.status < 400:
                    return f"http://127.0.0.1:{process.ports.get(serving, serving)}"
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise PlayError(f"container {process.name} was not ready after {timeout:.0f} s")


def stop(popen: subprocess.Popen, grace: float = 5.0) -> None:
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
