"""Prometheus metrics and the one-line-per-prediction log, both cheap enough for the hot path.

With several worker processes, `python -m scorer` sets PROMETHEUS_MULTIPROC_DIR to a fresh
directory before the workers start; every worker then writes its samples there and /metrics,
whichever worker answers it, adds them all up.
"""

from __future__ import annotations

import os
import time

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

UNMATCHED = "<unmatched>"  # route label of any path no route knows: fuzzed paths must not add series
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A write of at most PIPE_BUF bytes to a pipe is atomic: lines of several workers never interleave.
_PIPE_BUF = 4096


class Telemetry:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, build: str):
        self.build = build
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
        self.model_info = Gauge(
            "scorer_model_info",
            "1 once the model of this build is verified and loaded",
            ["build", "model_sha256"],
            registry=registry,
            multiprocess_mode="max",
        )
        self._series: dict[tuple[str, str, int], tuple] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            status_label = str(status)
            series = self._series[key] = (
                self.requests.labels(method, route, status_label),
                self.latency.labels(method, route, status_label),
            )
        series[0].inc()
        series[1].observe(seconds)

    def model_loaded(self, model_sha256: str) -> None:
        self.model_info.labels(self.build, model_sha256).set(1)

    def render(self) -> bytes:
        if not self._multiprocess:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)

    def predictions_made(self, recommendations, k: int, seconds: float) -> None:
        """Count fallbacks and write one JSON line per user to stdout."""
        now = round(time.time(), 3)
        latency_ms = round(seconds * 1000, 3)
        fallbacks = 0
        lines = []
        for rec in recommendations:
            fallbacks += rec.fallback is not None
            lines.append(
                orjson.dumps(
                    {
                        "ts": now,
                        "app": "scorer",
                        "event": "prediction",
                        "build": self.build,
                        "user": rec.user_id,
                        "k": k,
                        "latency_ms": latency_ms,
                        "fallback": rec.fallback,
                    },
                    option=orjson.OPT_APPEND_NEWLINE,
                )
            )
        self.predictions.inc(len(lines))
        if fallbacks:
            self.fallbacks.inc(fallbacks)
        _write_lines(lines)


def _write_lines(lines: list[bytes]) -> None:
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) > _PIPE_BUF:
            _write(b"".join(chunk))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        _write(b"".join(chunk))


def _write(data: bytes) -> None:
    try:
        while data:
            data = data[os.write(1, data) :]
    except OSError:  # a closed or full log pipe must not turn a prediction into an error
        pass
