"""A build's id and DNS form travel as one value; its source revision falls back to the checkout's HEAD."""

import subprocess

import pytest

from components import build
from components.build import Build


@pytest.mark.parametrize(
    "given, dns", [("153", "153"), ("20180523.5", "20180523-5"), ("Nightly_7.2", "nightly-7-2")]
)
def test_a_build_carries_its_id_and_its_dns_form(given, dns):
    assert (Build(given).id, Build(given).dns) == (given, dns)
    assert Build(given) == Build(given) and Build(given) != Build(dns + "x")


def test_the_git_fallback_is_the_checkouts_head():
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=build.PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        pytest.skip("the tests run outside a git checkout")
    assert build.git_sha_from_checkout() == head.stdout.strip()


def test_outside_a_checkout_the_revision_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "PROJECT_ROOT", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert build.git_sha_from_checkout() == "unknown"
