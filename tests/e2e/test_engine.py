"""Whatever happened in the engine suite, every cluster it started is stopped, and a stop that leaves
something behind fails the run (the coordinator's next `make e2e` would otherwise meet it)."""

import ast
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from e2e import engine
from e2e.cluster import Cluster
from e2e.node import NodeError
from e2e.report import Report


class BrokenNode:
    name = "e2e-node-0"

    def stop(self, grace: float = 10) -> None:
        raise NodeError("the node did not stop cleanly, left on this machine: {'bridge': ['mlpe2e0']}")


def test_the_control_plane_ends_even_when_the_node_stop_fails(tmp_path):
    cluster = Cluster(tmp_path / "bin", home=tmp_path / "cluster", node=BrokenNode())
    control_plane = subprocess.Popen(["sleep", "60"], start_new_session=True)
    cluster.processes = [("kube-apiserver", control_plane)]
    with pytest.raises(NodeError, match="mlpe2e0"):
        cluster.stop(grace=5)
    assert control_plane.poll() is not None
    assert cluster.processes == []


def test_a_stop_that_fails_is_a_failed_scenario_and_the_other_clusters_still_stop(tmp_path):
    report = Report(tmp_path / "report.json")
    stopped = []

    class Stoppable:
        def __init__(self, name: str, error: Exception | None = None):
            self.name, self.error = name, error

        def stop(self) -> None:
            stopped.append(self.name)
            if self.error:
                raise self.error

    started = [Stoppable("kwok"), Stoppable("kubelet", NodeError("left: 4242 /pause")), Stoppable("registry")]
    engine.stop_all(report, started)

    assert stopped == ["registry", "kubelet", "kwok"]  # newest first, each whatever the others did
    written = json.loads((tmp_path / "report.json").read_text())["scenarios"]
    assert [(s["name"], s["pass"]) for s in written] == [("cluster stop", False)]
    assert "NodeError: left: 4242 /pause" in written[0]["error"]


def test_clean_stops_add_no_scenario(tmp_path):
    report = Report(tmp_path / "report.json")

    class Clean:
        def stop(self) -> None:
            pass

    engine.stop_all(report, [Clean()])
    assert report.scenarios == []


def test_the_e2e_modules_import_one_another_without_a_cycle():
    """e2e/cluster.py and e2e/node.py used to import each other; a cycle anywhere in e2e/ fails here."""
    package = Path(engine.__file__).parent
    graph = {}
    for path in package.glob("*.py"):
        imported = set()
        for statement in ast.walk(ast.parse(path.read_text())):
            if isinstance(statement, ast.ImportFrom) and (statement.module or "").startswith("e2e"):
                names = [statement.module] + [f"{statement.module}.{a.name}" for a in statement.names]
                imported |= {name.split(".")[1] for name in names if name.count(".") >= 1}
            elif isinstance(statement, ast.Import):
                imported |= {a.name.split(".")[1] for a in statement.names if a.name.startswith("e2e.")}
        graph[path.stem] = imported & {p.stem for p in package.glob("*.py")} - {path.stem}

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        for imported in sorted(graph.get(module, ())):
            found = cycle_from(imported, [*path, module])
            if found:
                return found
        return None

    cycles = [found for module in sorted(graph) if (found := cycle_from(module, []))]
    assert not cycles, f"import cycles in e2e/: {cycles[0]}"
    assert "cluster" not in graph["node"]


def test_sigterm_runs_the_cleanup_like_ctrl_c(tmp_path):
    """A CI timeout's SIGTERM must reach the suites' `finally`, where the clusters stop."""
    marker = tmp_path / "stopped"
    script = (
        "import sys, time\n"
        "from e2e.__main__ import exit_on_sigterm\n"
        "exit_on_sigterm()\n"
        "try:\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        "finally:\n"
        f"    open({str(marker)!r}, 'w').write('stopped')\n"
    )
    root = Path(engine.__file__).resolve().parent.parent
    child = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 128 + signal.SIGTERM
    assert marker.read_text() == "stopped"


def test_kwoks_completed_trainer_pods_carry_a_summary_of_their_build(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "KWOK_STAGES", tmp_path / "stages.yaml")
    cached = tmp_path / "cached.yaml"
    cached.write_text("kind: Stage\nnext:\n  statusTemplate: |\n" + engine.COMPLETED + "\n")
    written = engine.kwok_stages(cached).read_text()
    assert written.count(engine.TRAINER_SUMMARY) == 1
    # the summary line sits between the terminated state's reason and its start time
    reason, summary = written.index("reason: Completed"), written.index("simulated-by-kwok")
    assert reason < summary < written.index("startedAt")


def test_an_unknown_kwok_stage_is_refused_not_silently_left_without_summaries(tmp_path):
    cached = tmp_path / "cached.yaml"
    cached.write_text("kind: Stage\nnext:\n  statusTemplate: |\n      phase: Succeeded\n")
    with pytest.raises(engine.EngineError, match="pod-complete stage"):
        engine.kwok_stages(cached)
