"""Renderings of the program under mocks, shared by the component tests (each one ~0.3-1 s)."""

import json

import pytest

from local.render import render

GIT_SHA = "0123456789abcdef0123456789abcdef01234567"
AZURITE_KEY = "azurite-account-key-for-tests-3c9f"  # a secret config value: must never leak


GUARDS = "mlpipeline:release_guards:ReleaseGuards"


def release_of(rendering, build_dns):
    return next(
        r
        for r in rendering.resources
        if r.type == "mlpipeline:release:Release" and r.name.endswith(f"-release-{build_dns}")
    )


def descendants_of_release(rendering, build_dns):
    """The release's own objects, declared from its record (not its guards, which follow the stack's
    operating policy: components/release_guards.py)."""
    guards = {r.urn for r in rendering.resources if r.type == GUARDS}
    return [
        r
        for r in rendering.descendants(release_of(rendering, build_dns).urn)
        if r.urn not in guards and r.parent not in guards
    ]


def everything_of_release(rendering, build_dns):
    """Every object under the release: its record's objects and its guards."""
    return rendering.descendants(release_of(rendering, build_dns).urn)


def public_text(rendering, exclude_types=()):
    """Everything a person or a log could see: non-secret inputs and outputs, as one JSON text."""
    parts = [r.public_inputs for r in rendering.resources if r.type not in exclude_types]
    parts.append(rendering.public_outputs())
    return json.dumps(parts, default=str)


@pytest.fixture(scope="session")
def local_first():
    return render("local", {"build": "153", "gitSha": GIT_SHA})


@pytest.fixture(scope="session")
def local_second(local_first):
    return render(
        "local", {"build": "154", "gitSha": GIT_SHA}, previous_releases=local_first.outputs["releases"]
    )


@pytest.fixture(scope="session")
def dev():
    return render("dev", {"build": "20180523.5", "gitSha": GIT_SHA})


@pytest.fixture(scope="session")
def azurite():
    """A local stack reading its CSVs from Azurite: blob data source with a secret account key."""
    return render(
        "local",
        {
            "build": "7",
            "gitSha": GIT_SHA,
            "dataSource": "blob",
            "dataClaim": "",
            "blobAccount": "devstoreaccount1",
            "blobKey": AZURITE_KEY,
            "blobEndpoint": "http://azurite.default.svc:10000/devstoreaccount1",
            "dataContainer": "etl",
            "csvFolder": "2018/05/08",
        },
    )
