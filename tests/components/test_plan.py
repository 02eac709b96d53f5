"""The update plan: which releases stay, retire or come back, and which previous ledgers are refused."""

import pytest

from components import release_spec
from components.build import Build
from components.plan import LedgerError, check_record, normalize, plan_releases
from local.render import render
from tests.components.conftest import GIT_SHA


def record(build, sequence, name=None):
    """A minimal valid record, as a previous run would have exported it."""
    name = name or build.replace(".", "-")
    obj = lambda api, kind: {"apiVersion": api, "kind": kind, "metadata": {"name": f"x-{name}"}, "spec": {}}  # noqa: E731
    return {
        "schema": release_spec.SCHEMA,
        "build": build,
        "name": name,
        "sequence": sequence,
        "createdAt": "2026-01-01T00:00:00Z",
        "gitSha": "abc",
        "modelFolder": f"/mnt/models/{build}",
        "images": {},
        "service": {},
        "objects": {
            "job": obj("batch/v1", "Job"),
            "deployment": obj("apps/v1", "Deployment"),
            "service": obj("v1", "Service"),
        },
    }


def ledger(*builds):
    return {b: record(b, i + 1) for i, b in enumerate(builds)}


def test_first_run_declares_only_the_new_build():
    plan = plan_releases({}, Build("153"), keep=3)
    assert (plan.kept, plan.new_build, plan.next_sequence, plan.retired) == ((), True, 1, ())


def test_retention_retires_exactly_the_oldest():
    plan = plan_releases(ledger("151", "152", "153"), Build("154"), keep=3)
    assert [r["build"] for r in plan.kept] == ["152", "153"]
    assert plan.retired == ("151",) and plan.new_build and plan.next_sequence == 4


def test_order_is_the_order_of_deployment_not_of_build_names():
    previous = {"9": record("9", 1), "10": record("10", 2), "2": record("2", 3)}
    plan = plan_releases(previous, Build("1"), keep=2)
    assert [r["build"] for r in plan.kept] == ["2"] and plan.retired == ("9", "10")


def test_keep_larger_than_the_ledger_keeps_everything():
    plan = plan_releases(ledger(*map(str, range(1, 31))), Build("31"), keep=60)
    assert len(plan.kept) == 30 and plan.retired == ()


def test_keep_one_leaves_only_the_requested_build():
    plan = plan_releases(ledger("1", "2"), Build("3"), keep=1)
    assert plan.kept == () and plan.retired == ("1", "2")


def test_a_build_already_in_the_ledger_is_redeclared_not_new_even_when_oldest():
    plan = plan_releases(ledger("1", "2", "3"), Build("1"), keep=2)
    assert not plan.new_build
    assert [r["build"] for r in plan.kept] == ["1", "3"] and plan.retired == ("2",)


def test_two_builds_with_the_same_dns_name_are_refused():
    with pytest.raises(LedgerError, match="build 1_5 and live release 1.5 share the resource name 1-5"):
        plan_releases(ledger("1.5"), Build("1_5"), keep=3)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("objects"), "release 7: record lacks objects"),
        (lambda r: r.update(schema=99), "release 7: record schema 99"),
        (lambda r: r.update(build="8"), "release 7: record is for build '8'"),
        (lambda r: r.update(sequence=0), "release 7: sequence must be a positive whole number"),
        (lambda r: r["objects"]["job"].update(kind="Pod"), "release 7: objects.job must be a batch/v1 Job"),
    ],
)
def test_a_malformed_previous_record_is_named(mutate, message):
    broken = record("7", 1)
    mutate(broken)
    with pytest.raises(LedgerError, match=message.replace(".", r"\.")):
        check_record("7", broken)


def test_numbers_come_back_as_integers_after_the_output_round_trip():
    assert normalize({"a": [2.0, 2.5, {"b": 80.0}], "c": True}) == {"a": [2, 2.5, {"b": 80}], "c": True}
    assert isinstance(normalize(3.0), int)


def test_previous_output_that_is_not_a_map_fails_the_run():
    with pytest.raises(LedgerError, match="stack output releases is a list"):
        render("local", {"build": "2", "gitSha": GIT_SHA}, previous_releases=["1"])
