"""How long one mocked evaluation of the Pulumi program takes as the ledger grows.

Each `pulumi up` re-declares every kept release from its record, so the program's own time grows
with keepReleases. Measured: the local stack deploying a new build beside 0, 9, 24 and 49 kept
releases (1, 10, 25, 50 live), under the mocks of local/render.py (no engine, no provider).
Baseline: the 1-release run, in the same process. Goal: 50 releases in <= 3 s, growing linearly.
"""

from __future__ import annotations

import json
import statistics
import time

from local.render import render

SIZES = (1, 10, 25, 50)
REPEATS = 3
GOAL_SECONDS_AT_50 = 3.0


def build_id(i: int) -> str:
    return f"b{i:04d}"


def ledger_of(size: int, template: dict) -> dict:
    """`size` valid records, cloned from one real record with the build id swapped."""
    text = json.dumps(template)
    records = {}
    for i in range(1, size + 1):
        record = json.loads(text.replace(build_id(1), build_id(i)))
        record["sequence"] = i
        records[build_id(i)] = record
    return records


def timed(previous: dict, build: str) -> float:
    start = time.perf_counter()
    rendering = render(
        "local", {"build": build, "gitSha": "bench", "keepReleases": 60}, previous_releases=previous
    )
    elapsed = time.perf_counter() - start
    assert len(rendering.outputs["liveBuilds"]) == len(previous) + 1
    return elapsed


def main() -> str:
    template = render("local", {"build": build_id(1), "gitSha": "bench"}).outputs["releases"][build_id(1)]
    timed({}, build_id(999))  # warm-up: imports and first-use caches are not what is measured
    seconds = {}
    for size in SIZES:
        previous = ledger_of(size - 1, template)
        seconds[size] = statistics.median(timed(previous, build_id(size)) for _ in range(REPEATS))
    base = seconds[SIZES[0]]
    slope = (seconds[SIZES[-1]] - seconds[SIZES[1]]) / (SIZES[-1] - SIZES[1])
    rows = [
        "| live releases | median of 3 (s) | × 1-release run | per extra release (ms) |",
        "|---:|---:|---:|---:|",
    ]
    for size in SIZES:
        extra = "" if size == 1 else f"{1000 * (seconds[size] - base) / (size - 1):.0f}"
        rows.append(f"| {size} | {seconds[size]:.2f} | {seconds[size] / base:.1f} | {extra} |")
    verdict = "meets" if seconds[50] <= GOAL_SECONDS_AT_50 else "MISSES"
    predicted = seconds[10] + slope * 15
    return "\n".join(
        [
            "## Pulumi program: one mocked `pulumi up` as the ledger grows",
            "",
            "The local stack deploys a new build beside N-1 kept releases, each re-declared from its record",
            "(local/render.py mocks: no engine, no provider calls). Baseline: the 1-release run, same "
            "process.",
            "",
            *rows,
            "",
            f"50 releases: {seconds[50]:.2f} s, {verdict} the goal of <= {GOAL_SECONDS_AT_50:.0f} s. "
            f"Linearity: the 10->50 slope ({1000 * slope:.0f} ms/release) predicts {predicted:.2f} s at 25, "
            f"measured {seconds[25]:.2f} s.",
        ]
    )
