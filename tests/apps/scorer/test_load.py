"""Sustained load and OpenAPI-driven fuzzing against `python -m scorer`, kept short for `make
test`: bench/load.py runs the same at full length (60 s x 64 connections) for docs/BENCHMARKS.md."""

from __future__ import annotations

from bench import load


def test_64_connections_without_errors_or_memory_growth(factor):
    model, scorer = factor
    run = load.soak(scorer.port, model.path, scorer.process.pid, windows=4, seconds=2.0, concurrency=64)
    windows = run["windows"]
    assert sum(w["requests"] for w in windows) > 1000
    assert [w["errors"] for w in windows] == [0, 0, 0, 0]
    # after the first window (the allocator warms up, ~10 MB), memory stays flat: a leak of 1 KB
    # a request would add several MB a window
    assert windows[-1]["rss_mb"] - windows[1]["rss_mb"] < 4, [w["rss_mb"] for w in windows]
    assert None not in run["probes"]  # every probe answered (their latency under load: bench/load.py)


def test_openapi_fuzzing_finds_nothing(factor):
    _, scorer = factor
    run = load.fuzz(scorer.port, examples=25, seconds_limit=300)
    assert run["returncode"] == 0, run["output"]
    assert run["requests"] > 100 and run["server_errors"] == 0, run["answered"]
    assert scorer.client.get("/readyz").status_code == 200
