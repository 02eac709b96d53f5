"""What a stopped node left on the machine is found from the host: its shims' process trees, pod
processes in the kubelet's cgroups, mounts under its folder, pod cgroup folders; and it can be ended."""

import subprocess
import sys
import time
from pathlib import Path

from e2e import host


def fake_process(
    proc: Path, pid: int, ppid: int, cmdline: str, cgroup: str = "4:memory:/\n", state: str = "S"
):
    folder = proc / str(pid)
    folder.mkdir(parents=True)
    (folder / "stat").write_text(f"{pid} (a (strange) name) {state} {ppid} 1 1 0 -1\n")
    (folder / "cmdline").write_bytes(cmdline.replace(" ", "\0").encode() + b"\0")
    (folder / "cgroup").write_text(cgroup)


def test_the_node_processes_are_its_shims_their_children_and_whatever_is_in_a_pod_cgroup(tmp_path):
    proc, home = tmp_path / "proc", tmp_path / "node"
    shim = f"/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id abc -address {home}/containerd.sock"
    fake_process(proc, 100, 1, shim)
    fake_process(proc, 101, 100, "/pause", "4:memory:/kubepods/besteffort/pod1/abc\n")
    fake_process(proc, 102, 100, "python -m scorer", "4:memory:/kubepods/besteffort/pod1/def\n")
    fake_process(proc, 103, 102, "python -c from multiprocessing.spawn import spawn_main")
    fake_process(proc, 104, 102, "python -m scorer", state="Z")  # ended, waiting to be reaped
    # a pod process whose shim was killed: reparented to init, still in its pod's cgroup
    fake_process(proc, 200, 1, "python -m scorer", "4:memory:/kubepods/burstable/pod2/ghi\n")
    # the same app run by someone else on this machine, and another containerd's shim: not the node's
    fake_process(proc, 300, 1, "python -m scorer")
    fake_process(
        proc, 301, 1, "/usr/bin/containerd-shim-runc-v2 -namespace moby -address /run/containerd.sock"
    )
    (proc / "self").mkdir()

    found = host.node_processes(home, proc)

    assert [p.pid for p in found] == [100, 101, 102, 103, 200]
    assert str(found[1]) == "101 /pause"


def test_mounts_under_the_node_folder_are_listed_deepest_first(tmp_path):
    proc, home = tmp_path / "proc", Path("/work/x/.e2e/node")
    rootfs = f"{home}/containerd/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(
        "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
        f"2 1 0:5 / {rootfs} rw - overlay o rw\n"
        f"3 1 0:6 / {home}/containerd/state/netns/cni-1 rw - nsfs nsfs rw\n"
        "4 1 0:7 / /work/x/.e2e/node-other/y rw - tmpfs t rw\n"
    )
    assert host.mounts_under(home, proc) == [rootfs, f"{home}/containerd/state/netns/cni-1"]


def test_pod_cgroups_are_found_in_every_controller_deepest_first(tmp_path):
    (tmp_path / "memory" / "kubepods" / "besteffort" / "pod1").mkdir(parents=True)
    (tmp_path / "cpu" / "kubepods").mkdir(parents=True)
    (tmp_path / "pids" / "user.slice").mkdir(parents=True)
    found = host.pod_cgroups(tmp_path)
    assert found[0] == str(tmp_path / "memory" / "kubepods" / "besteffort" / "pod1")
    assert sorted(found) == sorted(
        [
            str(tmp_path / "cpu" / "kubepods"),
            str(tmp_path / "memory" / "kubepods"),
            str(tmp_path / "memory" / "kubepods" / "besteffort"),
            str(tmp_path / "memory" / "kubepods" / "besteffort" / "pod1"),
        ]
    )


def test_a_shim_left_running_is_found_with_its_children_and_killed(tmp_path):
    """A real process tree standing in for a shim and its pod (the cmdline names the node's folder)."""
    script = "import subprocess, sys, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    shim = subprocess.Popen(
        [sys.executable, "-c", script, "containerd-shim", "-address", f"{tmp_path}/containerd.sock"]
    )
    try:
        deadline = time.monotonic() + 10
        while len(found := host.node_processes(tmp_path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [p.pid for p in found][:1] == [shim.pid]
        assert any(p.cmdline == "sleep 60" for p in found)

        assert host.kill(found, grace=10) == []
        shim.wait(timeout=10)
        assert host.node_processes(tmp_path) == []
    finally:
        shim.kill()
        shim.wait()
