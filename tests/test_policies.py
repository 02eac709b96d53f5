"""checkov's Kubernetes policies on every object the dev, prod and local stacks render (under
mocks, each with a kept release beside the new one; local once more with the feedback key's
Secret and a release mounting it): 0 failed checks, and every check skipped in
an object is listed, with its reason, in components/README.md."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from local.render import render
from tests.components.conftest import GIT_SHA

ROOT = Path(__file__).resolve().parent.parent
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
DEV = "organization/mlpipeline/dev"
SKIP = re.compile(r"^checkov\.io/skip\d+$")


def as_stored(value):
    """The object as the API server stores it: the mocks hand every number over as a float (the
    engine's protobuf), Kubernetes keeps integer fields as integers."""
    if isinstance(value, dict):
        return {key: as_stored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_stored(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def stacks() -> dict[str, list[dict]]:
    """Every Kubernetes object of each stack's second update: a new release beside a kept one."""
    dev_first = render("dev", {"build": "152", "gitSha": GIT_SHA})
    dev = render("dev", {"build": "153", "gitSha": GIT_SHA}, previous_outputs=dev_first.outputs)
    prod_first = render("prod", {"build": "152", "gitSha": GIT_SHA}, other_stacks={DEV: dev.outputs})
    prod = render(
        "prod",
        {"build": "153", "gitSha": GIT_SHA},
        previous_outputs=prod_first.outputs,
        other_stacks={DEV: dev.outputs},
    )
    local_first = render("local", {"build": "1", "gitSha": GIT_SHA})
    local = render("local", {"build": "2", "gitSha": GIT_SHA}, previous_outputs=local_first.outputs)
    # The feedback key turned on: its Secret, and a release mounting it beside one without.
    keyed = render(
        "local",
        {"build": "3", "gitSha": GIT_SHA, "feedbackKey": "feedback-key-for-policy-tests"},
        previous_outputs=local.outputs,
    )
    return {
        name: [as_stored(r.public_inputs) for r in rendering.resources if r.is_kubernetes]
        for name, rendering in {"dev": dev, "prod": prod, "local": local, "local-keyed": keyed}.items()
    }


@pytest.fixture(scope="module")
def rendered():
    return stacks()


@pytest.fixture(scope="module")
def checkov_report(rendered, tmp_path_factory):
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: `make setup` installs it (requirements-checkov.txt)")
    folder = tmp_path_factory.mktemp("manifests")
    for stack, objects in rendered.items():
        for i, obj in enumerate(objects):
            name = f"{stack}-{i:03d}-{obj['kind']}-{obj['metadata']['name']}.yaml"
            (folder / name).write_text(yaml.safe_dump(obj, sort_keys=False))
    run = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(folder),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(run.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_finds_no_failed_check_on_any_stack(checkov_report):
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['file_path']} {c['resource']}"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    assert summary["passed"] > 100


def test_every_skip_is_in_the_object_with_its_reason_and_in_the_readme(rendered, checkov_report):
    readme = (ROOT / "components" / "README.md").read_text()
    skips = set()
    for objects in rendered.values():
        for obj in objects:
            for key, value in (obj["metadata"].get("annotations") or {}).items():
                if SKIP.match(key):
                    check, _, reason = value.partition("=")
                    assert reason.strip(), (
                        f"{obj['kind']} {obj['metadata']['name']}: {check} skipped without a reason"
                    )
                    skips.add(check)
    for check in skips:
        assert f"`{check}`" in readme, f"{check} is skipped but not listed in components/README.md"
    skipped = {c["check_id"] for c in checkov_report["results"]["skipped_checks"]}
    assert skipped == skips
