"""Prometheus metrics and the prediction log (scorer.predictionlog), both cheap enough for the
hot path.

With several worker processes, `python -m scorer` sets PROMETHEUS_MULTIPROC_DIR to a fresh
directory before the workers start; every worker then writes its samples there and /metrics,
whichever worker answers it, adds them all up.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from scorer.contract import ROUTE_BATCH, ROUTE_ONE
from scorer.predictionlog import PredictionLog

UNMATCHED = "<unmatched>"  # route label of any path no route knows: fuzzed paths must not add series
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Novelty is a percentile among the training users: about 5 % of typical traffic lies above 0.95.
NOVELTY_BUCKETS = (0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


class Telemetry:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, build: str, log_sample: float = 1.0, feedback_events: tuple[str, ...] = ()):
        self.build = build
        self.log = PredictionLog(build, log_sample)
        self._multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # In multiprocess mode the values live in files, so the metrics need no registry here.
        self._registry = CollectorRegistry()
        registry = None if self._multiprocess else self._registry
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "scorer_requests_total",
            "HTTP requests answered, by route template and status",
            labels,
            registry=registry,
        )
        self.latency = Histogram(
            "scorer_request_duration_seconds",
            "Time to answer an HTTP request, by route template and status",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.fallbacks = Counter(
            "scorer_fallbacks_total",
            "Users answered with the popular items because the model does not know them",
            ["reason"],
            registry=registry,
        ).labels("popular")
        self.predictions = Counter(
            "scorer_predictions_total",
            "Users answered (a batch request counts each of its users)",
            registry=registry,
        )
        self.items_shown = Counter(
            "scorer_items_shown_total",
            "Items returned in the lists answered (a list per user: scorer_predictions_total)",
            registry=registry,
        )
        self.feedback = Counter(
            "scorer_feedback_total",
            "Feedback events counted (a replay once), by the build that served the list and the event",
            ["served_by", "event"],
            registry=registry,
        )
        # This build's series exist from the start (at 0): Prometheus's increase() misses what a
        # series counted before its first scrape.
        for event in feedback_events:
            self.feedback.labels(build, event)
        self.feedback_replays = Counter(
            "scorer_feedback_replays_total",
            "Feedback events not counted because this pod counted them before",
            ["event"],
            registry=registry,
        )
        self.novelty = Histogram(
            "scorer_novelty",
            "Novelty of each known user answered: the share of training users more typical than them",
            buckets=NOVELTY_BUCKETS,
            registry=registry,
        )
        self.model_info = Gauge(
            "scorer_model_info",
            "1 once the model of this build is verified and loaded",
            ["build", "model_sha256"],
            registry=registry,
            multiprocess_mode="max",
        )
        self._series: dict[tuple[str, str, int], tuple] = {}
        # The answered recommendation series exist from the start too: they are the canary's
        # traffic count, and a burst before the first scrape would otherwise not count.
        for method, route in (("GET", ROUTE_ONE), ("POST", ROUTE_BATCH)):
            self._labelled(method, route, 200)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        series = self._series.get((method, route, status)) or self._labelled(method, route, status)
        series[0].inc()
        series[1].observe(seconds)

    def _labelled(self, method: str, route: str, status: int) -> tuple:
        status_label = str(status)
        series = self._series[(method, route, status)] = (
            self.requests.labels(method, route, status_label),
            self.latency.labels(method, route, status_label),
        )
        return series

    def feedback_received(
        self, request_id: str, served_by: str, item: str, event: str, counted: bool
    ) -> None:
        if counted:
            self.feedback.labels(served_by, event).inc()
        else:
            self.feedback_replays.labels(event).inc()
        self.log.feedback(request_id, served_by, item, event, counted)

    def model_loaded(self, model_sha256: str) -> None:
        self.log.model_sha256 = model_sha256
        self.model_info.labels(self.build, model_sha256).set(1)

    def render(self) -> bytes:
        if not self._multiprocess:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)

    def predictions_made(self, recommendations, k: int, seconds: float) -> None:
        """Count the users answered and the fallbacks, and log the answers."""
        fallbacks = 0
        for rec in recommendations:
            if rec.fallback is not None:
                fallbacks += 1
            elif rec.novelty is not None:
                self.novelty.observe(rec.novelty)
        self.predictions.inc(len(recommendations))
        self.items_shown.inc(sum(len(rec.item_ids) for rec in recommendations))
        if fallbacks:
            self.fallbacks.inc(fallbacks)
        self.log.write(recommendations, k, seconds)
