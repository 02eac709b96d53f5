"""What the real engine costs per kept release: `pulumi up` and `pulumi preview` of build N+1 beside
1 and beside 10 live releases, against the mocked evaluation of the same program.

The e2e toolchain and cluster (e2e/toolchain, e2e/cluster.py: etcd, kube-apiserver, controllers,
a kwok node) run a stack like the e2e suite's; builds 1..11 are deployed in turn with keepReleases
high enough that none retires. Timed: `pulumi preview` and `pulumi up` of build 2 (1 kept release)
and build 11 (10 kept). Baseline: bench.pulumi_program's mocked run at the same ledger sizes, in the
same process. Needs root, like `make e2e`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from bench import pulumi_program
from e2e import toolchain
from e2e.cluster import Cluster
from e2e.kube import prepare_namespace
from e2e.pulumi_cli import HOME, Pulumi
from e2e.stack import STACK, STACK_CONFIG
from local.render import render

KEPT = (1, 10)


def mocked_seconds(kept: int) -> float:
    """The mocked program run deploying a new build beside `kept` releases (median of 3)."""
    template = render("local", {"build": pulumi_program.build_id(1), "gitSha": "bench"}).outputs["releases"][
        pulumi_program.build_id(1)
    ]
    previous = pulumi_program.ledger_of(kept, template)
    pulumi_program.timed({}, pulumi_program.build_id(999))  # warm-up
    runs = sorted(pulumi_program.timed(previous, pulumi_program.build_id(kept + 1)) for _ in range(3))
    return runs[1]


def main() -> str:
    facts = toolchain.ensure()
    cache = Path(facts["cache"])
    cluster = Cluster(cache / "bin", crds=cache / "crds" / "gateway-api", stages=cache / "kwok-stages.yaml")
    timings: dict[int, dict[str, float]] = {}
    shutil.rmtree(HOME, ignore_errors=True)  # a fresh file backend: no stack left by an e2e run
    with cluster:
        pulumi = Pulumi(cluster.bin, cluster.kubeconfig, STACK)
        pulumi.prepare()
        prepare_namespace(cluster)
        pulumi.new_stack(STACK, {**STACK_CONFIG, "mlpipeline:keepReleases": str(max(KEPT) + 2)})
        for build in range(1, max(KEPT) + 2):
            live_before = build - 1
            if live_before in KEPT:
                started = time.monotonic()
                pulumi("preview", "--config", f"mlpipeline:build={build}")
                preview = time.monotonic() - started
            pulumi.up(f"mlpipeline:build={build}")
            if live_before in KEPT:
                timings[live_before] = {"preview": preview, "up": pulumi.seconds()}
        outputs = pulumi.outputs()
        assert len(outputs["releases"]) == max(KEPT) + 1, sorted(outputs["releases"])
        pulumi("destroy", "--yes", "--skip-preview", timeout=900)
    mocked = {kept: mocked_seconds(kept) for kept in KEPT}
    low, high = KEPT
    per_release_up = (timings[high]["up"] - timings[low]["up"]) / (high - low)
    per_release_preview = (timings[high]["preview"] - timings[low]["preview"]) / (high - low)
    per_release_mock = (mocked[high] - mocked[low]) / (high - low)
    rows = [
        "| kept releases | `pulumi preview` (s) | `pulumi up` (s) | mocked program (s) | up ÷ mocked |",
        "|---:|---:|---:|---:|---:|",
    ]
    for kept in KEPT:
        rows.append(
            f"| {kept} | {timings[kept]['preview']:.1f} | {timings[kept]['up']:.1f} | "
            f"{mocked[kept]:.2f} | {timings[kept]['up'] / mocked[kept]:.0f}× |"
        )
    print(json.dumps({"timings": timings, "mocked": mocked}, indent=2))
    return "\n".join(
        [
            "## Engine: `pulumi up` of build N+1 against a real API server",
            "",
            "The e2e toolchain's Pulumi CLI and Kubernetes provider against etcd + kube-apiserver +",
            "controllers and a kwok node on 127.0.0.1 (pods Ready and Jobs complete at once: this is the",
            "engine's and the API server's cost, not training). The e2e stack (gateway router,",
            "images=prebuilt) deploys build N+1 beside N kept releases. Baseline: the mocked evaluation of",
            "the same program (bench pulumi_program's method) at the same ledger size, in the same run.",
            "",
            *rows,
            "",
            f"Per extra kept release: `pulumi up` +{1000 * per_release_up:.0f} ms, `pulumi preview` "
            f"+{1000 * per_release_preview:.0f} ms, the mocked program +{1000 * per_release_mock:.0f} ms.",
        ]
    )
