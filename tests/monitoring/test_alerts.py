"""The alert rules of monitoring/alerts.yml pass promtool's checks and its unit tests
(tests/monitoring/alerts.test.yml: healthy and degraded canaries, a release without traffic)."""

from __future__ import annotations

import subprocess

from tests.monitoring.conftest import ALERTS, REPO, tool

UNIT_TESTS = REPO / "tests" / "monitoring" / "alerts.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=120)


def test_rules_are_valid():
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_unit_tests():
    result = promtool("test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_catches_a_rule_that_does_not_fire(tmp_path):
    """The unit tests can fail: with the error threshold raised out of reach they do."""
    lenient = tmp_path / "alerts.yml"
    lenient.write_text(ALERTS.read_text().replace("ratio_rate5m > 0.01", "ratio_rate5m > 0.5"))
    tests = tmp_path / "alerts.test.yml"
    tests.write_text(UNIT_TESTS.read_text().replace("../../monitoring/alerts.yml", str(lenient)))
    result = promtool("test", "rules", str(tests))
    assert result.returncode != 0
    assert "ScorerHighErrorRate" in result.stdout + result.stderr
