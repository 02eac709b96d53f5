"""The e2e harness builds one Python base for all three images: the Dockerfiles must name the same one."""

import pytest

from e2e import docker_engine


def test_every_dockerfile_takes_the_same_python_base_as_a_build_arg():
    assert docker_engine.base_image_name() == "python:3.11.11-slim-bookworm"


def test_a_dockerfile_without_the_build_arg_is_named(tmp_path, monkeypatch):
    for app in docker_engine.APPS:
        (tmp_path / app).mkdir()
        (tmp_path / app / "Dockerfile").write_text(
            "ARG PYTHON_IMAGE=python:3.11-slim\nFROM ${PYTHON_IMAGE}\n"
        )
    (tmp_path / "waiter" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    monkeypatch.setattr(docker_engine.containers, "CONTEXT", tmp_path)
    with pytest.raises(docker_engine.EngineError, match="apps/waiter/Dockerfile has no `ARG PYTHON_IMAGE"):
        docker_engine.base_image_name()
    (tmp_path / "waiter" / "Dockerfile").write_text(
        "ARG PYTHON_IMAGE=python:3.12-slim\nFROM ${PYTHON_IMAGE}\n"
    )
    with pytest.raises(docker_engine.EngineError, match="different Python bases"):
        docker_engine.base_image_name()


def test_the_overlay_probe_leaves_no_folder_and_no_mount_behind(tmp_path):
    answer = docker_engine.takes_overlay(tmp_path)
    assert isinstance(answer, bool)
    assert list(tmp_path.iterdir()) == []
    assert str(tmp_path) not in open("/proc/mounts").read()


@pytest.mark.parametrize(("overlay", "driver"), [(True, "overlay2"), (False, "vfs")])
def test_a_daemon_started_here_uses_overlay2_only_where_the_data_root_takes_it(
    overlay, driver, tmp_path, monkeypatch
):
    started = []

    class Daemon:
        pid = 4242

        def __init__(self, argv, **_):
            started.append(argv)

        def poll(self):
            return None

    monkeypatch.setattr(docker_engine, "install_missing", lambda needs: None)
    monkeypatch.setattr(docker_engine.os, "geteuid", lambda: 0)
    monkeypatch.setattr(docker_engine, "OUT", tmp_path / "out")
    monkeypatch.setattr(docker_engine, "DATA_ROOT", tmp_path / "docker")
    monkeypatch.setattr(docker_engine, "takes_overlay", lambda where: overlay)
    monkeypatch.setattr(docker_engine.subprocess, "Popen", Daemon)
    answers = iter([False, True])  # none before, the new daemon after
    monkeypatch.setattr(docker_engine.containers, "docker_answers", lambda: next(answers))
    docker_engine.ensure_engine()
    assert started == [["dockerd", "--data-root", str(tmp_path / "docker"), "--storage-driver", driver]]


def test_only_the_packages_whose_tool_is_missing_are_installed(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(docker_engine, "OUT", tmp_path)
    monkeypatch.setattr(docker_engine.os, "geteuid", lambda: 0)
    monkeypatch.setattr(docker_engine, "_run", lambda argv, **_: commands.append(argv))
    (tmp_path / "bridge").write_text("")
    needs = {
        "coreutils": "ls",
        "containernetworking-plugins": str(tmp_path / "bridge"),
        "no-such-package": "no-such-tool",
        "other-plugins": str(tmp_path / "missing"),
    }
    docker_engine.install_missing(needs)
    assert commands[-1][-2:] == ["no-such-package", "other-plugins"]
    commands.clear()
    docker_engine.install_missing({"coreutils": "ls"})
    assert commands == []
