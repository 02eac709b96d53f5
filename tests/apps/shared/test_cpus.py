"""modelshare.cpus reads the CPU quota a container is given, as Kubernetes writes it for a CPU
limit: cgroup v2 `cpu.max`, cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelshare import cpus


def cgroup_tree(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    proc_file = tmp_path / "proc-self-cgroup"
    proc_file.write_text(proc)
    root = tmp_path / "sys-fs-cgroup"
    root.mkdir()
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return proc_file, root


@pytest.fixture
def four_cpus(monkeypatch):
    monkeypatch.setattr(cpus, "available", lambda: 4)


@pytest.mark.parametrize(
    "proc, files, quota, whole",
    [
        # cgroup v2 in a cgroup namespace (what a pod sees): the root holds the container's limit
        ("0::/\n", {"cpu.max": "200000 100000\n"}, 2.0, 2),
        ("0::/\n", {"cpu.max": "max 100000\n"}, None, 4),
        ("0::/\n", {"cpu.max": "50000 100000\n"}, 0.5, 1),
        ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5, 1),
        # v2 without a namespace: the own cgroup and its ancestors; the tightest wins
        (
            "0::/kubepods/pod1/c1\n",
            {
                "kubepods/pod1/c1/cpu.max": "max 100000",
                "kubepods/pod1/cpu.max": "300000 100000",
                "cpu.max": "max 100000",
            },
            3.0,
            3,
        ),
        # cgroup v1 (this project's CI machine): cpu,cpuacct mounted together
        (
            "4:memory:/x\n2:cpu,cpuacct:/\n",
            {"cpu,cpuacct/cpu.cfs_quota_us": "100000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            1.0,
            1,
        ),
        (
            "1:cpu:/\n2:cpuacct:/\n",
            {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"},
            None,
            4,
        ),
        # v1, the host's path in /proc but only the container's cgroup mounted (no namespace)
        (
            "3:cpu,cpuacct:/docker/abc\n",
            {"cpu,cpuacct/cpu.cfs_quota_us": "250000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            2.5,
            2,
        ),
        # a quota above the CPUs the process may run on does not add workers
        ("0::/\n", {"cpu.max": "800000 100000\n"}, 8.0, 4),
        # nothing readable: no quota
        ("0::/\n", {}, None, 4),
    ],
)
def test_quota_and_whole_cpus(tmp_path, four_cpus, proc, files, quota, whole):
    proc_file, root = cgroup_tree(tmp_path, proc, files)
    assert cpus.quota(proc_file, root) == quota
    assert cpus.whole(proc_file, root) == whole


def test_no_proc_file_means_no_quota(tmp_path, four_cpus):
    assert cpus.quota(tmp_path / "missing", tmp_path) is None
    assert cpus.whole(tmp_path / "missing", tmp_path) == 4


def test_this_machine(four_cpus):
    """Whatever this machine's cgroups say, the answer is a sane count."""
    limit = cpus.quota()
    assert limit is None or limit > 0
    assert 1 <= cpus.whole() <= 4
