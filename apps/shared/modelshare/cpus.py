"""How many CPUs this process is given: the cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`
over `cpu.cfs_period_us`) of its own cgroup and every ancestor, else the CPUs it may run on.

Kubernetes turns a container's CPU limit into that quota; `os.cpu_count()` would report every
core of the node instead, and a scorer starting one worker (or a trainer one BLAS thread) per
node core under a one-core limit only thrashes. The scorer's default `WORKERS` and the trainer's
default `TRAIN_THREADS` are `whole()`: the quota rounded down, at least 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def _chain(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder under its mount and every ancestor up to the mount. Without a cgroup
    namespace /proc shows the host's path, which the container's mount lacks: then the mount
    itself is the container's cgroup."""
    folder = mount / path.strip("/")
    if not folder.is_dir():
        return [mount]
    chain = [folder]
    while folder != mount:
        folder = folder.parent
        chain.append(folder)
    return chain


def quota(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the tightest quota on this process's cgroup path; None when none is set."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:  # cgroup v2, one unified hierarchy
            limits += [_v2_quota(folder) for folder in _chain(root, path)]
        elif "cpu" in controllers.split(","):  # cgroup v1: the cpu controller's own mount
            for name in (controllers, "cpu", "cpu,cpuacct"):
                if (root / name).is_dir():
                    limits += [_v1_quota(folder) for folder in _chain(root / name, path)]
                    break
    known = [limit for limit in limits if limit is not None]
    return min(known) if known else None


def available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def whole(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs of the quota (at least 1), never more than the CPUs the process may run on."""
    limit = quota(proc_cgroup, root)
    cpus = available()
    return max(1, min(cpus, math.floor(limit))) if limit is not None else cpus
