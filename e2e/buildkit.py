"""A BuildKit for the engine suite: `buildkitd` from the toolchain (runc from Debian), registered as
the `remote` buildx builder that pulumi-docker-build builds the app images on.

The provider takes the first builder in the buildx store that it supports; it refuses Docker's own
legacy builder, and with none it creates a docker-container builder whose first step pulls
moby/buildkit from Docker Hub, which is out of reach here. So the suite runs the daemon itself (root,
socket and logs under .e2e/buildkit), with the suite's registry as Docker Hub's mirror (the
Dockerfiles' base image) and as a plain-HTTP registry it pushes to, and registers it with the
buildx CLI into a Docker config folder of its own (`docker_config`: the `DOCKER_CONFIG` that
`pulumi` runs with). The same setup a CI runner without Docker Hub would use. Its state (the build
cache) lives beside the toolchain's cache, outside the clone, as Docker's own cache does: a fresh
clone's run builds the images from cache, not from PyPI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from e2e import process, toolchain
from e2e.pulumi_cli import ROOT

HOME = ROOT / ".e2e" / "buildkit"
CACHE = toolchain.CACHE_ROOT.parent / "buildkit"  # the build cache, kept across clones
BUILDER = "mlpipeline-e2e"


class BuildKitError(AssertionError):
    pass


class BuildKit(process.Started):
    def __init__(self, bin_dir: Path, registry_host: str, home: Path = HOME, cache: Path = CACHE):
        self.bin, self.registry_host, self.home, self.cache = Path(bin_dir), registry_host, home, cache
        self.socket = home / "buildkitd.sock"
        self.docker_config = home / "docker-config"
        self.log = home / "buildkitd.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        if shutil.which("runc") is None:
            raise BuildKitError("runc is not installed (Debian: apt-get install runc)")
        shutil.rmtree(self.docker_config, ignore_errors=True)
        self.docker_config.mkdir(parents=True)
        # TOML written by hand: a few strings, booleans and string lists.
        (self.home / "buildkitd.toml").write_text(f"""root = "{self.cache}"
[grpc]
  address = ["unix://{self.socket}"]
[worker.oci]
  enabled = true
  gc = true
[worker.containerd]
  enabled = false
[registry."docker.io"]
  mirrors = ["{self.registry_host}"]
[registry."{self.registry_host}"]
  http = true
""")
        self.process = process.spawn(
            [str(self.bin / "buildkitd"), f"--config={self.home / 'buildkitd.toml'}"], self.log, self.home
        )
        deadline = time.monotonic() + 60
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BuildKitError(f"buildkitd did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        self.buildx("create", "--name", BUILDER, "--driver", "remote", "--use", f"unix://{self.socket}")
        self.buildx("inspect", "--bootstrap", BUILDER)

    def buildx(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.bin / "buildx"), *args],
            env={**os.environ, "DOCKER_CONFIG": str(self.docker_config)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise BuildKitError(f"`buildx {' '.join(args)}` exited {done.returncode}: {done.stderr[-2000:]}")
        return done.stdout

    def stop(self) -> None:
        if self.process is not None:
            process.terminate([self.process], grace=20)
