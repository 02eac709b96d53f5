"""Scenario 5 of the engine suite: a promoting stack (prod's role, its own namespace on the same
cluster) takes the e2e stack's releases through a real StackReference on the file backend.

    5   it refuses a build the source has not got (and on kwok an unpinned one) before any change
    5b  (real node) promotion succeeds: no training, a promote Job; its pods run the source record's
        digests, its model files have the source folder's sha256, it answers as the source does;
        a second `up` changes nothing
    5c  (real node) promotion refuses a source file with one damaged byte, then a gate above the
        build, each within REFUSAL_SECONDS naming the file or the gate, its live release untouched;
        after both causes are gone, `up --replace` of the refused copy Job promotes the build
    8b  (after the source's destroy) the promoted release still serves; the promoting stack's
        destroy leaves nothing

The promoting stack mounts the source's share read-only through the volume the source exports
(components/volume_source.py): on this cluster a hostPath volume, as a kind or minikube user has.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

from e2e import image_checks
from e2e.cluster import Cluster
from e2e.kube import (
    EngineError,
    assert_release_live,
    claim_folder,
    job_message,
    job_seconds,
    namespace_snapshot,
    serves,
    versions_of,
    wait_gone,
)
from e2e.pulumi_cli import Pulumi
from e2e.stack import MODEL_CLAIM, NAMESPACE, PROMOTING_STACK, STACK
from local import demo

PROMOTING_NAMESPACE = f"{NAMESPACE}-prod"
# A refused copy ends `pulumi up` in this many seconds (pod start, verification, the Job's await);
# before the copy Job checked, prod's waiter crash-looped until the rollout deadline (15 min).
REFUSAL_SECONDS = 90
UNREACHABLE_NDCG = "0.99"  # a gate no build of the demo's data reaches
TRAINING_ONLY = ("dataSource", "dataClaim", "images", "localRegistry", "trainerEnv")


def promoting_config(source_config: dict) -> dict:
    """The source stack's settings without what only training uses, in its own namespace and host
    name, promoting from the source."""
    kept = {k: v for k, v in source_config.items() if k.split(":", 1)[1] not in TRAINING_ONLY}
    return {
        **kept,
        "mlpipeline:namespace": PROMOTING_NAMESPACE,
        "mlpipeline:hostnames": ["reco-prod.e2e.local"],
        "mlpipeline:promoteFrom": STACK,
    }


def sha256_of_files(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file of a release folder the manifest lists, and the manifest."""
    manifest = json.loads((folder / "manifest.json").read_text())
    names = [*manifest["files"], "manifest.json"]
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in names}


class PromotionScenarios:
    """Scenario 5 on `cluster`; `data` is the source's CSV folder (its users ask both stacks) and
    `same_config_again` the suite's check that a second `up` changes nothing."""

    def __init__(
        self,
        cluster: Cluster,
        pulumi: Pulumi,
        config: dict,
        data: Path,
        same_config_again: Callable[..., dict],
    ):
        self.cluster, self.pulumi, self.config, self.data = cluster, pulumi, config, data
        self.same_config_again = same_config_again
        self.promoted: dict | None = None  # the record of the build 5b promoted

    def up(self, *config: str, check: bool = True, replace: str | None = None):
        flags = [f"mlpipeline:{pair}" for pair in config]
        return self.pulumi.up(*flags, stack=PROMOTING_STACK, check=check, replace=replace)

    def outputs(self) -> dict:
        return self.pulumi.outputs(PROMOTING_STACK)

    def refuses_what_the_source_has_not(self, details: dict, pinned: bool) -> None:
        """Scenario 5: refusals planned from the source's ledger, before anything is declared."""
        live = sorted(self.pulumi.outputs()["releases"], key=int)
        self.pulumi.new_stack(PROMOTING_STACK, promoting_config(self.config))
        before = namespace_snapshot(self.cluster)
        expected = {
            "99": f"build 99 is not a live release of stack {STACK} (its releases: {', '.join(live)})"
        }
        if not pinned:  # kwok: the stack names prebuilt tags
            expected[live[-1]] = f"stack {STACK}'s images of build {live[-1]} are not pinned by digest"
        for build, message in expected.items():
            done = self.pulumi(
                "preview", "--config", f"mlpipeline:build={build}", stack=PROMOTING_STACK, check=False
            )
            output = done.stdout + done.stderr
            details[f"build {build}"] = next(
                (line.strip() for line in output.splitlines() if message in line), None
            )
            if done.returncode == 0 or details[f"build {build}"] is None:
                raise EngineError(
                    f"promoting build {build}: exit {done.returncode}, expected {message!r}:\n"
                    f"{output[-3000:]}"
                )
        if namespace_snapshot(self.cluster) != before:
            raise EngineError("a refused promotion changed objects in the source's namespace")

    def succeeds(self, details: dict) -> None:
        """Scenario 5b: the source's champion, promoted for real."""
        source_outputs = self.pulumi.outputs()
        build = str(source_outputs["traffic"]["champion"])
        source = source_outputs["releases"][build]
        source_objects = namespace_snapshot(self.cluster)
        self.up(f"build={build}")
        details["build"], details["up_seconds"] = build, self.pulumi.seconds()
        record = self.outputs()["releases"][build]
        self.promoted = record
        jobs = self.cluster.get(f"/apis/batch/v1/namespaces/{PROMOTING_NAMESPACE}/jobs") or {"items": []}
        details["jobs"] = sorted(job["metadata"]["name"] for job in jobs["items"])
        if details["jobs"] != [f"promote-{record['name']}"]:
            raise EngineError(
                f"the promoting stack ran Jobs {details['jobs']}, expected only promote-{record['name']}"
            )
        details["copy_seconds"] = job_seconds(self.cluster, record)  # the Job, pod start included
        message = job_message(self.cluster, record) or ""
        copied = re.search(r": copied in ([0-9.]+) s, every file verified", message)
        if copied is None:
            raise EngineError(f"the promote Job's termination message says no copy: {message!r}")
        details["copy_seconds_in_job"] = float(copied.group(1))  # what the Job timed of its own copy
        details["objects"] = assert_release_live(self.cluster, record)
        if record["images"] != source["images"] or record.get("training") != source.get("training"):
            raise EngineError(f"the promoted record differs from the source's: {record} vs {source}")
        details["images"] = image_checks.pods_run_the_record(self.cluster, record)
        details["model_files"] = self.files_match_the_source(build)
        user = self.sample_user()
        answers = {
            "source": serves(self.cluster, source, user),
            "promoted": serves(self.cluster, record, user),
        }
        details["answers"] = answers
        lists = {json.dumps(answer["items"]) for side in answers.values() for answer in side.values()}
        if len(lists) != 1:
            raise EngineError(
                f"the promoted release answers user {user} otherwise than the source: {answers}"
            )
        if namespace_snapshot(self.cluster) != source_objects:
            raise EngineError("promoting changed objects in the source's namespace")
        details.update(
            self.same_config_again(
                f"mlpipeline:build={build}", stack=PROMOTING_STACK, namespace=PROMOTING_NAMESPACE
            )
        )

    def refuses(self, details: dict) -> None:
        """Scenario 5c: a damaged source file, then a gate above the build, each refused fast."""
        assert self.promoted is not None
        live = self.outputs()
        before = versions_of(self.cluster, self.promoted)
        build = next(b for b in self.pulumi.outputs()["releases"] if b != self.promoted["build"])
        folder = claim_folder(self.cluster, MODEL_CLAIM) / build
        manifest = json.loads((folder / "manifest.json").read_text())
        damaged = max(manifest["files"], key=lambda name: (folder / name).stat().st_size)
        details["build"], details["damaged_file"] = build, damaged
        path = folder / damaged
        original = path.read_bytes()
        middle = len(original) // 2
        try:
            path.write_bytes(original[:middle] + bytes([original[middle] ^ 0xFF]) + original[middle + 1 :])
            details["damaged_byte"] = self.refused(f"build={build}", names=(damaged, "has sha256"))
        finally:
            path.write_bytes(original)
        job = self.job_urn(build)
        self.pulumi("config", "set", "mlpipeline:gateMinNdcg", UNREACHABLE_NDCG, stack=PROMOTING_STACK)
        try:
            details["gate"] = self.refused(
                f"build={build}",
                names=("below this stack's quality gate", f"GATE_MIN_NDCG {UNREACHABLE_NDCG}"),
                replace=job,
            )
        finally:
            self.pulumi("config", "rm", "mlpipeline:gateMinNdcg", stack=PROMOTING_STACK)
        if versions_of(self.cluster, self.promoted) != before or self.outputs() != live:
            raise EngineError("a refused promotion changed the promoting stack's live release or its outputs")
        details["still_serving"] = serves(self.cluster, self.promoted, self.sample_user())
        # Both causes gone: the refused copy runs again and nothing it left stands in the way.
        self.up(f"build={build}", replace=job)
        details["retried_up_seconds"] = self.pulumi.seconds()
        record = self.outputs()["releases"][build]
        self.files_match_the_source(build)
        details["retried"] = serves(self.cluster, record, self.sample_user())

    def files_match_the_source(self, build: str) -> int:
        """Every file of this stack's folder of `build` has the source folder's sha256; their count."""
        theirs = sha256_of_files(claim_folder(self.cluster, MODEL_CLAIM) / build)
        ours = sha256_of_files(claim_folder(self.cluster, MODEL_CLAIM, namespace=PROMOTING_NAMESPACE) / build)
        if ours != theirs:
            raise EngineError(
                f"the promoted files of build {build} differ from the source's: {ours} vs {theirs}"
            )
        return len(ours)

    def refused(self, *config: str, names: tuple[str, ...], replace: str | None = None) -> dict:
        """An `up` that must fail within REFUSAL_SECONDS with every one of `names` in its output."""
        done = self.up(*config, check=False, replace=replace)
        output = done.stdout + done.stderr
        seconds = self.pulumi.seconds()
        reason = next((line.strip() for line in output.splitlines() if names[0] in line), None)
        if done.returncode == 0 or reason is None or not all(name in output for name in names):
            raise EngineError(
                f"`up {' '.join(config)}` exited {done.returncode}, expected a failure naming {names}:\n"
                f"{output[-4000:]}"
            )
        if seconds > REFUSAL_SECONDS:
            raise EngineError(f"the refusal took {seconds:.0f} s, more than {REFUSAL_SECONDS} s")
        return {"seconds": seconds, "reason": reason[:600]}

    def job_urn(self, build: str) -> str:
        state = json.loads(self.pulumi("stack", "export", stack=PROMOTING_STACK).stdout)
        urns = [
            r["urn"]
            for r in state["deployment"].get("resources", [])
            if r["type"] == "kubernetes:batch/v1:Job"
            and r.get("outputs", {}).get("metadata", {}).get("name", "").endswith(f"-{build}")
        ]
        if len(urns) != 1:
            raise EngineError(f"the promoting stack's state holds Jobs {urns} for build {build}")
        return urns[0]

    def sample_user(self) -> str:
        return demo.sample_users(self.data, 1)[0]

    def outlives_the_source(self, details: dict) -> None:
        """Scenario 8b, after the source's destroy: the promoted release serves from this stack's own
        share and ledger; this stack's destroy then leaves nothing."""
        assert self.promoted is not None
        details["serving"] = serves(self.cluster, self.promoted, self.sample_user())
        self.pulumi("destroy", "--yes", "--skip-preview", stack=PROMOTING_STACK, timeout=900)
        details["destroy_seconds"] = self.pulumi.seconds()
        wait_gone(self.cluster, f"/api/v1/namespaces/{PROMOTING_NAMESPACE}")
        left = self.cluster.get(f"/api/v1/persistentvolumes/{PROMOTING_NAMESPACE}-promotion-source")
        if left is not None:
            raise EngineError(f"the promoting stack's destroy left its source volume: {left['status']}")

    def remove_stack(self) -> None:
        """Whatever happened before: the promoting stack's objects and state gone."""
        self.pulumi("destroy", "--yes", "--skip-preview", stack=PROMOTING_STACK, check=False, timeout=900)
        self.pulumi("stack", "rm", "--yes", "--force", stack=PROMOTING_STACK, check=False)
