"""Real Prometheus tools for the monitoring tests: promtool, and a Prometheus server on a free
loopback port with its own config and storage under tmp_path, killed at teardown.

Debian's `prometheus` package provides both (.ci/run installs it). Without it these tests skip
and say so; with REQUIRE_PROMETHEUS=1 (set by .ci/run) they fail instead, so CI never skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.apps.modelfolder import write_model_folder
from tests.apps.scorer.conftest import Scorer, free_port, stop_group

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "monitoring" / "alerts.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian: apt-get install prometheus; .ci/run installs it)"
        if os.environ.get("REQUIRE_PROMETHEUS"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


class Prometheus:
    """One Prometheus server scraping `targets` every second and evaluating `rule_files`."""

    def __init__(self, folder: Path, targets: list[str], rule_files: list[Path]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            # The namespace label a Kubernetes scrape adds; the rules and the canary analysis use it.
            "scrape_configs": [
                {
                    "job_name": "scorer",
                    "static_configs": [{"targets": targets, "labels": {"namespace": "dev"}}],
                }
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = folder / "prometheus.log"
        self.process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"prometheus exited with {self.process.returncode}:\n{self.log.read_text()}"
                )
            try:
                if self.client.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready in {timeout} s:\n{self.log.read_text()}")

    def query(self, expr: str) -> list[dict]:
        reply = self.client.get("/api/v1/query", params={"query": expr})
        reply.raise_for_status()
        return reply.json()["data"]["result"]

    def wait_for(self, expr: str, accept, timeout: float = 60.0) -> list[dict]:
        """Query `expr` until accept(result) holds; the last result is in the failure message."""
        deadline = time.monotonic() + timeout
        result = None
        while time.monotonic() < deadline:
            result = self.query(expr)
            if accept(result):
                return result
            time.sleep(0.5)
        raise AssertionError(f"{expr} never satisfied the check in {timeout} s; last result: {result}")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            stop_group(self.process)


@pytest.fixture
def start_prometheus(tmp_path):
    started = []

    def start(targets: list[str], rule_files: tuple[Path, ...] = (ALERTS,)) -> Prometheus:
        folder = tmp_path / f"prometheus-{len(started)}"
        folder.mkdir()
        server = Prometheus(folder, targets, list(rule_files))
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


# ---- real scorers: a champion and two canaries, one of them trained on too little data ----------

USERS = [f"u{i}" for i in range(60)]  # the users live traffic asks about: all known to the champion


class Releases:
    def __init__(self, folder: Path):
        self.scorers = {}
        try:
            # 153 was trained on a tenth of the users: the others get the popular-items fallback.
            for build, n_users, seed in (("152", 60, 3), ("153", 6, 4), ("154", 60, 5)):
                model = folder / build
                write_model_folder(model, build, n_users=n_users, n_items=50, per_user=6, seed=seed)
                self.scorers[build] = Scorer(model, build, folder / f"scorer-{build}.log")
            for scorer in self.scorers.values():
                scorer.wait()
        except BaseException:
            self.stop()
            raise

    def drive(self, builds: list[str], done, timeout: float = 60.0) -> int:
        """Ask every release in `builds` about USERS in turn until done() holds; the request count."""
        deadline = time.monotonic() + timeout
        sent = 0
        while not done():
            assert time.monotonic() < deadline, f"traffic ran {timeout} s without the expected effect"
            for build in builds:
                reply = self.scorers[build].client.get(f"/recommendations/{USERS[sent % len(USERS)]}")
                assert reply.status_code == 200, reply.text
            sent += 1
        return sent

    def stop(self) -> None:
        for scorer in self.scorers.values():
            scorer.stop()


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    started = Releases(tmp_path_factory.mktemp("releases"))
    yield started
    started.stop()
