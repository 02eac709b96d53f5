"""Play rendered Kubernetes containers as Docker containers, the way a kubelet would run them.

The container twin of local.play (same functions: prepare, run_to_completion, start, wait_ready,
stop), for a machine with a Docker engine and the release's images built (e2e.docker_engine).
Everything comes from the rendered pod spec; nothing here knows the apps:

- image, command/args -> `docker run --entrypoint command[0] IMAGE command[1:] + args`
- env                 -> passed by name from the client's environment (secret values never in argv)
- securityContext     -> --user runAsUser:runAsGroup, --group-add fsGroup, --read-only,
                         --cap-drop ALL, no-new-privileges; runAsNonRoot refuses uid 0
- volumes             -> bind mounts of the folders local.play.Pod gives them (a claim by its
                         claimName, read-only where the mount says; an emptyDir per pod, shared by
                         its init and main containers), made writable for the pod's fsGroup as
                         the kubelet does
- resources.limits    -> --cpus, --memory
- ports               -> published on 127.0.0.1 only (the container port if free, else another);
                         a container that declares no port gets no network at all
- readiness           -> the container's own httpGet probe, through the published port
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from components.images import APPS, REPOSITORY
from local.play import ROOT, PlayError, Pod, _env_value, free_port, wait_ready  # noqa: F401 - wait_ready is this runtime's too

CONTEXT = ROOT / "apps"  # the images' build context, as components.images builds them
BUILD_LOG = ROOT / ".demo" / "logs" / "docker-build.log"
LABEL = "org.mlpipeline.play"  # every container started here carries it: `docker ps --filter label=...`
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_BINARY = {
    "": 1,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def docker_answers() -> bool:
    """A Docker engine answers on this machine (the demo's default runtime then)."""
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def cpus(quantity: str) -> str:
    """A Kubernetes CPU quantity ("2", "500m") as docker's --cpus."""
    text = str(quantity)
    value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return f"{value:g}"


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("512Mi", "2Gi", "1G", "1000000") in bytes."""
    match = _QUANTITY.match(str(quantity))
    if not match or match.group(2) not in _BINARY:
        raise PlayError(f"memory quantity {quantity!r} is not one the player knows")
    return int(float(match.group(1)) * _BINARY[match.group(2)])


def image_tag(app: str, build: str) -> str:
    """The tag the `local` stack gives an app's image (not pushed: the tag is the pods' reference)."""
    return f"{REPOSITORY}/{app}:{build}"


def build_image(app: str, build: str, log_file: Path = BUILD_LOG, no_cache: bool = False) -> str:
    """`docker build` one app image from apps/, tagged with the build; returns the tag.

    The legacy builder (DOCKER_BUILDKIT=0) is what every Docker engine has, buildx or not. The
    build is stamped by the tag only: unchanged sources give the same image (all layers cached,
    the same id) whatever the build number, as a `--label` would not.
    """
    tag = image_tag(app, build)
    argv = [
        "docker",
        "build",
        "--file",
        str(CONTEXT / app / "Dockerfile"),
        "--tag",
        tag,
        *(["--no-cache"] if no_cache else []),
        str(CONTEXT),
    ]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        result = subprocess.run(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "DOCKER_BUILDKIT": "0"}
        )
    if result.returncode != 0:
        tail = "\n".join(log_file.read_text().splitlines()[-15:])
        raise PlayError(
            f"docker build of {tag} failed (exit {result.returncode}; full log {log_file}):\n{tail}"
        )
    return tag


def build_images(build: str, log_file: Path = BUILD_LOG) -> dict[str, str]:
    """The three app images of a build: {app: tag}."""
    return {app: build_image(app, build, log_file) for app in APPS}


@dataclass
class Container:
    """A rendered container made a `docker run`: its arguments, the env values they name, its ports."""

    name: str  # the container's name in the pod spec
    docker_name: str  # unique name of the Docker container
    image: str
    run_args: list[str]  # everything after `docker run`
    env: dict[str, str]  # NAME -> value, passed to the docker client's environment
    ports: dict[int, int]  # container port -> port on 127.0.0.1
    named_ports: dict[str, int]
    probes: dict[str, dict]
    labels: dict[str, str] = field(default_factory=dict)


def _security(pod: Pod, container: dict) -> list[str]:
    pod_ctx = pod.spec.get("securityContext", {})
    ctx = {**pod_ctx, **container.get("securityContext", {})}
    args = []
    user = ctx.get("runAsUser")
    if user is not None:
        group = ctx.get("runAsGroup")
        args += ["--user", f"{int(user)}:{int(group)}" if group is not None else str(int(user))]
    if ctx.get("runAsNonRoot") and (user is None or int(user) == 0):
        raise PlayError(
            f"container {container['name']}: runAsNonRoot without a non-zero runAsUser cannot be checked here"
        )
    if pod_ctx.get("fsGroup") is not None:
        args += ["--group-add", str(int(pod_ctx["fsGroup"]))]
    if ctx.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    for cap in ctx.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    if ctx.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    return args


def _writable_for(path: Path, fs_group: int | None) -> None:
    """What the kubelet does to a volume: owned by the pod's fsGroup, group-writable, setgid."""
    if fs_group is not None and os.geteuid() == 0:
        os.chown(path, -1, fs_group)
        path.chmod(0o2775)
    else:
        path.chmod(0o777)


def _mounts(pod: Pod, container: dict) -> list[str]:
    fs_group = pod.spec.get("securityContext", {}).get("fsGroup")
    args = []
    for mount in container.get("volumeMounts", []):
        path = pod.mount_source(mount)
        if not mount.get("readOnly"):
            _writable_for(path, None if fs_group is None else int(fs_group))
        spec = f"type=bind,source={path.resolve()},target={mount['mountPath']}"
        args += ["--mount", spec + (",readonly" if mount.get("readOnly") else "")]
    return args


def _limits(container: dict) -> list[str]:
    limits = container.get("resources", {}).get("limits", {})
    args = []
    if "cpu" in limits:
        args += ["--cpus", cpus(limits["cpu"])]
    if "memory" in limits:
        args += ["--memory", str(memory_bytes(limits["memory"]))]
    return args


def prepare(pod: Pod, container: dict) -> Container:
    """Translate one container of a pod into the arguments of `docker run`."""
    image = container.get("image")
    if not image:
        raise PlayError(f"container {container['name']} names no image")
    command, args = container.get("command", []), container.get("args", [])
    docker_name = f"{pod.name}-{container['name']}-{uuid.uuid4().hex[:6]}"
    labels = {LABEL: "1", f"{LABEL}.pod": pod.name, f"{LABEL}.container": container["name"]}
    env = {}
    for item in container.get("env", []):
        value = _env_value(pod, container, item)
        if value is not None:
            env[item["name"]] = value
    ports = {int(p["containerPort"]): free_port(int(p["containerPort"])) for p in container.get("ports", [])}
    named = {p["name"]: int(p["containerPort"]) for p in container.get("ports", []) if p.get("name")}
    run_args = ["--name", docker_name, "--hostname", pod.name]
    for key, value in labels.items():
        run_args += ["--label", f"{key}={value}"]
    run_args += _security(pod, container) + _mounts(pod, container) + _limits(container)
    for name in env:
        run_args += ["--env", name]  # the value comes from the client's environment
    if ports:
        for inside, outside in ports.items():
            run_args += ["--publish", f"127.0.0.1:{outside}:{inside}"]
    else:
        run_args += ["--network", "none"]
    if container.get("workingDir"):
        run_args += ["--workdir", container["workingDir"]]
    if command:
        run_args += ["--entrypoint", command[0], image, *command[1:], *args]
    else:
        run_args += [image, *args]
    probes = {
        kind: container[kind]
        for kind in ("readinessProbe", "livenessProbe", "startupProbe")
        if kind in container
    }
    return Container(
        name=container["name"],
        docker_name=docker_name,
        image=image,
        run_args=run_args,
        env=env,
        ports=ports,
        named_ports=named,
        probes=probes,
        labels=labels,
    )


def _client_env(container: Container) -> dict[str, str]:
    return {**os.environ, **container.env}


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def remove(docker_name: str) -> None:
    _docker("rm", "--force", "--volumes", docker_name)


def exit_code(docker_name: str) -> int | None:
    """The container's exit code once it has stopped, None while it runs."""
    result = _docker("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", docker_name)
    if result.returncode != 0:
        raise PlayError(f"container {docker_name} is gone: {result.stderr.strip()}")
    running, code = result.stdout.split()
    return None if running == "true" else int(code)


def create(container: Container, extra: Sequence[str] = ()) -> None:
    result = subprocess.run(
        ["docker", "create", *extra, *container.run_args],
        env=_client_env(container),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise PlayError(f"container {container.name}: docker create failed: {result.stderr.strip()}")


def run_to_completion(container: Container, log, timeout: float | None = None, stdout=None) -> str:
    """Run a Job's container or an init container to its end; a non-zero exit is a failed pod.

    Its output goes to `stdout` (default: this process's); the container is removed afterwards.
    Returns the container's termination message.
    """
    log(f"  $ docker run {container.image} as {container.docker_name}")
    # The kubelet's terminationMessagePath: what the container leaves there is the pod's message.
    with tempfile.TemporaryDirectory(prefix=f"{container.name}-termination-") as folder:
        message_file = Path(folder) / "termination-log"
        message_file.touch(mode=0o666)
        message_file.chmod(0o666)
        create(container, ["--mount", f"type=bind,source={message_file},target=/dev/termination-log"])
        try:
            try:
                subprocess.run(
                    ["docker", "start", "--attach", container.docker_name],
                    timeout=timeout,
                    stdout=stdout or sys.stdout,
                    stderr=subprocess.STDOUT if stdout else sys.stderr,
                )
            except subprocess.TimeoutExpired:
                raise PlayError(f"container {container.name} did not finish within {timeout:.0f} s") from None
            code = exit_code(container.docker_name)
        finally:
            remove(container.docker_name)
        message = message_file.read_text().strip()
    if code != 0:
        raise PlayError(
            f"container {container.name} exited with code {code}" + (f": {message}" if message else "")
        )
    return message


class Running:
    """A started container, with the subprocess.Popen calls local.play's callers make (poll, returncode)."""

    def __init__(self, container: Container, stdout=None):
        self.container = container
        self.returncode: int | None = None
        create(container)
        started = _docker("start", container.docker_name)
        if started.returncode != 0:
            remove(container.docker_name)
            raise PlayError(f"container {container.name}: docker start failed: {started.stderr.strip()}")
        # The container's output, followed into the caller's file for as long as it runs.
        self._logs = subprocess.Popen(
            ["docker", "logs", "--follow", container.docker_name],
            stdout=stdout or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                self.returncode = exit_code(self.container.docker_name)
            except PlayError:
                self.returncode = -1
        return self.returncode


def start(container: Container, stdout=None) -> Running:
    return Running(container, stdout)


def stop(running: Running, grace: float = 5.0) -> None:
    """Stop as the kubelet does (SIGTERM, then SIGKILL after the grace period) and remove the container."""
    _docker("stop", "--time", str(int(grace)), running.container.docker_name, timeout=grace + 60)
    running.poll()
    remove(running.container.docker_name)
    try:
        running._logs.wait(10)
    except subprocess.TimeoutExpired:
        running._logs.kill()


def remove_all(label_value: str | None = None) -> list[str]:
    """Remove every container this runtime started (optionally only those of one pod); their names."""
    selector = f"{LABEL}.pod={label_value}" if label_value else LABEL
    names = _docker("ps", "--all", "--quiet", "--filter", f"label={selector}").stdout.split()
    for name in names:
        remove(name)
    return names
