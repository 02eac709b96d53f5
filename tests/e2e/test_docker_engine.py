"""The e2e harness builds one Python base for all three images: the Dockerfiles must name the same one."""

import pytest

from e2e import docker_engine


def test_every_dockerfile_takes_the_same_python_base_as_a_build_arg():
    assert docker_engine.base_image_name() == "python:3.11.11-slim-bookworm"


def test_a_dockerfile_without_the_build_arg_is_named(tmp_path, monkeypatch):
    for app in docker_engine.APPS:
        (tmp_path / app).mkdir()
        (tmp_path / app / "Dockerfile").write_text("ARG PYTHON_IMAGE=python:3.11-slim\nFROM ${PYTHON_IMAGE}\n")
    (tmp_path / "waiter" / "Dockerfile").write_text("FROM python:3.11-slim\n")
    monkeypatch.setattr(docker_engine.containers, "CONTEXT", tmp_path)
    with pytest.raises(docker_engine.EngineError, match="apps/waiter/Dockerfile has no `ARG PYTHON_IMAGE"):
        docker_engine.base_image_name()
    (tmp_path / "waiter" / "Dockerfile").write_text("ARG PYTHON_IMAGE=python:3.12-slim\nFROM ${PYTHON_IMAGE}\n")
    with pytest.raises(docker_engine.EngineError, match="different Python bases"):
        docker_engine.base_image_name()
