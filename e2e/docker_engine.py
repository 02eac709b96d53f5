"""A Docker engine that answers, the Python base image the Dockerfiles name, and the app images of a build.

No image registry is reachable from the test machines, so the base cannot be pulled: it is built
from Debian packages (debootstrap bookworm minbase with python3, python3-venv, python-is-python3,
ca-certificates), with this machine's CA bundle copied in and named in /etc/pip.conf so that pip
reaches the package index through the machine's TLS interception, then `docker import`-ed under
the exact name the Dockerfiles' default `PYTHON_IMAGE` holds. A plain `docker build` with no
build args then works offline, and the Dockerfiles keep the official base for users (on a
machine that has the official image, it is used as is: an existing tag is never replaced).

    ensure_engine()            install docker.io/debootstrap if missing, start dockerd if no engine answers
    storage_driver() -> str    the engine's storage driver (overlay2 where the filesystem takes it, else vfs)
    ensure_base_image() -> str the base's tag (built once, cached by the tag)
    build_images(build)        {app: "mlpipeline/<app>:<build>"}, built from apps/ (local.containers)

Installing and starting the daemon need root; logs go under .e2e/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from components.images import APPS
from local import containers

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".e2e"
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
BASE_LABEL = "org.mlpipeline.e2e-base"  # marks a base this module built, never the official image
ENGINE_TIMEOUT = 60.0
DATA_ROOT = Path("/var/lib/docker")  # dockerd's default --data-root


class EngineError(RuntimeError):
    """The engine, the base image or an app image could not be had; the message says which step and why."""


def _run(
    argv: list[str], *, timeout: float | None = None, log: Path | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """Run a command; on failure raise EngineError with its last output lines (the whole output goes
    to `log`)."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:
            handle.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise EngineError(f"`{' '.join(argv[:4])}` exited with {result.returncode}:\n{tail}")
    return result


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise EngineError(f"{what} needs root (run `make e2e` as root, or start a Docker engine yourself)")


def install_missing(needs: dict[str, str]) -> None:
    """apt-get install each Debian package whose tool is missing: {package: command on PATH, or
    absolute path}."""
    missing = [
        package
        for package, tool in needs.items()
        if not (Path(tool).exists() if tool.startswith("/") else shutil.which(tool))
    ]
    if not missing:
        return
    _need_root(f"installing {' '.join(missing)}")
    log = OUT / "apt.log"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update"], log=log, env=env, timeout=600)
    _run(["apt-get", "install", "-y", "--no-install-recommends", *missing], log=log, env=env, timeout=1200)


def takes_overlay(where: Path) -> bool:
    """The filesystem at `where` takes an overlay mount (a test mount, removed again; needs root)."""
    probe = Path(tempfile.mkdtemp(prefix="overlay-probe-", dir=where))
    try:
        for part in ("lower", "upper", "work", "merged"):
            (probe / part).mkdir()
        layers = f"lowerdir={probe / 'lower'},upperdir={probe / 'upper'},workdir={probe / 'work'}"
        mounted = (
            subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o", layers, str(probe / "merged")],
                capture_output=True,
            ).returncode
            == 0
        )
        if mounted:
            subprocess.run(["umount", str(probe / "merged")], check=False)
        return mounted
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def ensure_engine() -> None:
    """Make `docker info` answer: install docker.io and debootstrap when missing, start dockerd when needed.

    dockerd is started with overlay2 where its data root takes an overlay mount, vfs otherwise: on
    vfs every `docker create` copies the whole image (12 s for the trainer's here) and every `docker
    rm` deletes the copy, which is what the containers bench measured before. A daemon that already
    answers is used as it is. A daemon started here keeps running after the suite (other suites and
    later runs use it); its log is .e2e/dockerd.log and its pid .e2e/dockerd.pid.
    """
    install_missing({"docker.io": "dockerd", "debootstrap": "debootstrap"})
    if containers.docker_answers():
        return
    _need_root("starting dockerd")
    OUT.mkdir(parents=True, exist_ok=True)
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    driver = "overlay2" if takes_overlay(DATA_ROOT) else "vfs"
    log = (OUT / "dockerd.log").open("ab")
    daemon = subprocess.Popen(
        ["dockerd", "--data-root", str(DATA_ROOT), "--storage-driver", driver],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (OUT / "dockerd.pid").write_text(f"{daemon.pid}\n")
    deadline = time.monotonic() + ENGINE_TIMEOUT
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise EngineError(
                f"dockerd ({driver}) exited with code {daemon.returncode}; see {OUT / 'dockerd.log'}"
            )
        if containers.docker_answers():
            return
        time.sleep(1)
    raise EngineError(f"dockerd did not answer within {ENGINE_TIMEOUT:.0f} s; see {OUT / 'dockerd.log'}")


def storage_driver() -> str:
    """The storage driver of the engine that answers (what image creation and container start cost
    depends on)."""
    return _run(["docker", "info", "--format", "{{.Driver}}"], timeout=20).stdout.strip()


def base_image_name() -> str:
    """The default `PYTHON_IMAGE` of the Dockerfiles; they must all name the same base."""
    names = {}
    for app in APPS:
        text = (containers.CONTEXT / app / "Dockerfile").read_text()
        match = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.MULTILINE)
        if not match:
            raise EngineError(f"apps/{app}/Dockerfile has no `ARG PYTHON_IMAGE=<default>`")
        names[app] = match.group(1)
    if len(set(names.values())) != 1:
        raise EngineError(f"the Dockerfiles name different Python bases: {names}")
    return next(iter(names.values()))


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def image_size(tag: str) -> int:
    """Bytes of the image's filesystem, all layers (what a node stores)."""
    return int(_run(["docker", "image", "inspect", "--format", "{{.Size}}", tag]).stdout.strip())


def ensure_base_image() -> str:
    """The Dockerfiles' Python base: kept when the tag exists, else built from Debian packages.
    Returns the tag."""
    tag = base_image_name()
    if image_exists(tag):
        return tag
    _need_root("debootstrap")
    if shutil.which("debootstrap") is None:
        raise EngineError("debootstrap is not installed (ensure_engine installs it)")
    if not SYSTEM_CA.is_file():
        raise EngineError(
            f"no system CA bundle at {SYSTEM_CA}: pip in the image could not verify the package index"
        )
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "base-image.log"
    rootfs = Path(tempfile.mkdtemp(prefix="base-rootfs-", dir=OUT))
    rootfs.chmod(0o755)  # it becomes the image's `/`: mkdtemp's 0700 would lock every non-root user out
    cache = OUT / "debootstrap-cache"  # the .debs, so that a rebuild downloads nothing
    cache.mkdir(parents=True, exist_ok=True)
    try:
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                f"--cache-dir={cache}",
                SUITE,
                str(rootfs),
                MIRROR,
            ],
            log=log,
            timeout=1800,
        )
        # The machine's bundle holds whatever CA intercepts TLS here; pip uses it, not its own certifi.
        shutil.copyfile(SYSTEM_CA, rootfs / "etc/ssl/certs/ca-certificates.crt")
        (rootfs / "etc/pip.conf").write_text(f"[global]\ncert = {SYSTEM_CA}\n")
        for leftovers in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/info",
        ):
            for child in (rootfs / leftovers).glob("*"):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                elif child.name != "lock":
                    child.unlink()
        # leaving the block closes the pipe and waits for tar
        with subprocess.Popen(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
        ) as tar:
            _run(
                [
                    "docker",
                    "import",
                    "--change",
                    "ENV LANG=C.UTF-8",
                    "--change",
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--change",
                    f"LABEL {BASE_LABEL}={SUITE}-minbase",
                    "--change",
                    'CMD ["python3"]',
                    "-",
                    tag,
                ],
                stdin=tar.stdout,
                log=log,
                timeout=900,
            )
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tag


def prune_replaced_images() -> str:
    """Remove the untagged images built on our base: each run re-tags the same names, and every image
    left behind holds its layers (on vfs, each layer a full copy). Tagged images (the layer cache) stay."""
    lines = (
        _run(["docker", "image", "prune", "--force", "--filter", f"label={BASE_LABEL}"])
        .stdout.strip()
        .splitlines()
    )
    return lines[-1] if lines else ""  # "Total reclaimed space: ..."


def build_images(build: str) -> dict[str, str]:
    """The three app images of `build`, engine and base ensured first: {app: "mlpipeline/<app>:<build>"}."""
    ensure_engine()
    ensure_base_image()
    return containers.build_images(build, OUT / "build.log")
