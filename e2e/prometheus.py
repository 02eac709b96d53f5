"""A Prometheus for the engine suite, built into the toolchain (with Kubernetes service discovery,
which Debian's package leaves out) and run on 127.0.0.1 with the scrape config a user would deploy,
monitoring/prometheus-kubernetes.yml: it finds the scorer pods through the e2e API server (the
suite's kubeconfig, the one thing a Prometheus outside the cluster adds) and scrapes them at their
pod IPs on the node's bridge, with the project's alert and recording rules loaded. Scraped every
2 s instead of 15 s, so that a scenario sees its traffic in seconds.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from e2e import process
from e2e.pulumi_cli import ROOT

SCRAPE_CONFIG = ROOT / "monitoring" / "prometheus-kubernetes.yml"
SCRAPE_INTERVAL = "2s"


class PrometheusError(AssertionError):
    pass


def config(kubeconfig: Path) -> dict:
    """The shipped config, pointed at the e2e API server and at the rules by absolute path."""
    document = yaml.safe_load(SCRAPE_CONFIG.read_text())
    document["global"].update(scrape_interval=SCRAPE_INTERVAL, evaluation_interval=SCRAPE_INTERVAL)
    document["rule_files"] = [str(SCRAPE_CONFIG.parent / name) for name in document["rule_files"]]
    for job in document["scrape_configs"]:
        for discovery in job.get("kubernetes_sd_configs", []):
            discovery["kubeconfig_file"] = str(kubeconfig)
    return document


class Prometheus(process.Started):
    def __init__(self, binary: Path, kubeconfig: Path, home: Path):
        self.binary, self.kubeconfig, self.home = binary, kubeconfig, home
        self.log = home / "prometheus.log"
        self.url = ""
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        home = self.home
        home.mkdir(parents=True, exist_ok=True)
        port = process.free_port()
        self.url = f"http://127.0.0.1:{port}"
        (home / "prometheus.yml").write_text(yaml.safe_dump(config(self.kubeconfig), sort_keys=False))
        self.process = process.spawn(
            [
                str(self.binary),
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            self.log,
            home,
        )
        self.wait(lambda: self._get("/-/ready", raw=True) is not None, "ready", 60)

    def stop(self) -> None:
        if self.process is not None:
            process.terminate([self.process])

    def _get(self, path: str, raw: bool = False):
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as reply:
                body = reply.read()
        except (urllib.error.URLError, OSError):
            return None
        return body if raw else json.loads(body)

    def query(self, expr: str) -> list[dict]:
        doc = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if doc is None or doc.get("status") != "success":
            raise PrometheusError(f"Prometheus could not answer {expr!r}: {doc}")
        return doc["data"]["result"]

    def targets(self) -> list[dict]:
        doc = self._get("/api/v1/targets?state=active") or {}
        return (doc.get("data") or {}).get("activeTargets", [])

    def rule_groups(self) -> list[str]:
        doc = self._get("/api/v1/rules") or {}
        return [group["name"] for group in (doc.get("data") or {}).get("groups", [])]

    def wait(self, done, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        assert self.process is not None, "start() first"
        while not done():
            if self.process.poll() is not None:
                log = self.log.read_text()[-3000:]
                raise PrometheusError(f"prometheus exited {self.process.returncode}: {log}")
            if time.monotonic() > deadline:
                raise PrometheusError(f"prometheus: not {what} after {timeout:.0f} s (log {self.log})")
            time.sleep(0.5)
