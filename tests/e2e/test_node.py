"""The real node of the engine suite: when it can run, and under which names the pods find their images."""

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
