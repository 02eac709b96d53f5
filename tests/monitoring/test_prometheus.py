"""A real Prometheus server scrapes real scorer processes and evaluates monitoring/alerts.yml:
the series the rules use exist under these names, the build join works, every rule is healthy."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.monitoring.conftest import REPO


def values(result: list[dict]) -> dict[str, float]:
    return {sample["metric"].get("build", ""): float(sample["value"][1]) for sample in result}


def test_prometheus_scrapes_the_scorers_and_evaluates_the_rules(releases, start_prometheus):
    champion, canary = releases.scorers["152"], releases.scorers["153"]
    prometheus = start_prometheus([champion.url.removeprefix("http://"), canary.url.removeprefix("http://")])
    prometheus.wait_for("up", lambda result: len(result) == 2 and all(s["value"][1] == "1" for s in result))
    info = prometheus.wait_for("scorer_model_info", lambda result: len(result) == 2)
    assert {s["metric"]["build"] for s in info} == {"152", "153"}
    assert all(len(s["metric"]["model_sha256"]) == 64 for s in info)

    def rules_see_both_builds() -> bool:
        rates = values(prometheus.query("build:scorer_requests:rate5m"))
        return set(rates) == {"152", "153"} and all(rate > 0 for rate in rates.values())

    releases.drive(["152", "153"], rules_see_both_builds)
    # One scrape more, so the fallback counters have moved on both sides too.
    releases.drive(
        ["152", "153"], lambda: len(values(prometheus.query("build:scorer_fallbacks:ratio_rate5m"))) == 2
    )

    errors = values(prometheus.query("build:scorer_request_errors:ratio_rate5m"))
    assert errors == {"152": 0.0, "153": 0.0}
    fallbacks = values(prometheus.query("build:scorer_fallbacks:ratio_rate5m"))
    assert fallbacks["152"] == 0.0 and fallbacks["153"] > 0.5  # 153 knows 6 of the 60 users
    p99 = values(prometheus.query("build:scorer_request_duration_seconds:p99_5m"))
    assert set(p99) == {"152", "153"} and all(0 < seconds < 1 for seconds in p99.values())

    groups = prometheus.client.get("/api/v1/rules").json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 18
    assert {s["metric"]["namespace"] for s in prometheus.query("build:scorer_requests:rate5m")} == {"dev"}
    assert all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]


def test_canary_analysis_reads_prometheus_and_rolls_back_the_canary_that_does_not_know_the_users(
    releases, start_prometheus
):
    champion, canary = releases.scorers["152"], releases.scorers["153"]
    prometheus = start_prometheus([champion.url.removeprefix("http://"), canary.url.removeprefix("http://")])

    def both_seen() -> bool:
        return len(values(prometheus.query("build:scorer_fallbacks:ratio_rate5m"))) == 2

    releases.drive(["152", "153"], both_seen)
    command = [
        sys.executable,
        "-m",
        "monitoring.canary",
        "--prometheus",
        prometheus.url,
        "--champion",
        "152",
        "--canary",
        "153",
        "--window",
        "5m",
        "--min-requests",
        "5",
        "--stack",
        "dev",
        "--namespace",
    ]
    # prod's releases are not in this Prometheus: nothing to judge there.
    elsewhere = subprocess.run([*command, "prod"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert elsewhere.returncode == 3 and json.loads(elsewhere.stdout)["canary"]["requests"] == 0
    result = subprocess.run([*command, "dev"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 4, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["decision"] == "rollback" and any("fallback share" in reason for reason in doc["reasons"])
    assert doc["canary"]["requests"] >= 5 and doc["champion"]["fallback_ratio"] == 0
    assert doc["command"] == """pulumi up --yes --skip-preview --stack dev --config 'traffic={"152":100}'"""
    assert "to apply it: " + doc["command"] in result.stderr
