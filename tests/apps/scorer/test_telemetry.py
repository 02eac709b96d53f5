"""The scorer's Prometheus series (scorer.telemetry)."""

from scorer.telemetry import Telemetry


def test_recommendation_and_own_feedback_series_exist_before_the_first_request(monkeypatch):
    """Prometheus's increase() cannot count what a series counted before its first scrape: a
    canary's first burst would vanish from its traffic and click counts."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    text = Telemetry("41", feedback_events=("click",)).render().decode()
    one = 'method="GET",route="/recommendations/{user_id}",status="200"'
    for sample in (
        f"scorer_requests_total{{{one}}} 0.0",
        'scorer_requests_total{method="POST",route="/recommendations",status="200"} 0.0',
        f"scorer_request_duration_seconds_count{{{one}}} 0.0",
        'scorer_feedback_total{event="click",served_by="41"} 0.0',
    ):
        assert sample in text.splitlines()
