"""The `engine` suite: the real Pulumi engine runs the program against a real Kubernetes API server.

The toolchain (e2e/toolchain) gives `pulumi`, the Python language host, the Kubernetes provider and
the control plane; e2e/cluster.py starts a cluster on 127.0.0.1 whose node is a real kubelet
(e2e/node.py: containerd runs the pods, so the Job trains on CSVs written to the data claim, the
waiter gates and the scorer serves) or, where a kubelet cannot run, kwok (the report's
`cluster.node` says which, and why not the kubelet). `pulumi` runs in a throwaway project folder
(e2e/pulumi_cli.py), the stack is e2e/stack.py's, and scenarios 1 to 8 (e2e/scenarios.py) assert
what the engine and the API server did. Scenario 9, on a real node, stops it with a release running
and no `destroy` (as after a failed scenario or Ctrl-C) and asserts that nothing of it is left on the
machine (e2e/host.py). Whatever happens, every cluster started here is stopped; a stop that leaves
something behind fails the run.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Protocol

from e2e import docker_engine, host, toolchain
from e2e.buildkit import BUILDER, BuildKit
from e2e.cluster import Cluster, ClusterError
from e2e.kube import EngineError, prepare_namespace, wait_gone
from e2e.node import BRIDGE, Node, install_packages, unavailable
from e2e.pulumi_cli import HOME, Pulumi
from e2e.registry import Registry
from e2e.report import Report
from e2e.scenarios import SUITE, Scenarios
from e2e.stack import NAMESPACE, STACK, STACK_CONFIG, engine_images

# kwok completes Job pods without running them. The program reads a training Job's results from its
# trainer's termination message once the Job completes (components/training_results.py) and fails
# the update without them, so kwok's pod-complete stage writes a summary of the pod's build.
KWOK_STAGES = HOME.parent / "kwok-stages.yaml"
COMPLETED = (
    "            reason: Completed\n"
    "            startedAt: {{ $now | Quote }}\n"
    "      {{ end }}\n"
    "      phase: Succeeded"
)
TRAINER_SUMMARY = (
    '            {{ if eq $item.name "trainer" }}{{ $build := "" }}{{ range $item.env }}'
    '{{ if eq .name "BUILD_NUMBER" }}{{ $build = .value }}{{ end }}{{ end }}'
    'message: {{ printf "{\\"build\\":%q,\\"modelSha256\\":\\"simulated-by-kwok\\"}" $build | Quote }}'
    "{{ end }}\n"
)


def kwok_stages(cached: Path) -> Path:
    """kwok's own stages (from the toolchain), the trainer's completed pods with a summary."""
    text = cached.read_text()
    if text.count(COMPLETED) != 1:
        raise EngineError(f"{cached}: kwok's pod-complete stage is not the one this suite extends")
    head, _, tail = COMPLETED.partition("\n")
    KWOK_STAGES.parent.mkdir(parents=True, exist_ok=True)
    KWOK_STAGES.write_text(text.replace(COMPLETED, f"{head}\n{TRAINER_SUMMARY}{tail}"))
    return KWOK_STAGES


STOP_SCENARIO = "9 a node stopped with a release running, without destroy, leaves no process, mount or bridge"


def run(report: Report) -> None:
    with report.scenario(SUITE, "toolchain"):
        report.facts["toolchain"] = toolchain.ensure()
    if "toolchain" not in report.facts:
        return
    run_on_cluster(report)


def run_on_cluster(report: Report) -> None:
    """Scenarios 1 to 9 on a 127.0.0.1 cluster with a real node; 1 to 6 and 8 with kwok's."""
    folder = Path(report.facts["toolchain"]["cache"])
    started: list[Stoppable] = []  # whatever came up (cluster, registry, BuildKit), stopped whatever happens
    shutil.rmtree(HOME, ignore_errors=True)  # a fresh file backend for this run's stacks
    try:
        with report.scenario(SUITE, "cluster up") as details:
            began = time.monotonic()
            cluster, facts, images = start_cluster(folder, started)
            report.facts["cluster"] = {
                "server": cluster.server,
                "kubeconfig": str(cluster.kubeconfig),
                "start_seconds": round(time.monotonic() - began, 2),
                **facts,
            }
            details.update(facts)
        if "cluster" in report.facts:
            pulumi = Pulumi(folder / "bin", cluster.kubeconfig, STACK)
            config, registry = STACK_CONFIG, None
            if images is not None:  # a real node: the engine builds and pushes the images
                registry, buildkit = images
                pulumi.docker_config = buildkit.docker_config
                config = engine_images(registry.host)
            Scenarios(report, cluster, pulumi, config, registry).run()
            if cluster.node is not None:
                stop_with_a_release_running(report, cluster, pulumi)
    finally:
        stop_all(report, started)


def stop_with_a_release_running(report: Report, cluster: Cluster, pulumi: Pulumi) -> None:
    """Scenario 9: releases running without destroy (those scenario 10 left, or else build 1 up
    again after scenario 8's destroy); then the cluster stopped as every run ends, and the machine
    inspected from the host."""
    assert cluster.node is not None
    home = cluster.node.home
    with report.scenario(SUITE, STOP_SCENARIO) as details:
        if not any("-m scorer" in str(process) for process in host.node_processes(home)):
            # scenario 8's destroy deleted the namespace, and the user's data claim with it
            wait_gone(cluster, f"/api/v1/namespaces/{NAMESPACE}")
            prepare_namespace(cluster)
            done = pulumi.up("mlpipeline:build=1", check=False)
            details["up_exit"], details["up_seconds"] = done.returncode, pulumi.seconds()
        running = [str(process) for process in host.node_processes(home)]
        details["running_before_stop"] = running
        kinds = {
            kind: sum(marker in line for line in running)
            for kind, marker in (("shim", "containerd-shim"), ("pause", "/pause"), ("scorer", "-m scorer"))
        }
        details["running_by_kind"] = kinds
        if not all(kinds.values()):
            raise EngineError(f"no release running to stop: {kinds}: {running}")
        began = time.monotonic()
        try:
            cluster.stop()
        finally:
            details["stop_seconds"] = round(time.monotonic() - began, 2)
            details["left"] = host.leftovers(home, BRIDGE)
            details["stop_notes"] = cluster.node.stop_notes
        if details["left"]:
            raise EngineError(f"left on this machine after the stop: {details['left']}")


class Stoppable(Protocol):
    def stop(self) -> None: ...


def stop_all(report: Report, started: list[Stoppable]) -> None:
    """Stop everything started, newest first; one whose stop fails is a failed scenario of its own,
    `cluster stop`."""
    failures = []
    for thing in reversed(started):
        try:
            thing.stop()
        except Exception as error:  # noqa: BLE001 - everything is stopped, then the failures reported
            failures.append(f"{type(thing).__name__}: {type(error).__name__}: {error}")
    if failures:
        with report.scenario(SUITE, "cluster stop"):
            raise ClusterError("; ".join(failures))


def start_image_path(bin_dir: Path, node: Node, started: list[Stoppable]) -> tuple[Registry, BuildKit, dict]:
    """The registry the engine pushes the images to (and Docker Hub's mirror for the Dockerfiles'
    base, built here from Debian packages), the BuildKit it builds them on, and the node pulling from
    that registry over plain HTTP."""
    began = time.monotonic()
    base = docker_engine.ensure_base_image()
    registry = Registry(bin_dir / "registry")
    started.append(registry)
    registry.start()
    mirrored = registry.mirror_base(base)
    buildkit = BuildKit(bin_dir, registry.host)
    started.append(buildkit)
    buildkit.start()
    node.pull_over_http(registry.host)
    return (
        registry,
        buildkit,
        {
            "registry": registry.host,
            "base_mirrored_as": mirrored,
            "builder": f"{BUILDER} (remote driver, buildkitd on {buildkit.socket})",
            "seconds": round(time.monotonic() - began, 2),
        },
    )


def start_cluster(
    folder: Path, started: list[Stoppable]
) -> tuple[Cluster, dict, tuple[Registry, BuildKit] | None]:
    """A cluster whose node is a kubelet pulling the images the engine builds from the suite's
    registry (returned with the BuildKit), or kwok's where the kubelet cannot run or start here (its
    pods run nothing, and the stack names prebuilt images: no image path); the facts say which node
    and why not the kubelet."""

    def cluster(node: Node | None) -> Cluster:
        made = Cluster(
            folder / "bin",
            crds=folder / "crds" / "gateway-api",
            stages=kwok_stages(folder / "kwok-stages.yaml"),
            node=node,
        )
        started.append(made)
        return made

    reason = install_packages() or unavailable(folder / "bin")
    if reason is None:
        node = Node(folder / "bin")
        real = cluster(node)
        try:
            # the node builds its pause image with Docker; the base image comes from Docker too
            docker_engine.ensure_engine()
            began = time.monotonic()
            real.start()
            facts = {"node": "kubelet", "node_start_seconds": round(time.monotonic() - began, 2)}
            registry, buildkit, facts["images"] = start_image_path(folder / "bin", node, started)
            return real, facts, (registry, buildkit)
        except Exception as error:  # noqa: BLE001 - reported, and the suite runs on kwok instead
            reason = f"the kubelet node did not come up: {type(error).__name__}: {str(error)[-1500:]}"
            for thing in reversed(started):
                try:
                    thing.stop()
                except Exception as stop_error:  # noqa: BLE001 - stopped again, and reported, at the end
                    failed = f"{type(stop_error).__name__}: {str(stop_error)[-1500:]}"
                    reason += f"; stopping {type(thing).__name__}: {failed}"
    kwok = cluster(None)
    kwok.start()
    return kwok, {"node": "kwok", "kubelet_not_run": reason}, None
