"""The real node of the engine suite: when it can run, under which names the pods find their images, and
that its stop says what it could not end or remove instead of passing over it."""

import subprocess

import pytest

from e2e import node


@pytest.mark.parametrize(
    "tag, name",
    [
        ("mlpipeline/trainer:7", "docker.io/mlpipeline/trainer:7"),
        ("python:3.11.11-slim-bookworm", "docker.io/library/python:3.11.11-slim-bookworm"),
        ("e2e.local/pause:1", "e2e.local/pause:1"),
        ("localhost:5001/mlpipeline/scorer:3", "localhost:5001/mlpipeline/scorer:3"),
    ],
)
def test_an_image_is_tagged_in_the_node_under_the_name_the_kubelet_asks_for(tag, name):
    """The pods say mlpipeline/<app>:<build>; containerd's CRI looks that up fully qualified."""
    assert node.normalized(tag) == name


def test_without_root_the_suite_is_told_why_there_is_no_kubelet(tmp_path, monkeypatch):
    monkeypatch.setattr(node.os, "geteuid", lambda: 1000)
    assert node.unavailable(tmp_path) == "a kubelet needs root"


def test_a_missing_tool_or_binary_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(node.os, "geteuid", lambda: 0)
    monkeypatch.setattr(node.shutil, "which", lambda tool: None if tool in ("runc", "gcc") else tool)
    assert node.unavailable(tmp_path) == "not installed: runc, gcc"
    monkeypatch.setattr(node.shutil, "which", lambda tool: tool)
    monkeypatch.setattr(node, "CNI_BIN", tmp_path / "cni")
    assert "no CNI bridge plugin" in node.unavailable(tmp_path)
    (tmp_path / "cni").mkdir()
    (tmp_path / "cni" / "bridge").write_text("")
    assert node.unavailable(tmp_path / "bin") == f"no kubelet in {tmp_path / 'bin'}"


class FakeCtr:
    """The node's `ctr` calls, answering from a script; a failing call raises as _run does."""

    def __init__(self, failing: str = "", reason: str = "broke"):
        self.calls: list[tuple[str, ...]] = []
        self.failing, self.reason = failing, reason

    def __call__(self, *args: str, timeout: float = 120, stdin=None) -> str:
        self.calls.append(args)
        if self.failing and " ".join(args).startswith(self.failing):
            raise node.NodeError(f"`ctr {' '.join(args)}` exited 1: ctr: {self.failing} {self.reason}")
        return {"tasks ls -q": "abc\ndef\n", "containers ls -q": "abc\ndef\n"}.get(" ".join(args), "")


def test_removing_the_containers_reports_what_failed_instead_of_swallowing_it(tmp_path, monkeypatch):
    real = node.Node(tmp_path / "bin", home=tmp_path / "node")
    ctr = FakeCtr(failing="tasks rm --force def")
    monkeypatch.setattr(real, "_ctr", ctr)
    failed = real._remove_containers()
    assert failed == [
        "removing task def failed: `ctr tasks rm --force def` exited 1: ctr: tasks rm --force def broke"
    ]
    # the other task and the containers were still removed
    assert ("tasks", "rm", "--force", "abc") in ctr.calls and ("containers", "rm", "abc", "def") in ctr.calls

    monkeypatch.setattr(real, "_ctr", FakeCtr(failing="tasks ls"))
    assert real._remove_containers() == [
        "listing the node's tasks failed: `ctr tasks ls -q` exited 1: ctr: tasks ls broke"
    ]


def test_a_task_that_exited_between_the_listing_and_its_removal_is_not_a_failure(tmp_path, monkeypatch):
    # What containerd says when a pod's task ended on its own after `tasks ls` (seen at every stop).
    real = node.Node(tmp_path / "bin", home=tmp_path / "node")
    reason = "failed to delete task: cannot delete a deleted process: not found"
    monkeypatch.setattr(real, "_ctr", FakeCtr(failing="tasks rm --force def", reason=reason))
    assert real._remove_containers() == []


def stoppable_node(tmp_path, monkeypatch, left: dict) -> node.Node:
    """A node whose containerd answers through FakeCtr and whose host shows `left` after the stop."""
    real = node.Node(tmp_path / "bin", home=tmp_path / "node")
    for folder in ("containerd", "kubelet", "cni", "logs"):
        (real.home / folder).mkdir(parents=True)
    containerd = subprocess.Popen(["sleep", "60"], start_new_session=True)
    real.processes = [("containerd", containerd)]
    monkeypatch.setattr(real, "_ctr", FakeCtr(failing="containers rm"))
    monkeypatch.setattr(node.host, "node_processes", lambda home: [])
    monkeypatch.setattr(node.host, "kill", lambda found, grace=10: [])
    monkeypatch.setattr(real, "_clean", lambda: [])
    monkeypatch.setattr(node.host, "leftovers", lambda home, bridge: left)
    return real


def test_a_stop_that_leaves_something_says_what_and_keeps_mounted_folders(tmp_path, monkeypatch):
    left = {"processes": ["4242 /pause"], "mounts": [f"{tmp_path}/node/containerd/state/netns/cni-1"]}
    real = stoppable_node(tmp_path, monkeypatch, left)
    with pytest.raises(node.NodeError) as raised:
        real.stop(grace=5)
    message = str(raised.value)
    assert "the node did not stop cleanly" in message
    assert "4242 /pause" in message and "cni-1" in message
    assert "removing the node's containers failed" in message  # the step that failed, too
    # a folder with a mount under it is not deleted: it would delete the mounted files
    assert (real.home / "containerd").is_dir()
    assert real.processes == []


def test_a_clean_stop_removes_the_folders_and_tells_what_it_recovered_from(tmp_path, monkeypatch, capsys):
    real = stoppable_node(tmp_path, monkeypatch, left={})
    real.stop(grace=5)
    assert not (real.home / "containerd").exists() and (real.home / "logs").is_dir()
    assert real.stop_notes == [
        "removing the node's containers failed: `ctr containers rm abc def` exited 1: "
        "ctr: containers rm broke"
    ]
    assert "e2e: node stop: removing the node's containers failed" in capsys.readouterr().out
