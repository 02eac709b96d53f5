"""The engine suite's scenarios 1 to 8: what the real Pulumi engine and the API server do with the
program's e2e stack (e2e/stack.py), each asserted from `pulumi`'s JSON and the objects' own
generation/resourceVersion (e2e/kube.py).

    1 preview, then up build=1            5 a promoting stack reads the releases (StackReference)
    2 build 2 beside build 1, untouched   6 refused config fails before any change
    3 traffic 90/10, rollback 100/0       7 a failed training (real node only) leaves all as it was
    4 retire build 1, re-declare it       8 destroy leaves nothing
                                          10 the nightly canary loop (e2e/nightly.py)

Scenario 2 needs 1; 3, 4, 5 and 7 need 2 (7 a real node too); 6 and 8 run whatever happened before.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from e2e import docker_engine, image_checks, nightly
from e2e.cluster import Cluster
from e2e.kube import (
    EngineError,
    assert_release_live,
    claim_folder,
    guards_of,
    job_seconds,
    namespace_snapshot,
    objects_of,
    prepare_namespace,
    route_weights,
    routes,
    serves,
    versions_of,
)
from e2e.promotion import PromotionScenarios
from e2e.pulumi_cli import Pulumi, preview_steps, urn_name
from e2e.registry import Registry
from e2e.report import Report
from e2e.stack import FAILED_BUILD, MODEL_CLAIM, NAMESPACE, STACK
from local import demo

SUITE = "engine"
# A re-declared retired record keeps everything but its place in the ledger's order.
RENUMBERED = ("sequence",)


def of_release(name: str, dns_build: str) -> bool:
    """Whether a resource name belongs to one release: its component (ledger-release-<build>[-...]),
    its images (ledger-images-<build>[-<app>]) or its guards (guards-<build>[-...]: network
    policies, disruption budget, autoscaler)."""
    return any(
        name.endswith(prefix) or f"{prefix}-" in name
        for prefix in (f"-release-{dns_build}", f"-images-{dns_build}")
    ) or (name == f"guards-{dns_build}" or name.startswith(f"guards-{dns_build}-"))


def write_bad_csv(good: Path, folder: Path) -> int:
    """An ETL drop gone wrong: the good interactions with every third row's separator changed, so
    a third of the rows are malformed (above TRAIN_MAX_REJECTED_SHARE). Returns the rows written."""
    folder.mkdir(parents=True, exist_ok=True)
    header, *rows = next(iter(sorted(good.glob("*.csv")))).read_text().splitlines()
    rows = rows[:6000]
    broken = [row.replace(",", ";") if number % 3 == 0 else row for number, row in enumerate(rows)]
    (folder / "interactions.csv").write_text("\n".join([header, *broken]) + "\n")
    return len(rows)


class Scenarios:
    """The scenarios on one cluster; `config` is the stack's (e2e/stack.py), `registry` the suite's
    registry when the engine builds the images (a real node), else None (kwok: prebuilt tags)."""

    def __init__(
        self, report: Report, cluster: Cluster, pulumi: Pulumi, config: dict, registry: Registry | None
    ):
        self.report, self.cluster, self.pulumi = report, cluster, pulumi
        self.config, self.registry = config, registry
        self.figures = report.facts.setdefault("engine", {})
        self.data = Path()  # the csv-data claim's host folder, once the namespace is prepared

    def scenario(self, name: str):
        return self.report.scenario(SUITE, name)

    def run(self) -> None:
        self.pulumi.prepare()
        self.data = prepare_namespace(self.cluster)
        self.promotion = PromotionScenarios(
            self.cluster, self.pulumi, self.config, self.data, self.nothing_to_change
        )
        self.pulumi.new_stack(STACK, self.config)
        passed = self.first_release()
        if passed:
            passed = self.second_release()
        if passed and self.registry is not None:
            self.images_by_the_engine()
        elif self.registry is None:
            self.figures["scenario 1b"] = "not run: kwok's pods pull no image (the stack names prebuilt tags)"
        if passed:
            self.traffic_and_rollback()
            self.retire_and_redeploy()
            self.promoting_stack()
        self.bad_config()
        if passed and self.cluster.node is not None:
            self.failed_training()
        elif self.cluster.node is None:
            self.figures["scenario 7"] = "not run: kwok's Job pods complete without running the trainer"
        self.destroy()
        if self.cluster.node is not None:
            self.nightly_loop()
        else:
            self.figures["scenario 10"] = "not run: kwok's pods serve no requests"
        self.figures["pulumi_runs"] = self.pulumi.runs

    def nightly_loop(self) -> None:
        with self.scenario(nightly.SCENARIO) as details:
            nightly.nightly_loop(self.cluster, self.pulumi, self.config, details)

    def first_release(self) -> bool:
        with self.scenario("1 preview, then up build=1") as details:
            preview = self.pulumi.preview_json("mlpipeline:build=1")
            creates = [s for s in preview_steps(preview) if s["op"] == "create"]
            details["preview_creates"] = len(creates)
            details["preview_seconds"] = self.pulumi.seconds()
            if not creates:
                raise EngineError("the first preview plans no creates")
            self.pulumi.up("mlpipeline:build=1")
            details["up_seconds"] = self.pulumi.seconds()
            self.figures["image_seconds"] = {"1": image_checks.image_seconds(self.pulumi.event_log)}
            releases = self.pulumi.outputs()["releases"]
            details["job_seconds"] = job_seconds(self.cluster, releases["1"])
            if list(releases) != ["1"]:
                raise EngineError(f"stack output releases holds {list(releases)}, expected ['1']")
            details["objects"] = assert_release_live(self.cluster, releases["1"])
            details["routes"] = [r["metadata"]["name"] for r in routes(self.cluster)]
            details["provenance"] = self.provenance(releases["1"])
            details.update(self.nothing_to_change("mlpipeline:build=1"))
            details["weights"] = route_weights(self.cluster)
            return True
        return False

    def provenance(self, record: dict) -> dict:
        """The record holds what training produced as soon as the `up` that trained it returns; on a
        real node its model sha256 is that of the manifest the trainer wrote to the model share."""
        training = record.get("training") or {}
        if "modelSha256" not in training:
            raise EngineError(f"release {record['build']}'s record lacks its training results: {training}")
        if self.cluster.node is not None:
            data, test = training.get("data") or {}, training.get("test") or {}
            if "sha256" not in data or "ndcg_at_k" not in test:
                raise EngineError(f"release {record['build']}'s results lack data or test: {training}")
            share = claim_folder(self.cluster, MODEL_CLAIM)
            manifest = hashlib.sha256((share / record["build"] / "manifest.json").read_bytes()).hexdigest()
            if training["modelSha256"] != manifest:
                raise EngineError(f"record modelSha256 {training['modelSha256']}, manifest.json {manifest}")
        return {
            "modelSha256": training["modelSha256"],
            "dataSha256": (training.get("data") or {}).get("sha256"),
            "ndcg_at_k": (training.get("test") or {}).get("ndcg_at_k"),
        }

    def nothing_to_change(self, *config: str, stack: str = "", namespace: str = NAMESPACE) -> dict:
        """A second `up` with the same config plans nothing (but dropping the images it built from the
        state), builds and pushes nothing, changes no object and no output."""
        outputs, objects = self.pulumi.outputs(stack), namespace_snapshot(self.cluster, namespace)
        planned = preview_steps(self.pulumi.preview_json(*config, stack=stack))
        # The new build's images leave the state at its next update, kept in the registry.
        planned = [step for step in planned if not image_checks.leaves_state_only(step)]
        if planned:
            raise EngineError(f"the same config again plans {[(s['op'], s['urn']) for s in planned]}")
        self.pulumi.up(*config, stack=stack)
        seconds = self.pulumi.seconds()
        built = [op for op in image_checks.image_operations(self.pulumi.event_log) if op != "delete"]
        if built:
            raise EngineError(f"the same config again ran {built} on images")
        changed = [k for k, v in self.pulumi.outputs(stack).items() if outputs.get(k) != v]
        if changed or namespace_snapshot(self.cluster, namespace) != objects:
            raise EngineError(f"the same config again changed outputs {changed} or objects")
        return {"same_config_up_seconds": seconds}

    def second_release(self) -> bool:
        with self.scenario("2 build=2 beside build 1, build 1 untouched") as details:
            before = self.pulumi.outputs()["releases"]["1"]
            versions_before = versions_of(self.cluster, before)
            changes = [
                (step["op"], urn_name(step["urn"]))
                for step in preview_steps(self.pulumi.preview_json("mlpipeline:build=2"))
            ]
            details["preview_steps"] = changes
            # Everything of build 1 stays as it was, its guards included.
            build1 = [(op, name) for op, name in changes if of_release(name, before["name"])]
            if build1:
                raise EngineError(f"the preview of build 2 changes build 1's resources: {build1}")
            creates = [name for op, name in changes if op == "create"]
            if not creates or any(not of_release(name, "2") for name in creates):
                raise EngineError(
                    f"the preview of build 2 creates {creates}, expected build 2's resources only"
                )
            self.pulumi.up("mlpipeline:build=2")
            self.figures["image_seconds"]["2"] = image_checks.image_seconds(self.pulumi.event_log)
            releases = self.pulumi.outputs()["releases"]
            if sorted(releases) != ["1", "2"]:
                raise EngineError(f"releases after build 2: {sorted(releases)}")
            versions_after = versions_of(self.cluster, releases["1"])
            details["build1_generation_resourceVersion"] = {
                "before": versions_before,
                "after": versions_after,
            }
            if versions_after != versions_before:
                raise EngineError(f"build 1's objects changed: {versions_before} -> {versions_after}")
            for build in ("1", "2"):
                assert_release_live(self.cluster, releases[build])
            details["weights"] = route_weights(self.cluster)
            return True
        return False

    def images_by_the_engine(self) -> None:
        assert self.registry is not None
        with self.scenario("1b images built and pushed by the engine, pods pinned by digest") as details:
            releases = self.pulumi.outputs()["releases"]
            for build in ("1", "2"):
                details[f"build {build}"] = image_checks.check_pinned(
                    self.cluster, self.registry, releases[build]
                )
            # apps/ unchanged since build 1: BuildKit's cache serves every step of build 2, whose
            # images are build 1's, byte for byte, under new tags (the event log's seconds are whole)
            details["image_seconds"] = self.figures["image_seconds"]
            digests = {
                build: {
                    app: image_checks.repository_and_digest(ref, self.registry)[1]
                    for app, ref in releases[build]["images"].items()
                }
                for build in ("1", "2")
            }
            if digests["1"] != digests["2"]:
                raise EngineError(f"build 2 (apps/ unchanged) did not reuse build 1's images: {digests}")
            details["tag moved"] = image_checks.move_tag(
                self.cluster, self.registry, releases["1"], docker_engine.base_image_name()
            )

    def traffic_and_rollback(self) -> None:
        with self.scenario(
            "3 traffic 90/10 reaches the route; rollback 100/0 changes the router only"
        ) as details:
            releases = self.pulumi.outputs()["releases"]
            services = {build: releases[build]["service"]["name"] for build in ("1", "2")}
            before = namespace_snapshot(self.cluster)
            self.pulumi.up('mlpipeline:traffic={"1": 90, "2": 10}')
            weights = route_weights(self.cluster)
            details["split"] = weights
            if weights.get(services["1"]) != 90 or weights.get(services["2"]) != 10:
                raise EngineError(f"route weights {weights}, expected 90/10 on {services}")
            self.pulumi.up('mlpipeline:traffic={"1": 100}')
            weights = route_weights(self.cluster)
            details["rollback"] = weights
            if weights.get(services["1"]) != 100 or weights.get(services["2"], 0) != 0:
                raise EngineError(f"route weights after rollback {weights}")
            after_rollback = namespace_snapshot(self.cluster)
            changed = sorted(
                k for k in set(before) | set(after_rollback) if before.get(k) != after_rollback.get(k)
            )
            details["changed_objects"] = changed
            if any(not key.startswith("httproutes/") for key in changed):
                raise EngineError(f"traffic changes touched more than the router: {changed}")

    def retire_and_redeploy(self) -> None:
        with self.scenario(
            "4 keepReleases=2 and build 3 retire build 1; build=1 re-declares it verbatim"
        ) as details:
            original = self.pulumi.outputs()["releases"]["1"]
            build1 = objects_of(original)
            # Retention never drops the release serving the traffic: move it to build 2 first.
            self.pulumi.up('mlpipeline:traffic={"2": 100}')
            self.pulumi("config", "set", "mlpipeline:keepReleases", "2")
            self.pulumi.up("mlpipeline:build=3", "mlpipeline:traffic=auto")
            outputs = self.pulumi.outputs()
            details["after_build3"] = {
                "live": sorted(outputs["releases"]),
                "retired": outputs["retiredBuilds"],
            }
            if sorted(outputs["releases"]) != ["2", "3"] or "1" not in outputs["retiredReleases"]:
                raise EngineError(
                    f"after build 3 with keepReleases=2: live {sorted(outputs['releases'])}, "
                    f"retired records {sorted(outputs['retiredReleases'])}"
                )
            left = {kind: name for kind, (path, name) in build1.items() if self.cluster.get(path) is not None}
            left.update(
                {
                    kind: path
                    for path, kind in guards_of(original).items()
                    if self.cluster.get(path) is not None
                }
            )
            if left:
                raise EngineError(f"build 1's objects are still in the API server: {left}")
            # The model folders live on the share, which no retirement touches: its claim stays bound.
            claims = {
                name.split("/", 1)[1]
                for name in namespace_snapshot(self.cluster)
                if name.startswith("persistentvolumeclaims/")
            }
            details["claims"] = sorted(claims)
            if MODEL_CLAIM not in claims:
                raise EngineError(
                    f"the model share's claim {MODEL_CLAIM} is gone after retiring build 1: {claims}"
                )
            self.pulumi.up("mlpipeline:build=1")
            again = self.pulumi.outputs()["releases"]
            details["after_redeploy"] = sorted(again)
            if "1" not in again:
                raise EngineError(f"build=1 did not re-declare build 1: live {sorted(again)}")
            differ = sorted(
                k
                for k in set(original) | set(again["1"])
                if k not in RENUMBERED and original.get(k) != again["1"].get(k)
            )
            if differ:
                raise EngineError(f"build 1 re-declared with other {differ} than its retired record")
            details["objects"] = assert_release_live(self.cluster, again["1"])

    def promoting_stack(self) -> None:
        """Scenario 5 (e2e/promotion.py): refusals from the source's ledger; on a real node a promotion
        that succeeds and two that are refused."""
        real = self.registry is not None
        with self.scenario(
            "5 a promoting stack refuses a build the source cannot give, before any change"
        ) as details:
            self.promotion.refuses_what_the_source_has_not(details, pinned=real)
            if not real:
                self.promotion.remove_stack()
                self.figures["scenario 5b/5c"] = "not run: kwok's pods run nothing (no copy, no model)"
                return
        passed = False
        with self.scenario(
            "5b promotion succeeds: the source's digests and model bytes, nothing retrained"
        ) as details:
            self.promotion.succeeds(details)
            passed = True
        if passed:
            with self.scenario(
                "5c promotion refuses a damaged byte and a gate above the build, fast; "
                "its live release untouched"
            ) as details:
                self.promotion.refuses(details)
        else:
            self.promotion.remove_stack()

    def bad_config(self) -> None:
        live = sorted(self.pulumi.outputs().get("releases", {}), key=int)[:2]
        weights = json.dumps(dict(zip(live, (50, 10))))
        for name, config, expected in (
            (
                "6 weights not summing to 100 fail before any change",
                f"mlpipeline:traffic={weights}",
                f"traffic {weights} rejected: weights sum to 60, not 100",
            ),
            (
                "6 unknown key fails before any change",
                "mlpipeline:trafic=1",
                "unknown config key(s) mlpipeline:trafic",
            ),
        ):
            with self.scenario(name) as details:
                before = namespace_snapshot(self.cluster)
                done = self.pulumi.up(config, check=False)
                output = done.stdout + done.stderr
                details["exit"] = done.returncode
                details["message"] = next(
                    (line.strip() for line in output.splitlines() if expected in line), None
                )
                if done.returncode == 0:
                    raise EngineError(f"`pulumi up --config {config}` succeeded")
                if details["message"] is None:
                    raise EngineError(f"the failure does not name {expected!r}:\n{output[-3000:]}")
                after = namespace_snapshot(self.cluster)
                if after != before:
                    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
                    raise EngineError(f"objects changed although the config was refused: {changed}")
                # `up --config` wrote the refused value into the stack's config file: take it out
                self.pulumi("config", "rm", config.split("=")[0])

    def failed_training(self) -> None:
        """Scenario 7 (real node only): the trainer refuses bad CSVs, the Job fails, `pulumi up` stops
        there with the trainer's reason; the live releases' objects are untouched and they serve, and
        the stack's outputs (the ledger the next update reads) are still those of the last good one."""
        previous = None
        with self.scenario(
            "7 a failed training (bad CSV) fails up at the Job with the trainer's reason; "
            "the old releases keep serving, the ledger stays"
        ) as details:
            outputs = self.pulumi.outputs()
            live = outputs["releases"]
            before = {build: versions_of(self.cluster, record) for build, record in live.items()}
            details["trained_seconds"] = {build: job_seconds(self.cluster, r) for build, r in live.items()}
            details["bad_rows"] = write_bad_csv(self.data, self.data / "bad")
            previous = self.pulumi("config", "get", "mlpipeline:build").stdout.strip()
            done = self.pulumi.up(f"mlpipeline:build={FAILED_BUILD}", "mlpipeline:csvFolder=bad", check=False)
            output = done.stdout + done.stderr
            details["exit"], details["up_seconds"] = done.returncode, self.pulumi.seconds()
            expected = ("the data cannot make a trustworthy model", "are broken", "TRAIN_MAX_REJECTED_SHARE")
            details["reason"] = next(
                (line.strip() for line in output.splitlines() if expected[0] in line), None
            )
            job = self.cluster.get(f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/train-{FAILED_BUILD}") or {}
            conditions = job.get("status", {}).get("conditions", [])
            details["job_conditions"] = {c["type"]: c.get("reason") for c in conditions}
            if done.returncode == 0:
                raise EngineError(f"`pulumi up` of build {FAILED_BUILD} on bad CSVs succeeded")
            if details["reason"] is None or not all(part in output for part in expected):
                raise EngineError(
                    f"the failure does not give the trainer's reason {expected}:\n{output[-4000:]}"
                )
            if details["job_conditions"].get("Failed") is None:
                raise EngineError(f"Job train-{FAILED_BUILD} has not failed: {job.get('status')}")
            if self.cluster.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/score-{FAILED_BUILD}"):
                raise EngineError(
                    f"the update went past the failed Job: Deployment score-{FAILED_BUILD} exists"
                )
            after = {build: versions_of(self.cluster, record) for build, record in live.items()}
            if after != before:
                raise EngineError(
                    f"the failed update changed the live releases' objects: {before} -> {after}"
                )
            user = demo.sample_users(self.data, 1)[0]
            details["serving"] = {build: serves(self.cluster, record, user) for build, record in live.items()}
            for record in live.values():
                assert_release_live(self.cluster, record)
            moved = {
                key: {"before": outputs.get(key), "after": value}
                for key, value in self.pulumi.outputs().items()
                if outputs.get(key) != value
            }
            details["outputs_changed"] = sorted(moved)
            if moved:
                raise EngineError(
                    f"the failed update moved the stack's outputs on, so the next update "
                    f"would read a ledger with build {FAILED_BUILD} live: "
                    f"{json.dumps(moved)[:3000]}"
                )
        # the stack's config as before, whatever happened: the live build and the data folder
        shutil.rmtree(self.data / "bad", ignore_errors=True)
        self.pulumi("config", "rm", "mlpipeline:csvFolder", check=False)
        if previous:
            self.pulumi("config", "set", "mlpipeline:build", previous)

    def destroy(self) -> None:
        with self.scenario("8 destroy leaves nothing behind") as details:
            self.pulumi("destroy", "--yes", "--skip-preview", timeout=900)
            details["destroy_seconds"] = self.pulumi.seconds()
            left = {}
            namespace = self.cluster.get(f"/api/v1/namespaces/{NAMESPACE}")
            if namespace is not None and namespace["status"].get("phase") != "Terminating":
                left["namespace"] = namespace["status"]
            snapshot = namespace_snapshot(self.cluster)
            snapshot.pop("persistentvolumeclaims/csv-data", None)  # the user's data claim, not the stack's
            left.update(snapshot)
            details["left"] = left
            if left:
                raise EngineError(f"objects left after destroy: {left}")
        if self.promotion.promoted is not None:
            with self.scenario(
                "8b the promoted release outlives the source's destroy; its own destroy leaves nothing"
            ) as details:
                self.promotion.outlives_the_source(details)
        self.promotion.remove_stack()
