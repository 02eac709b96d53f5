"""Engine scenario 10 (real node only): the nightly canary loop of .github/workflows/nightly.yml,
closed on the real engine, node and Prometheus.

A stack named `dev` with Pulumi.dev.yaml's canaryPercent (traffic never set by a nightly run)
releases build 1, then build 2, which joins as a canary. A Prometheus from the toolchain finds the
scorer pods by Kubernetes service discovery (monitoring/prometheus-kubernetes.yml, rules loaded);
synthetic users ask both releases' pods for lists and click the canary's more often; the
workflow's own canary step (its `run:` script read from the YAML) promotes build 2. The next
night's build 3 joins at canaryPercent, users like it less, and the same step rolls it back. Last,
loaded by a few users at once, build 2's autoscaler (CPU figures from metrics-server) adds a pod
while builds 1 and 3, at 0 %, keep one each. Not real here: the split itself (no Gateway data
plane runs; the users address each release's pods, as the router's weights would send them) and
NetworkPolicies (the node's bridge CNI does not enforce them).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import urllib.request
from email.message import Message

import yaml

from e2e.cluster import Cluster
from e2e.kube import EngineError, prepare_namespace, ready_pod_urls, route_weights, wait_gone
from e2e.prometheus import Prometheus
from e2e.pulumi_cli import ROOT, Pulumi
from e2e.stack import NAMESPACE, NIGHTLY_STACK
from local import demo
from monitoring.canary import EXIT

WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"

SCENARIO = (
    "10 the nightly loop: each build joins at canaryPercent; the workflow's canary step promotes"
    " one users like better and rolls back one they like less; the autoscaler adds a pod"
)
LISTS_EACH = 800  # enough for the outcome test to promote at 2x click-through (monitoring.outcomes)
TRAFFIC_SECONDS = 24  # a dozen scrapes: a series' first scrape misses only a little of its count
LOAD_THREADS = 4  # users at once on the champion's one pod: its CPU well above the autoscaler's 70 %


def _request(url: str, body: dict | None = None) -> tuple[dict, Message]:
    """The JSON answer and the headers (looked up case-insensitively)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read()), reply.headers


class Users:
    """Each asks one release's pod for a list and clicks one of its items with that release's
    click-through, posting the click to a pod of either release (any pod attributes it)."""

    def __init__(
        self, pods: dict[str, list[str]], users: list[str], click_through: dict[str, float], seed: int = 10
    ):
        self.pods, self.users, self.rng = pods, users, random.Random(seed)
        self.click_through = click_through
        self.lists = dict.fromkeys(pods, 0)
        self.clicks = dict.fromkeys(pods, 0)

    def run(self, lists_each: int, seconds: float, timeout: float = 300) -> None:
        """The rounds spread evenly over `seconds`, as a night's traffic spreads over many scrapes."""
        began = time.monotonic()
        every = [url for urls in self.pods.values() for url in urls]
        for turn in range(lists_each):
            now = time.monotonic()
            if now > began + timeout:
                raise EngineError(f"the users made {turn} of {lists_each} rounds in {timeout:.0f} s")
            time.sleep(max(0.0, began + turn * seconds / lists_each - now))
            for build, urls in self.pods.items():
                user = self.users[turn % len(self.users)]
                body, headers = _request(f"{self.rng.choice(urls)}/recommendations/{user}?k=5")
                if headers.get("X-Model-Build") != build:
                    raise EngineError(f"a pod of build {build} answered for {headers.get('X-Model-Build')}")
                self.lists[build] += 1
                if self.rng.random() < self.click_through[build]:
                    event = {
                        "request_id": headers["X-Request-ID"],
                        "item_id": self.rng.choice(body["items"])["item_id"],
                        "event": "click",
                    }
                    answer, _ = _request(f"{self.rng.choice(every)}/feedback", event)
                    if answer.get("served_by") != build:
                        raise EngineError(f"feedback on build {build}'s list attributed to {answer}")
                    self.clicks[build] += 1


def _expect_split(cluster: Cluster, pulumi: Pulumi, expected: dict[str, int], mode: str) -> dict:
    outputs = pulumi.outputs(NIGHTLY_STACK)
    traffic, route = outputs["traffic"], route_weights(cluster)
    weights = {build: int(weight) for build, weight in traffic["weights"].items()}
    releases = outputs["releases"]
    on_route = {build: route.get(record["service"]["name"], 0) for build, record in releases.items()}
    if weights != expected or on_route != expected or traffic["mode"] != mode:
        raise EngineError(
            f"traffic output {traffic['mode']} {weights}, route {on_route}; expected {mode} {expected}"
        )
    return on_route


def shipped_canary_percent() -> str:
    """Pulumi.dev.yaml's canaryPercent: the scenario proves the shipped setting, not one of its own."""
    config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    return str(config["mlpipeline:canaryPercent"])


def canary_step() -> str:
    """The nightly workflow's canary step, its `run:` script as written but for one flag: a p99
    slack of 50 ms instead of 5, as both releases' pods share two cores with the users, Prometheus
    and the control plane (a latency rollback would pre-empt the outcome test judged here)."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    for step in workflow["jobs"]["release"]["steps"]:
        if step.get("name", "").startswith("Canary analysis"):
            script = step["run"]
            if script.count(" --run") != 1:
                raise EngineError(f"{WORKFLOW}'s canary step should pass --run once:\n{script}")
            return script.replace(" --run", " --latency-slack 0.05 --run")
    raise EngineError(f"{WORKFLOW} has no 'Canary analysis' step")


def run_canary_step(pulumi: Pulumi, prometheus: Prometheus, build: str, decision: str) -> dict:
    """The workflow's canary step for `build` in a bash, as the runner would run it: `pulumi` and
    `python` on PATH, the repository checked out (here: the throwaway project beside the repo's
    packages). A `sleep` on PATH records what the step waits instead of waiting: the users' traffic
    is already in Prometheus, and a window of 30 minutes reads it all."""
    tools = pulumi.home / "workflow-bin"
    tools.mkdir(exist_ok=True)
    slept = pulumi.home / "workflow-slept"
    slept.unlink(missing_ok=True)
    # this interpreter (a symlink would lose its venv)
    for name, script in (("python", f'exec {sys.executable} "$@"'), ("sleep", f'echo "$@" >> {slept}')):
        (tools / name).unlink(missing_ok=True)
        (tools / name).write_text(f"#!/bin/sh\n{script}\n")
        (tools / name).chmod(0o755)
    env = pulumi.env()
    env.update(
        PATH=f"{tools}:{env['PATH']}",
        PYTHONPATH=str(ROOT),
        BUILD=build,
        PROMETHEUS_URL=prometheus.url,
    )
    began = time.monotonic()
    done = subprocess.run(
        ["bash", "-e", "-c", canary_step()],  # GitHub's default shell for run: is bash -e
        cwd=pulumi.project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    log = pulumi.home / "logs" / f"nightly-canary-{build}.log"
    log.write_text(done.stdout + "\n--- stderr\n" + done.stderr)
    try:
        verdict = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise EngineError(f"the canary step exited {done.returncode} without a report: see {log}") from None
    ran = {
        "exit": done.returncode,
        "decision": verdict["decision"],
        "reasons": verdict["reasons"],
        "slept": slept.read_text().split() if slept.exists() else [],
        "seconds": round(time.monotonic() - began, 1),
    }
    judged = any(reason.startswith("conversion rate") for reason in ran["reasons"])
    if (ran["decision"], ran["exit"], judged) != (decision, EXIT[decision], True):
        raise EngineError(f"the canary step on build {build} should {decision}: {ran} (see {log})")
    return ran


def scrape_every_pod(cluster: Cluster, prometheus: Prometheus, pods: dict[str, list[str]]) -> None:
    """Kubernetes discovery found every scorer pod, and each scrape worked."""
    expected = {url.removeprefix("http://") for urls in pods.values() for url in urls}
    prometheus.wait(
        lambda: (
            {
                t["labels"]["instance"]
                for t in prometheus.targets()
                if t["health"] == "up" and t["labels"].get("namespace") == NAMESPACE
            }
            >= expected
        ),
        f"scraping the scorer pods {sorted(expected)}",
    )


def users_click(
    cluster: Cluster,
    pulumi: Pulumi,
    prometheus: Prometheus,
    users: list[str],
    click_through: dict[str, float],
) -> dict:
    """Synthetic users on the given releases' Ready pods, until Prometheus has counted every click."""
    releases = pulumi.outputs(NIGHTLY_STACK)["releases"]
    pods = {build: list(ready_pod_urls(cluster, releases[build]).values()) for build in click_through}
    if not all(pods.values()):
        raise EngineError(f"no Ready scorer pod to send users to: {pods}")
    scrape_every_pod(cluster, prometheus, pods)
    crowd = Users(pods, users, click_through)
    began = time.monotonic()
    crowd.run(LISTS_EACH, TRAFFIC_SECONDS)
    for build, clicks in crowd.clicks.items():
        matchers = f'served_by="{build}", event="click", namespace="{NAMESPACE}"'
        total = f"sum(scorer_feedback_total{{{matchers}}})"
        prometheus.wait(
            lambda total=total, clicks=clicks: (
                sum(float(s["value"][1]) for s in prometheus.query(total)) >= clicks
            ),
            f"counting build {build}'s {clicks} clicks",
        )
    time.sleep(3)  # one more scrape of every counter, as the workflow's 30 minutes would give
    # The recording rules work on the discovered pods: click-through per release.
    recorded = prometheus.query(
        f'build_event:scorer_feedback_per_list:ratio_rate5m{{namespace="{NAMESPACE}", event="click"}}'
    )
    by_build = {s["metric"]["build"]: round(float(s["value"][1]), 4) for s in recorded}
    if not set(click_through) <= set(by_build):
        raise EngineError(f"the recording rules give click-through for {recorded}")
    return {
        "pods": {build: len(urls) for build, urls in pods.items()},
        "lists": crowd.lists,
        "clicks": crowd.clicks,
        "seconds": round(time.monotonic() - began, 1),
        "recorded_click_through": by_build,
    }


def nightly_loop(cluster: Cluster, pulumi: Pulumi, config: dict, details: dict) -> None:
    assert cluster.node is not None
    wait_gone(cluster, f"/api/v1/namespaces/{NAMESPACE}")  # scenario 8's destroy
    data = prepare_namespace(cluster)
    users = demo.sample_users(data, 40)
    details["canary_percent"] = percent = shipped_canary_percent()
    pulumi.new_stack(NIGHTLY_STACK, {**config, "mlpipeline:canaryPercent": percent})
    canary, champion = int(percent), 100 - int(percent)
    with Prometheus(cluster.bin / "prometheus", cluster.kubeconfig, pulumi.home / "prometheus") as prometheus:
        details["rule_groups"] = prometheus.rule_groups()
        for build in ("1", "2"):  # the nightly run: build and data, never traffic
            pulumi.up(f"mlpipeline:build={build}", stack=NIGHTLY_STACK)
            details[f"up_build{build}_seconds"] = pulumi.seconds()
        details["night2_split"] = _expect_split(cluster, pulumi, {"1": champion, "2": canary}, "explicit")
        # Users like build 2's lists better: the step promotes it.
        details["night2_users"] = users_click(cluster, pulumi, prometheus, users, {"1": 0.15, "2": 0.30})
        details["night2_canary"] = run_canary_step(pulumi, prometheus, "2", "promote")
        details["promoted_split"] = _expect_split(cluster, pulumi, {"1": 0, "2": 100}, "explicit")

        # The next night: a fresh checkout's stack file sets no traffic (the canary's `--config`
        # wrote it into this folder's); build 3 joins the new champion at canaryPercent.
        pulumi("config", "rm", "mlpipeline:traffic", stack=NIGHTLY_STACK)
        pulumi.up("mlpipeline:build=3", stack=NIGHTLY_STACK)
        details["night3_split"] = _expect_split(
            cluster, pulumi, {"1": 0, "2": champion, "3": canary}, "explicit"
        )
        # Users like build 3's lists less: the step rolls it back (exit 4 fails the run for a human).
        details["night3_users"] = users_click(cluster, pulumi, prometheus, users, {"2": 0.30, "3": 0.15})
        details["night3_canary"] = run_canary_step(pulumi, prometheus, "3", "rollback")
        details["rolled_back_split"] = _expect_split(cluster, pulumi, {"1": 0, "2": 100, "3": 0}, "explicit")

    # Last, as its users never click (lists nobody clicks lower a release's click-through: in a
    # first run here they made the rollback of build 3 a promotion): loaded, the serving release
    # scales out; those at 0 % do not.
    releases = pulumi.outputs(NIGHTLY_STACK)["releases"]
    details["autoscaler"] = autoscaler_scales(cluster, releases["2"], users)
    at_zero = {build: len(ready_pod_urls(cluster, releases[build])) for build in ("1", "3")}
    details["autoscaler"]["pods_at_0_percent"] = at_zero
    if set(at_zero.values()) != {1}:
        raise EngineError(f"releases at 0 % have {at_zero} Ready pods; their minReplicas is 1")


def _autoscaler(cluster: Cluster, record: dict) -> dict:
    name = record["service"]["name"]  # the release's Deployment, Service and autoscaler share it
    return cluster.get(f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/{name}") or {}


def autoscaler_scales(cluster: Cluster, record: dict, users: list[str], timeout: float = 240) -> dict:
    """The champion's pods under load from a few users at once: metrics-server's CPU figures reach
    the release's HorizontalPodAutoscaler, which adds pods that become Ready. Bounded in time; the
    load stops as soon as a second pod serves."""
    urls = list(ready_pod_urls(cluster, record).values())
    if len(urls) != 1:
        raise EngineError(f"build {record['build']} should start from one pod (minReplicas 1): {urls}")
    stop = threading.Event()
    sent = [0]

    def load() -> None:
        while not stop.is_set():
            try:
                _request(f"{urls[0]}/recommendations/{random.choice(users)}?k=20")
                sent[0] += 1
            except OSError:
                time.sleep(0.1)  # a busy pod's refusal is the load's point, not a failure

    threads = [threading.Thread(target=load, daemon=True) for _ in range(LOAD_THREADS)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        while True:
            status = _autoscaler(cluster, record).get("status", {})
            ready = len(ready_pod_urls(cluster, record))
            if status.get("desiredReplicas", 1) > 1 and ready > 1:
                break
            if time.monotonic() - began > timeout:
                raise EngineError(
                    f"the autoscaler did not add a Ready pod in {timeout:.0f} s under load: {status}"
                )
            time.sleep(2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    cpu = [m["resource"]["current"] for m in status.get("currentMetrics", []) if m.get("type") == "Resource"]
    return {
        "seconds_to_a_second_ready_pod": round(time.monotonic() - began, 1),
        "requests_sent": sent[0],
        "desired_replicas": status.get("desiredReplicas"),
        "ready_pods": ready,
        "cpu": cpu,
    }
