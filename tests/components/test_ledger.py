"""The ledger component: a new record has everything to re-declare its release, and an earlier release
is carried forward verbatim."""

import copy
import json

import pytest

from components.plan import LedgerError, normalize
from local.render import render
from tests.components.conftest import GIT_SHA


def test_the_new_record_has_everything_to_redeclare_the_release(local_first):
    rec = local_first.outputs["releases"]["153"]
    assert {
        "build",
        "name",
        "sequence",
        "createdAt",
        "gitSha",
        "modelFolder",
        "images",
        "service",
        "objects",
    } <= set(rec)
    assert rec["sequence"] == 1 and rec["gitSha"] == GIT_SHA and rec["modelFolder"] == "/mnt/models/153"
    assert rec["images"] == {app: f"mlpipeline/{app}:153" for app in ("trainer", "waiter", "scorer")}
    assert rec["service"]["address"] == "score-153.mlpipeline-local.svc.cluster.local"
    json.dumps(rec)  # plain JSON: it travels through the stack's outputs


def test_records_of_kept_releases_are_exported_unchanged(local_first, local_second):
    first = local_first.outputs["releases"]["153"]
    assert normalize(local_second.outputs["releases"]["153"]) == normalize(first)
    assert local_second.outputs["releases"]["154"]["sequence"] == 2
    assert local_second.outputs["liveBuilds"] == ["153", "154"]


def test_a_tampered_previous_ledger_is_not_silently_used(local_first):
    previous = copy.deepcopy(local_first.outputs["releases"])
    del previous["153"]["objects"]["deployment"]["spec"]
    with pytest.raises(LedgerError, match=r"release 153: objects\.deployment\.spec is missing"):
        render("local", {"build": "154", "gitSha": GIT_SHA}, previous_releases=previous)
