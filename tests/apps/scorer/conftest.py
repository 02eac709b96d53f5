"""Start the real scorer (`python -m scorer`) on a free loopback port and talk to it over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.serving import stop as stop_group
from tests.apps.modelfolder import write_model_folder

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Scorer:
    def __init__(self, folder: Path, build: str, log: Path, **env: str):
        self.port, self.probe_port = free_port(), free_port()
        self.log = log
        self.url = f"http://127.0.0.1:{self.port}"
        self.probe_url = f"http://127.0.0.1:{self.probe_port}"
        environment = {
            k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "WORKERS")
        }
        environment.update(
            MODELFOLDER=str(folder),
            BUILD_NUMBER=build,
            PORT=str(self.port),
            PROBE_PORT=str(self.probe_port),
            HOST="127.0.0.1",
            GIT_SHA="feedbeef",
            **env,
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scorer"],
            cwd=REPO,
            env=environment,
            stdout=open(log, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def wait(
        self, path: str = "/readyz", status: int = 200, timeout: float = 30.0, base: str = ""
    ) -> httpx.Response:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"scorer exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                last = self.client.get(base + path)
                if last.status_code == status:
                    return last
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(
            f"{path} did not answer {status} in {timeout} s (last: {last}):\n{self.log.read_text()}"
        )

    def wait_probe(self, path: str = "/readyz", status: int = 200, timeout: float = 30.0) -> httpx.Response:
        """wait(), on the probe port (PROBE_PORT), where the kubelet sends its probes."""
        return self.wait(path, status, timeout, base=self.probe_url)

    def log_lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8").splitlines()

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            stop_group(self.process)


@pytest.fixture
def start_scorer(tmp_path):
    started = []

    def start(folder: Path, build: str, **env: str) -> Scorer:
        scorer = Scorer(folder, build, tmp_path / f"scorer-{len(started)}.log", **env)
        started.append(scorer)
        return scorer

    yield start
    for scorer in started:
        scorer.stop()


def _served(tmp_path_factory, family: str, workers: int):
    folder = tmp_path_factory.mktemp(family) / "41"
    model = write_model_folder(folder, "41", family=family, n_users=60, n_items=50, per_user=6, seed=3)
    scorer = Scorer(folder, "41", folder.parent / "scorer.log", MAX_BATCH_USERS="20", WORKERS=str(workers))
    try:
        scorer.wait()
        deadline = time.monotonic() + 30
        while sum('"model-loaded"' in line for line in scorer.log_lines()) < workers:  # every worker
            assert time.monotonic() < deadline, scorer.log.read_text()
            time.sleep(0.05)
        yield model, scorer
    finally:
        scorer.stop()


@pytest.fixture(scope="module")
def factor(tmp_path_factory):
    """A factor model (dense .npy vectors) served by two worker processes (metrics add up)."""
    yield from _served(tmp_path_factory, "factor", workers=2)


@pytest.fixture(scope="module")
def itemitem(tmp_path_factory):
    """An item-item model (sparse .npz vectors), served by one process (the default)."""
    yield from _served(tmp_path_factory, "item-item", workers=1)
