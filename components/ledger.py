"""The release ledger: declares the releases the plan keeps, and the new one, and exports their records.

    releases = {build: record}   the stack output; a record (components/release_spec.py
                                 ReleaseRecord) holds the rendered Job, Deployment and Service

Which releases stay, retire or come back is decided before anything is declared
(components/plan.py). The Ledger declares each kept release from its record, verbatim, and
renders only a build that is not in the ledger yet: its images (components/images.py), or on a
promoting stack the source's images and the copy Job (components/promotion.py), then its record
(components/release_spec.py).

Immutability, Jobs included: a kept release is declared from its record - no image build, no
template rendering. A later change of the template code or of the config therefore cannot change
any input of an existing release, so Pulumi never replaces its Job (a Job's pod template is
immutable and a replacement would re-train). Jobs additionally carry `ignore_changes=["spec"]`
as a second lock (components/release.py). A release left out is retired: Pulumi deletes its
objects (its model folder stays on the share). Each release also declares its guards from the
stack's operating policy (`LedgerArgs.policy`), the one thing of a kept release that follows the
config; nothing of it follows the traffic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pulumi

from components import promotion, release_spec, training_results
from components.build import Build
from components.images import Images, ImagesArgs, prebuilt_refs
from components.plan import LedgerPlan
from components.registry import Registry
from components.release import Release, ReleaseArgs
from components.release_guards import OperatingPolicy
from components.release_spec import ReleaseRecord


@dataclass(frozen=True)
class LedgerArgs:
    plan: LedgerPlan  # the plan's releases: kept records, whether the build is new
    build: Build  # the build this update deploys
    git_sha: str  # of a new build; a promoted one keeps the source's
    template: release_spec.ReleaseTemplate  # how this stack renders a new release
    policy: OperatingPolicy  # the stack's, for every live release's guards (components/release_guards.py)
    registry: Registry | None = None  # where a new build's images are pushed; None: local daemon
    push_to: str | None = None  # without a registry: a registry host[:port] reached without credentials
    prebuilt_images: bool = (
        False  # config images=prebuilt: the pods run mlpipeline/<app>:<build>, nothing built
    )
    source: promotion.Source | None = None  # promoting stack: the source stack's release
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)  # what every release needs first
    guards_depend_on: Sequence[pulumi.Resource] = field(default_factory=tuple)  # the namespace


class Ledger(pulumi.ComponentResource):
    releases: dict[str, Release]  # live releases, oldest first
    live_builds: list[str]
    retired: list[str]
    history: dict[str, ReleaseRecord]  # retired records, for a verbatim re-deploy
    records: pulumi.Output[dict]

    def __init__(self, name: str, args: LedgerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlpipeline:ledger:Ledger", name, None, opts)
        plan = args.plan
        child = pulumi.ResourceOptions(parent=self)

        records: list[ReleaseRecord] = list(plan.kept)
        if plan.new_build:
            records.append(self._render_new(name, args, plan.next_sequence))
        self.releases = {}
        for record in records:
            self.releases[record["build"]] = Release(
                f"{name}-release-{record['name']}",
                ReleaseArgs(
                    record=record,
                    policy=args.policy,
                    depends_on=tuple(args.depends_on),
                    guards_depend_on=tuple(args.guards_depend_on),
                ),
                opts=child,
            )
        if plan.new_build and args.source is None:
            records[-1] = self._with_training(records[-1])
        self.live_builds = list(self.releases)
        self.retired = list(plan.retired)
        self.history = {r["build"]: r for r in plan.history}
        self.records = self._all_records(records)
        self.register_outputs({"liveBuilds": self.live_builds, "retired": self.retired})

    def _with_training(self, record: ReleaseRecord) -> ReleaseRecord:
        """The new build's record with what its training produced, read once its Job completed
        (components/training_results.py): in the `releases` output of the update that trains it."""
        release = self.releases[record["build"]]
        training = training_results.after_completion(
            release.job.status, release.namespace, release.job_name, release.build.id
        )
        return {**record, "training": training}  # type: ignore[typeddict-item]  # resolved with the images

    @staticmethod
    def _all_records(records: Sequence[Mapping[str, Any]]) -> pulumi.Output[dict]:
        # Kept records are plain data: only the new one (image digests) needs resolving. Resolving
        # the whole map through Output.from_input would wrap every nested value (slow at 50 releases).
        plain = {r["build"]: r for r in records if not _has_outputs(r)}
        pending = [pulumi.Output.from_input(r) for r in records if _has_outputs(r)]
        order = [r["build"] for r in records]
        return pulumi.Output.all(*pending).apply(
            lambda resolved: {b: {**plain, **{r["build"]: r for r in resolved}}[b] for b in order}
        )

    def _render_new(self, name: str, args: LedgerArgs, sequence: int) -> ReleaseRecord:
        if args.source is not None:  # promotion: the source's provenance and digests, no image build
            source = args.source.record
            assert source is not None, "a promoting stack reads the source's record of a new build"
            build = release_spec.BuildInfo(
                args.build,
                sequence,
                source["createdAt"],
                source["gitSha"],
                cast(Mapping[str, str], source["images"]),
            )
            record = promotion.promoted_record(args.template, build, args.source.stack)
            if "training" in source:  # trained in the source stack: the same model
                record["training"] = source["training"]
            return record
        images = (
            prebuilt_refs(args.build.id)
            if args.prebuilt_images
            else Images(
                f"{name}-images-{args.build.dns}",
                ImagesArgs(build=args.build.id, registry=args.registry, push_to=args.push_to),
                opts=pulumi.ResourceOptions(parent=self),
            ).refs
        )
        created_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        build = release_spec.BuildInfo(args.build, sequence, created_at, args.git_sha, images)
        return release_spec.render(args.template, build)


def _has_outputs(value: Any) -> bool:
    if isinstance(value, pulumi.Output):
        return True
    if isinstance(value, Mapping):
        return any(_has_outputs(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_outputs(v) for v in value)
    return False
