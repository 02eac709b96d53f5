"""The outcome half of `python -m monitoring.canary` end to end: real scorer processes (champion
152, canary 154, equally good models), synthetic users who see their lists and click some items
(the feedback posted to either release's pod, as a router would spread it), and a real Prometheus
on 127.0.0.1 scraping both. Users who click the canary's lists less get it rolled back; users who
treat both alike never do."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

from tests.monitoring.conftest import REPO, USERS
from tests.monitoring.test_canary import canary_command, run_under_traffic


class Users:
    """Synthetic users: each asks one release for a list and clicks one of its items with that
    release's click-through, sending the click to a pod of either release."""

    def __init__(self, releases, click_through: dict[str, float], seed: int):
        self.releases, self.click_through = releases, click_through
        self.rng = random.Random(seed)
        self.lists = dict.fromkeys(click_through, 0)
        self.clicks = dict.fromkeys(click_through, 0)

    def visit(self, build: str) -> None:
        scorer = self.releases.scorers[build]
        reply = scorer.client.get(
            f"/recommendations/{USERS[self.lists[build] % len(USERS)]}", params={"k": 5}
        )
        assert reply.status_code == 200, reply.text
        self.lists[build] += 1
        if self.rng.random() < self.click_through[build]:
            item = self.rng.choice(reply.json()["items"])["item_id"]
            taker = self.releases.scorers[self.rng.choice(list(self.click_through))]
            event = {"request_id": reply.headers["x-request-id"], "item_id": item, "event": "click"}
            answer = taker.client.post("/feedback", json=event)
            assert answer.status_code == 200 and answer.json()["served_by"] == build, answer.text
            self.clicks[build] += 1

    def run(self, lists_each: int) -> None:
        for _ in range(lists_each):
            for build in self.click_through:
                self.visit(build)


def feedback_total(prometheus, build: str) -> float:
    result = prometheus.query(f'sum(scorer_feedback_total{{served_by="{build}", event="click"}})')
    return float(result[0]["value"][1]) if result else 0.0


def prometheus_judges(
    releases, start_prometheus, click_through: dict[str, float], lists_each: int, seed: int
):
    # Feedback for a build a pod did not serve gets its series at its first event, which the first
    # scrape reads as the series' start, not as a rise (docs/CONTRACTS.md): one click for each
    # build on each pod before Prometheus starts, so every counter the canary reads spans the same
    # scrapes. Without it the canary's conversion rate once read 9.9 % for the users' 11.8 %.
    for build in click_through:
        for taker in map(releases.scorers.get, click_through):
            reply = releases.scorers[build].client.get(f"/recommendations/{USERS[0]}", params={"k": 5})
            event = {
                "request_id": reply.headers["x-request-id"],
                "item_id": reply.json()["items"][0]["item_id"],
                "event": "click",
            }
            assert taker.client.post("/feedback", json=event).status_code == 200
    prometheus = start_prometheus(
        [scorer.url.removeprefix("http://") for scorer in releases.scorers.values()]
    )
    # Every counter scraped once before the traffic, so the window's increase counts all of it.
    prometheus.wait_for("scorer_items_shown_total", lambda result: len(result) == len(releases.scorers))
    before = {build: feedback_total(prometheus, build) for build in click_through}
    users = Users(releases, click_through, seed)
    users.run(lists_each)
    # Prometheus has seen all the clicks (one more scrape) before the canary command looks.
    for build in click_through:
        prometheus.wait_for(
            f'sum(scorer_feedback_total{{served_by="{build}", event="click"}})',
            lambda result, build=build: (
                bool(result) and float(result[0]["value"][1]) - before[build] >= users.clicks[build]
            ),
        )
    time.sleep(1.5)
    command = [
        sys.executable,
        "-m",
        "monitoring.canary",
        "--prometheus",
        prometheus.url,
        "--champion",
        "152",
        "--canary",
        "154",
        "--window",
        "10m",
        "--stack",
        "dev",
        "--latency-slack",
        "0.05",  # a shared test machine's stalls are not the canary's
        # Only the outcome is judged here: the other guards have their own tests (test_canary.py).
        # Once, on a loaded CI run, the canary's atypical-user share read 24 % against 5 % (both
        # models' true share is 5 %; not reproduced in a dozen runs since) and pre-empted the outcome.
        "--novelty-increase",
        "1",
        "--fallback-increase",
        "1",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    return users, result, prometheus


def test_users_who_click_the_canary_less_get_it_rolled_back(releases, start_prometheus):
    users, result, prometheus = prometheus_judges(
        releases, start_prometheus, {"152": 0.3, "154": 0.12}, 1200, seed=1
    )
    assert result.returncode == 4, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["decision"] == "rollback" and "worse with confidence" in doc["reasons"][0], doc
    # Prometheus saw what the users did. increase() extrapolates a counter's rise towards the window's
    # edges (by up to a scrape interval each side: +18 % was seen when a loaded machine ran the users
    # in few intervals), so the counts are only near the truth; the conversion rate, what the test
    # decides on, is a ratio of two counters of the same scrapes and keeps closer to it.
    canary, clicks, lists = doc["canary"], users.clicks["154"], users.lists["154"]
    assert 0.85 * clicks <= canary["conversions"] <= 1.6 * clicks
    assert 0.85 * lists <= canary["lists"] <= 1.6 * lists
    assert abs(canary["conversions"] / canary["lists"] - clicks / lists) <= 0.15 * clicks / lists
    assert doc["command"] == """pulumi up --yes --skip-preview --stack dev --config 'traffic={"152":100}'"""
    assert "to apply it: " + doc["command"] in result.stderr
    # The Grafana panel's click-through (the recording rules) shows it too.
    panel = json.loads((REPO / "monitoring" / "grafana-outcomes.json").read_text())
    expr = panel["targets"][0]["expr"].replace("$namespace", "dev")
    shown = prometheus.wait_for(expr, lambda result: {s["metric"]["build"] for s in result} >= {"152", "154"})
    click_through = {sample["metric"]["build"]: float(sample["value"][1]) for sample in shown}
    assert 0 < click_through["154"] < click_through["152"]


def test_users_who_treat_both_alike_never_get_the_canary_rolled_back(releases, start_prometheus):
    users, result, _ = prometheus_judges(releases, start_prometheus, {"152": 0.3, "154": 0.3}, 800, seed=2)
    doc = json.loads(result.stdout)
    assert result.returncode in (0, 3) and doc["decision"] in ("promote", "hold"), doc
    assert users.clicks["154"] > 150 and doc["canary"]["conversions"] > 150  # outcomes were compared
    assert any("conversion rate" in reason for reason in doc["reasons"]), doc


def test_without_prometheus_the_scorers_metrics_give_the_same_verdict(releases):
    users = Users(releases, {"152": 0.5, "154": 0.15}, seed=3)
    # A few hundred lists each in the window: the test needs 20 clicks a side, not the default 50.
    extra = ["--window", "5s", "--latency-slack", "0.05", "--min-conversions", "20"]
    status, output = run_under_traffic(
        releases,
        canary_command(releases, "152", "154", *extra),
        [],
        visit=lambda: (users.visit("152"), users.visit("154")),
    )
    doc = json.loads(output)
    assert status == 4 and doc["decision"] == "rollback", doc
    assert 0 < doc["canary"]["conversions"] < doc["champion"]["conversions"]
