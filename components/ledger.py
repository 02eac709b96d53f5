"""The release ledger: the stack output `releases`, read back by the next `pulumi up`.

    releases = {build: record}, record = {
        schema, build, name (DNS-safe build), sequence (1, 2, ... in order of first deployment),
        createdAt, gitSha, modelFolder, images {trainer, waiter, scorer} (by digest when pushed),
        service {name, port, targetPort, address, selector},
        objects {job, deployment, service}   <- the rendered Kubernetes objects, verbatim
    }

Every run reads the previous `releases` from the stack's own outputs (a StackReference to the
stack itself; nothing on the first run), keeps the build being deployed and the newest
`keepReleases - 1` others, re-declares each kept release from its record, declares the new build
if it is not in the ledger yet, and exports the records of the releases that stay. A release left
out is retired: Pulumi deletes its objects (its model folder stays on the share).

Immutability, Jobs included: the record holds the rendered objects themselves, and a kept release
is declared from them verbatim - no image build, no template rendering. A later change of the
template code (components/release_spec.py) or of the config therefore cannot change any input of
an existing release, so Pulumi never replaces its Job (a Job's pod template is immutable and a
replacement would re-train). Jobs additionally carry `ignore_changes=["spec"]` as a second lock.
A build that is already in the ledger is re-declared from its record, never rebuilt.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime.sync_await import _sync_await

from components import release_spec
from components.images import Images, ImagesArgs
from components.model_store import ModelStore
from components.registry import Registry
from components.release import RecordError, Release, ReleaseArgs, check_objects
from components.settings import Settings
from components.training_data import TrainingData

OUTPUT = "releases"
RECORD_FIELDS = ("build", "name", "sequence", "createdAt", "gitSha", "modelFolder", "images", "service", "objects")


class LedgerError(ValueError):
    """The previous ledger cannot be carried forward; the message names the build and the problem."""


@dataclass(frozen=True)
class LedgerPlan:
    kept: tuple[dict, ...]  # records of earlier releases that stay, oldest first
    new_build: bool  # the requested build is not in the ledger: render and declare it
    next_sequence: int  # the new build's sequence number
    retired: tuple[str, ...]  # builds dropped from the ledger, oldest first


def normalize(value: Any) -> Any:
    """Undo the JSON-number round trip of stack outputs (2 -> 2.0): Kubernetes integers stay ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: normalize(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(item) for item in value]
    return value


def check_record(build: str, record: Any) -> dict:
    if not isinstance(record, Mapping):
        raise LedgerError(f"release {build}: record is a {type(record).__name__}, not a map")
    record = normalize(record)
    missing = [name for name in RECORD_FIELDS if name not in record]
    if missing:
        raise LedgerError(f"release {build}: record lacks {', '.join(missing)}")
    if record.get("schema") != release_spec.SCHEMA:
        raise LedgerError(
            f"release {build}: record schema {record.get('schema')!r}, this program reads schema {release_spec.SCHEMA}"
        )
    if record["build"] != build:
        raise LedgerError(f"release {build}: record is for build {record['build']!r}")
    if not isinstance(record["sequence"], int) or record["sequence"] < 1:
        raise LedgerError(f"release {build}: sequence must be a positive whole number, got {record['sequence']!r}")
    try:
        check_objects(record)
    except RecordError as exc:
        raise LedgerError(str(exc)) from None
    return record


def plan_releases(previous: Mapping[str, Any] | None, build: str, dns_build: str, keep: int) -> LedgerPlan:
    """Which releases stay. The requested build always stays; of the others, the newest keep-1."""
    records = [check_record(str(b), r) for b, r in (previous or {}).items()]
    records.sort(key=lambda r: r["sequence"])
    sequences = [r["sequence"] for r in records]
    if len(set(sequences)) != len(sequences):
        raise LedgerError(f"releases {[r['build'] for r in records]} do not have distinct sequence numbers")
    clash = [r["build"] for r in records if r["name"] == dns_build and r["build"] != build]
    if clash:
        raise LedgerError(
            f"build {build} and live release {clash[0]} share the resource name {dns_build}; "
            f"use another build id (names are lowercase, '.' and '_' become '-')"
        )
    current = next((r for r in records if r["build"] == build), None)
    others = [r for r in records if r is not current]
    stay = others[max(0, len(others) - (keep - 1)):] if keep > 1 else []
    kept = sorted(stay + ([current] if current else []), key=lambda r: r["sequence"])
    retired = tuple(r["build"] for r in others if r not in stay)
    return LedgerPlan(
        kept=tuple(kept),
        new_build=current is None,
        next_sequence=(sequences[-1] + 1) if sequences else 1,
        retired=retired,
    )


def _has_outputs(value: Any) -> bool:
    if isinstance(value, pulumi.Output):
        return True
    if isinstance(value, Mapping):
        return any(_has_outputs(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_outputs(v) for v in value)
    return False


def read_previous(parent: pulumi.Resource) -> dict:
    """The `releases` output of this very stack's last update ({} if none)."""
    ref = pulumi.StackReference(
        f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}",
        opts=pulumi.ResourceOptions(parent=parent),
    )
    # The set of releases decides which resources exist, so it is needed as a value, not an Output.
    # The StackReference is read during preview too, so the value is known there as well.
    details = _sync_await(ref.get_output_details(OUTPUT))
    value = details.value if details.value is not None else details.secret_value
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LedgerError(f"stack output {OUTPUT} is a {type(value).__name__}, not a map of build -> record")
    return dict(value)


@dataclass(frozen=True)
class LedgerArgs:
    settings: Settings
    store: ModelStore
    data: TrainingData
    registry: Registry | None = None
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)  # what every release needs first


class Ledger(pulumi.ComponentResource):
    releases: dict[str, Release]  # live releases, oldest first
    live_builds: list[str]
    retired: list[str]
    new_release: Release | None  # the build declared for the first time in this run
    records: pulumi.Output[dict]

    def __init__(self, name: str, args: LedgerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlpipeline:ledger:Ledger", name, None, opts)
        settings = args.settings
        plan = plan_releases(read_previous(self), settings.build, settings.dns_build, settings.keep_releases)
        child = pulumi.ResourceOptions(parent=self)

        records: list[Mapping[str, Any]] = list(plan.kept)
        self.new_release = None
        if plan.new_build:
            records.append(self._render_new(name, args, plan.next_sequence))
        self.releases = {}
        for record in records:
            self.releases[record["build"]] = Release(
                f"{name}-release-{record['name']}",
                ReleaseArgs(record=record, depends_on=tuple(args.depends_on)),
                opts=child,
            )
        if plan.new_build:
            self.new_release = self.releases[settings.build]
        self.live_builds = list(self.releases)
        self.retired = list(plan.retired)
        self.records = self._all_records(records)
        self.register_outputs({"liveBuilds": self.live_builds, "retired": self.retired})

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

    def _render_new(self, name: str, args: LedgerArgs, sequence: int) -> dict:
        settings, store, data = args.settings, args.store, args.data
        images = Images(
            f"{name}-images-{settings.dns_build}",
            ImagesArgs(build=settings.build, registry=args.registry),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return release_spec.render(release_spec.ReleaseInputs(
            build=settings.build,
            dns_build=settings.dns_build,
            sequence=sequence,
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            git_sha=settings.git_sha,
            namespace=settings.namespace,
            images=images.refs,
            models_claim=store.claim_name,
            data_env=data.env,
            data_volumes=data.volumes,
            data_mounts=data.mounts,
            trainer_env=settings.trainer_env,
            gate_min_ndcg=settings.gate_min_ndcg,
            gate_min_lift=settings.gate_min_lift,
            wait_timeout_seconds=settings.wait_timeout_seconds,
            train_timeout_seconds=settings.train_timeout_minutes * 60,
            rollout_timeout_seconds=settings.rollout_timeout_minutes * 60,
            replicas=settings.replicas,
            resources=settings.resources,
            pull_secret=args.registry.pull_secret_name if args.registry is not None else None,
        ))
