"""What the engine suite reads of the engine's image work: which planned steps only drop images from
the state, what an `up`'s event log says it did to images, and which references are pinned."""

import json
from pathlib import Path

import pytest

from e2e import image_checks
from e2e.kube import EngineError
from e2e.registry import Registry


class FakeRegistry(Registry):
    def __init__(self):
        super().__init__(Path("/nonexistent"))
        self.host = "127.0.0.1:5000"


def step(op: str, **old) -> dict:
    return {"op": op, "urn": "urn:x", "oldState": old}


def test_only_retained_images_and_their_component_may_leave_the_state_unasked():
    assert image_checks.leaves_state_only(step("delete", type=image_checks.IMAGE_TYPE, retainOnDelete=True))
    assert image_checks.leaves_state_only(step("delete", type="mlpipeline:images:Images", custom=False))
    # an image the provider would delete from the registry, or anything but a delete, is a change
    assert not image_checks.leaves_state_only(step("delete", type=image_checks.IMAGE_TYPE))
    updated = step("update", type=image_checks.IMAGE_TYPE, retainOnDelete=True)
    assert not image_checks.leaves_state_only(updated)
    assert not image_checks.leaves_state_only(step("delete", type="kubernetes:apps/v1:Deployment"))


def write_events(path, *events):
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    return path


def event(kind: str, op: str, typ: str, timestamp: int) -> dict:
    return {"timestamp": timestamp, kind: {"metadata": {"op": op, "type": typ, "urn": "urn:x"}}}


def test_an_up_log_gives_the_image_operations_and_their_span(tmp_path):
    log = write_events(
        tmp_path / "events.jsonl",
        {"timestamp": 1, "preludeEvent": {"config": {}}},
        event("resourcePreEvent", "create", image_checks.IMAGE_TYPE, 10),
        event("resourcePreEvent", "create", "kubernetes:batch/v1:Job", 11),
        event("resourcePreEvent", "create", image_checks.IMAGE_TYPE, 12),
        event("resOutputsEvent", "create", image_checks.IMAGE_TYPE, 40),
        event("resOutputsEvent", "create", image_checks.IMAGE_TYPE, 55),
    )
    assert image_checks.image_operations(log) == ["create", "create"]
    assert image_checks.image_seconds(log) == 45.0


def test_an_up_that_touched_no_image_took_no_image_time(tmp_path):
    service = event("resourcePreEvent", "same", "kubernetes:v1:Service", 3)
    log = write_events(tmp_path / "events.jsonl", service)
    assert image_checks.image_operations(log) == []
    assert image_checks.image_seconds(log) == 0.0


@pytest.mark.parametrize(
    "reference",
    [
        "127.0.0.1:5000/mlpipeline/scorer:1",  # a tag
        "mlpipeline/scorer@sha256:ab",  # another registry
        "127.0.0.1:5000/mlpipeline/scorer@md5:ab",
    ],
)
def test_a_reference_not_pinned_in_the_suites_registry_is_named(reference):
    with pytest.raises(EngineError, match="is not 127.0.0.1:5000/<repository>@sha256:<digest>"):
        image_checks.repository_and_digest(reference, FakeRegistry())


def test_a_pinned_reference_splits_into_repository_and_digest():
    reference = "127.0.0.1:5000/mlpipeline/scorer@sha256:ab"
    assert image_checks.repository_and_digest(reference, FakeRegistry()) == (
        "mlpipeline/scorer",
        "sha256:ab",
    )
