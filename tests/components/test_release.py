"""A Release declares exactly its record's objects, in the order that makes a failed training fail fast."""

import pytest

from components.release import RecordError, check_objects
from tests.components.conftest import descendants_of_release


def test_release_declares_its_records_objects_verbatim(local_first):
    record = local_first.outputs["releases"]["153"]
    declared = {r.kind: r.inputs for r in descendants_of_release(local_first, "153")}
    assert set(declared) == {"Job", "Deployment", "Service"}
    for key, kind in (("job", "Job"), ("deployment", "Deployment"), ("service", "Service")):
        assert declared[kind] == record["objects"][key]


def test_deployment_waits_for_training_and_service_for_the_deployment(local_first):
    objects = {r.kind: r for r in descendants_of_release(local_first, "153")}
    assert objects["Job"].urn in objects["Deployment"].options["dependencies"]
    assert objects["Deployment"].urn in objects["Service"].options["dependencies"]
    claim = next(r for r in local_first.resources if r.kind == "PersistentVolumeClaim")
    assert claim.urn in objects["Job"].options["dependencies"]


def test_release_types_and_names_derive_from_the_ledger(local_first):
    release = next(r for r in local_first.resources if r.type == "mlpipeline:release:Release")
    assert release.name == "ledger-release-153"
    assert {r.name for r in local_first.descendants(release.urn) if r.parent == release.urn} == {
        "ledger-release-153-train",
        "ledger-release-153-score",
        "ledger-release-153-service",
        "guards-153",
    }  # its NetworkPolicies, budget and autoscaler go when the release goes


@pytest.mark.parametrize(
    "objects, message",
    [
        (None, "record has no objects"),
        ({"job": {"apiVersion": "v1", "kind": "Pod"}}, "objects.job must be a batch/v1 Job"),
    ],
)
def test_records_without_the_three_objects_are_refused(objects, message):
    with pytest.raises(RecordError, match=message.replace(".", r"\.")):
        check_objects({"build": "9", "objects": objects})


def test_a_record_whose_name_is_not_its_builds_dns_form_is_refused(local_first):
    record = {**local_first.outputs["releases"]["153"], "name": "154"}
    with pytest.raises(RecordError, match="release 153: name '154' is not the build's DNS form"):
        check_objects(record)


def test_what_others_read_of_a_record_comes_from_the_release_module(local_first, dev):
    from components.release import recorded_data_location

    assert recorded_data_location(local_first.outputs["releases"]["153"]).startswith("pvc://")
    assert recorded_data_location(dev.outputs["releases"]["20180523.5"]).startswith("blob://")
    assert recorded_data_location({"build": "1"}) is None
