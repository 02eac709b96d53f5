"""What a real node (e2e/node.py) has on this machine, seen from the host: the processes of its pods
(its containerd's shims, named by their `-address` under the node's folder, everything under them,
and anything left in the kubelet's `kubepods` cgroups), the mounts under the node's folder, its
bridge and the pods' cgroup folders. The node's stop ends and removes them, then asks here what is
left; the engine suite's last scenario asks the same after stopping a node with releases running.

The `kubepods` cgroups are the harness's kubelet's: the suite expects no other kubelet on its machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CGROUPS = Path("/sys/fs/cgroup")
PODS_CGROUP = "kubepods"


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    state: str  # Z: a zombie, ended and waiting for its parent to reap it
    cmdline: str
    cgroup: str

    def __str__(self) -> str:
        return f"{self.pid} {self.cmdline[:160]}"


def processes(proc: Path = PROC) -> dict[int, Process]:
    """Every process of the machine (those that end while being read are skipped)."""
    found = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            cgroup = (entry / "cgroup").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: the command name may hold spaces and parentheses
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        found[int(entry.name)] = Process(int(entry.name), int(ppid), state, cmdline, cgroup)
    return found


def node_processes(home: Path, proc: Path = PROC) -> list[Process]:
    """The running processes of a node whose state is under `home`: its containerd shims, everything
    they started (the pods' `pause` and app processes), and whatever else sits in a pod's cgroup (a
    pod process whose shim was killed)."""
    table = processes(proc)
    children: dict[int, list[int]] = {}
    for process in table.values():
        children.setdefault(process.ppid, []).append(process.pid)
    pending = [p.pid for p in table.values() if "containerd-shim" in p.cmdline and str(home) in p.cmdline]
    pending += [p.pid for p in table.values() if f"/{PODS_CGROUP}" in p.cgroup]
    found: set[int] = set()
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending += children.get(pid, [])
    return sorted((table[pid] for pid in found if table[pid].state != "Z"), key=lambda p: p.pid)


def mounts_under(home: Path, proc: Path = PROC) -> list[str]:
    """Mount points under `home`, deepest first (the order they unmount in)."""
    points = [line.split()[4] for line in (proc / "self" / "mountinfo").read_text().splitlines()]
    return sorted((p for p in points if p.startswith(f"{home}/")), key=len, reverse=True)


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def pod_cgroups(root: Path = CGROUPS) -> list[str]:
    """The pods' cgroup folders left, deepest first, in every controller."""
    folders = []
    for controller in root.iterdir() if root.is_dir() else []:
        pods = controller / PODS_CGROUP
        if pods.is_dir():
            folders += [folder for folder, _dirs, _files in os.walk(pods)]
    return sorted(folders, key=len, reverse=True)


def kill(found: list[Process], grace: float = 10) -> list[Process]:
    """SIGKILL each process, then wait up to `grace` seconds for them to end; returns those still
    running (a zombie has ended)."""
    for process in found:
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while True:
        table = processes()
        # the same pid with the same command line: pids are reused, but not within seconds
        running = [p for p in found if p.pid in table and table[p.pid].cmdline == p.cmdline]
        running = [p for p in running if table[p.pid].state != "Z"]
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.2)


def leftovers(home: Path, bridge: str) -> dict[str, list[str]]:
    """What of a stopped node is still on this machine, by kind (empty: nothing)."""
    left = {
        "processes": [str(p) for p in node_processes(home)],
        "mounts": mounts_under(home),
        "bridge": [bridge] if link_exists(bridge) else [],
        "cgroups": pod_cgroups(),
    }
    return {kind: items for kind, items in left.items() if items}
