"""An image registry for the engine suite: the CNCF distribution registry from the toolchain, on
127.0.0.1 with its storage under .e2e/registry, plain HTTP (loopback only).

The engine pushes the app images to it (pulumi-docker-build, on e2e/buildkit.py's BuildKit) and the
node's containerd pulls them from it by digest; it is also the suite's stand-in for Docker Hub
(`mirror_base`): the Dockerfiles' `python:…` base, built here from Debian packages, is pushed under
the name Docker Hub would serve it at, and BuildKit is told to use this registry as Docker Hub's
mirror. That is the setup of a CI runner that cannot reach Docker Hub; a user's machine needs none
of it. `manifest_digest` asks the registry's API what a tag points at.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from e2e import process
from e2e.pulumi_cli import ROOT

HOME = ROOT / ".e2e" / "registry"
# What a pull by tag accepts: an image index (several platforms, or one with attestations) or one manifest.
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


class RegistryError(AssertionError):
    pass


class Registry(process.Started):
    def __init__(self, binary: Path, home: Path = HOME):
        self.binary, self.home = binary, home
        self.log = home / "registry.log"
        self.host = ""  # 127.0.0.1:<port>, once started
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.host = f"127.0.0.1:{process.free_port()}"
        config = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.home / "data")}},
            "http": {"addr": self.host},
        }
        (self.home / "config.yml").write_text(yaml.safe_dump(config))
        self.process = process.spawn(
            [str(self.binary), "serve", str(self.home / "config.yml")], self.log, self.home
        )
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RegistryError(
                    f"the registry did not answer on {self.host}: {self.log.read_text()[-2000:]}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            process.terminate([self.process])

    def _answers(self) -> bool:
        """Whether the registry's API root answers 200 (the Docker registry API's version check)."""
        try:
            with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=10) as reply:
                return reply.status == 200
        except OSError:  # HTTPError, a refused connection, a timeout
            return False

    def manifest_digest(self, repository: str, tag: str) -> str:
        """The digest the registry serves for repository:tag (its Docker-Content-Digest)."""
        request = urllib.request.Request(
            f"http://{self.host}/v2/{repository}/manifests/{tag}",
            method="HEAD",
            headers={"Accept": MANIFEST_TYPES},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.headers["Docker-Content-Digest"]
        except urllib.error.HTTPError as error:
            raise RegistryError(f"{self.host}/{repository}:{tag}: HTTP {error.code}") from error

    def push(self, local_tag: str, repository_tag: str) -> str:
        """Push the Docker engine's `local_tag` here as `repository_tag`; returns the reference."""
        target = f"{self.host}/{repository_tag}"
        for argv in (["docker", "tag", local_tag, target], ["docker", "push", "--quiet", target]):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
            if done.returncode != 0:
                raise RegistryError(f"`{' '.join(argv)}` exited {done.returncode}: {done.stderr[-2000:]}")
        return target

    def mirror_base(self, local_tag: str) -> str:
        """Push the Docker engine's `local_tag` (e.g. python:3.11.11-slim-bookworm) to where a Docker
        Hub mirror serves it (library/python:…); returns that reference."""
        name, _, tag = local_tag.partition(":")
        return self.push(local_tag, f"{name if '/' in name else 'library/' + name}:{tag or 'latest'}")
