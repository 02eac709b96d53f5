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

Retention never retires a release that the requested `traffic` sends requests to, the `shadow`,
or the previous champion (the build that held most traffic after the last update, from the stack
output `traffic`): the warm release a rollback moves back to. Retired records move to the stack
output `retiredReleases` (the newest HISTORY_SIZE), so `pulumi up --config build=<retired build>`
re-declares that release verbatim from its record: same digests, same model folder (its Job
finds the folder complete and is a no-op).

The whole plan (releases, traffic split, router kind) is made by `plan_update` from the settings
and the previous outputs before `__main__.py` declares any resource, so a bad `traffic` fails the
update with nothing changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime.sync_await import _sync_await

from components import labels, promotion, release_spec, training_results
from components.images import Images, ImagesArgs
from components.model_store import ModelStore
from components.registry import Registry
from components.release import RecordError, Release, ReleaseArgs, check_objects
from components.router import check_router
from components.settings import Settings
from components.traffic import EXPLICIT, TrafficPlan, plan_traffic
from components.training_data import TrainingData

OUTPUT = "releases"
HISTORY_OUTPUT = "retiredReleases"
TRAFFIC_OUTPUT = "traffic"
DEPLOYED_OUTPUT = "deployedBuilds"  # every build id ever deployed on the stack, in order: ids are never re-used
HISTORY_SIZE = 20  # retired records kept for a verbatim re-deploy
RECORD_FIELDS = ("build", "name", "sequence", "createdAt", "gitSha", "modelFolder", "images", "service", "objects")


class LedgerError(ValueError):
    """The previous ledger cannot be carried forward; the message names the build and the problem."""


@dataclass(frozen=True)
class LedgerPlan:
    kept: tuple[dict, ...]  # records of earlier releases that stay, oldest first
    new_build: bool  # the requested build is in neither the ledger nor its history: render it
    next_sequence: int  # the new build's sequence number
    retired: tuple[str, ...]  # builds dropped from the ledger, oldest first
    history: tuple[dict, ...] = ()  # retired records to export, oldest first
    deployed: tuple[str, ...] = ()  # every build id deployed so far, this one included, oldest first

    def live_builds(self, build: str) -> list[str]:
        """Builds live after this update, oldest first (the new build is the newest)."""
        return [r["build"] for r in self.kept] + ([build] if self.new_build else [])


@dataclass(frozen=True)
class Previous:
    """The outputs of this stack's last update that the next one builds on."""

    releases: Mapping[str, Any] = field(default_factory=dict)
    history: Mapping[str, Any] = field(default_factory=dict)
    traffic: Mapping[str, Any] = field(default_factory=dict)
    deployed: Sequence[str] = ()

    @property
    def champion(self) -> str | None:
        champion = self.traffic.get("champion") if isinstance(self.traffic, Mapping) else None
        return str(champion) if champion else None


@dataclass(frozen=True)
class UpdatePlan:
    releases: LedgerPlan
    traffic: TrafficPlan
    gate_champion: str | None  # the new build is gated against this release's model (champion gate)


def plan_update(settings: Settings, previous: Previous) -> UpdatePlan:
    """Everything this update will do, checked before any resource is declared."""
    protected = _protected(settings, previous)
    releases = plan_releases(
        previous.releases, settings.build, settings.dns_build, settings.keep_releases,
        protected=protected, history=previous.history, deployed=previous.deployed,
    )
    live = releases.live_builds(settings.build)
    traffic = plan_traffic(settings.traffic, live, settings.shadow, previous.traffic, settings.canary_percent)
    check_router(settings.router, traffic, settings.gateway, settings.hostnames)
    champion = previous.champion
    gate = (
        champion
        if settings.champion_tolerance is not None and champion in live and champion != settings.build
        else None
    )
    return UpdatePlan(releases=releases, traffic=traffic, gate_champion=gate)


def _protected(settings: Settings, previous: Previous) -> frozenset[str]:
    """Builds retention must keep: requested traffic, the shadow, the previous champion. The values
    are checked by plan_traffic later; here a build with any positive number counts."""
    requested = settings.traffic if isinstance(settings.traffic, Mapping) else {}
    if settings.traffic is None and previous.traffic.get("mode") == EXPLICIT:  # the split in force stays
        requested = previous.traffic.get("weights") or {}
    builds = {str(b) for b, w in requested.items() if isinstance(w, (int, float)) and w > 0}
    if isinstance(settings.shadow, Mapping) and settings.shadow.get("build"):
        builds.add(str(settings.shadow["build"]))
    if previous.champion:
        builds.add(previous.champion)
    return frozenset(builds)


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


def plan_releases(
    previous: Mapping[str, Any] | None,
    build: str,
    dns_build: str,
    keep: int,
    protected: frozenset[str] | set[str] = frozenset(),
    history: Mapping[str, Any] | None = None,
    deployed: Sequence[str] = (),
) -> LedgerPlan:
    """Which releases stay. The requested build always stays; of the others, the newest keep-1
    and every protected one. A requested build found only in the history comes back verbatim; one
    deployed before whose record is gone is refused: a build id names one release forever, and
    rendering it again from today's code would pair new images with the model its first Job left."""
    records = [check_record(str(b), r) for b, r in (previous or {}).items()]
    records.sort(key=lambda r: r["sequence"])
    live_names = {r["build"] for r in records}
    retired_records = {str(b): r for b, r in (history or {}).items() if str(b) not in live_names}
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
    if current is None and build in retired_records:
        current = check_record(build, retired_records.pop(build))
    # Outputs of older code have no list: every build they still name was deployed.
    known_builds = list(dict.fromkeys([*(str(b) for b in deployed), *(str(b) for b in (history or {})),
                                       *(r["build"] for r in records)]))
    if current is None and build in known_builds:
        raise LedgerError(
            f"build {build} was deployed on this stack before and its record is no longer kept (retiredReleases "
            f"holds the newest {HISTORY_SIZE} retired): a build id is one release, never rendered twice; deploy "
            "under a new build id"
        )
    others = [r for r in records if r is not current]
    newest = others[max(0, len(others) - (keep - 1)):] if keep > 1 else []
    stay = [r for r in others if r in newest or r["build"] in protected]
    kept = sorted(stay + ([current] if current else []), key=lambda r: r["sequence"])
    retired = [r for r in others if r not in stay]
    known = sequences + [r.get("sequence", 0) for r in retired_records.values() if isinstance(r, Mapping)]
    history_records = sorted(
        [*(normalize(r) for r in retired_records.values() if isinstance(r, Mapping)), *retired],
        key=lambda r: r.get("sequence", 0),
    )[-HISTORY_SIZE:]
    return LedgerPlan(
        kept=tuple(kept),
        new_build=current is None,
        # Past every sequence ever handed out, retired ones included, so a re-deployed old record
        # can never share its number with a newer one.
        next_sequence=max([0, *[int(n) for n in known if isinstance(n, (int, float))]]) + 1,
        retired=tuple(r["build"] for r in retired),
        history=tuple(history_records),
        deployed=tuple(known_builds + ([build] if build not in known_builds else [])),
    )


def _source_data(source: promotion.Source | None) -> str | None:
    """A promoted release was trained on the source stack's data: its record says where."""
    if source is None:
        return None
    return source.record.get("objects", {}).get("job", {}).get("metadata", {}).get("annotations", {}).get(labels.DATA)


def _has_outputs(value: Any) -> bool:
    if isinstance(value, pulumi.Output):
        return True
    if isinstance(value, Mapping):
        return any(_has_outputs(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_outputs(v) for v in value)
    return False


def read_previous(parent: pulumi.Resource | None = None) -> Previous:
    """The outputs of this very stack's last update (empty on the first)."""
    ref = pulumi.StackReference(
        f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}",
        opts=pulumi.ResourceOptions(parent=parent),
    )
    # The set of releases decides which resources exist, so it is needed as a value, not an Output.
    # The StackReference is read during preview too, so the value is known there as well.
    return Previous(
        releases=_map_output(ref, OUTPUT, "a map of build -> record"),
        history=_map_output(ref, HISTORY_OUTPUT, "a map of build -> record"),
        traffic=_map_output(ref, TRAFFIC_OUTPUT, "a map with weights and champion"),
        deployed=_list_output(ref, DEPLOYED_OUTPUT),
    )


def _list_output(ref: pulumi.StackReference, name: str) -> list[str]:
    details = _sync_await(ref.get_output_details(name))
    value = details.value if details.value is not None else details.secret_value
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise LedgerError(f"stack output {name} is a {type(value).__name__}, not a list of build ids")
    return [str(build) for build in value]


def _map_output(ref: pulumi.StackReference, name: str, expected: str) -> dict:
    details = _sync_await(ref.get_output_details(name))
    value = details.value if details.value is not None else details.secret_value
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LedgerError(f"stack output {name} is a {type(value).__name__}, not {expected}")
    return dict(value)


@dataclass(frozen=True)
class LedgerArgs:
    settings: Settings
    plan: UpdatePlan  # plan_update's, made before anything was declared
    store: ModelStore
    data: TrainingData | None = None  # None: a promoting stack, which trains nothing
    registry: Registry | None = None
    source: promotion.Source | None = None  # promoting stack: the source stack's release
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)  # what every release needs first


class Ledger(pulumi.ComponentResource):
    releases: dict[str, Release]  # live releases, oldest first
    live_builds: list[str]
    retired: list[str]
    records: pulumi.Output[dict]

    def __init__(self, name: str, args: LedgerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlpipeline:ledger:Ledger", name, None, opts)
        plan = args.plan.releases
        child = pulumi.ResourceOptions(parent=self)

        records: list[Mapping[str, Any]] = list(plan.kept)
        if plan.new_build:
            records.append(self._render_new(name, args, plan.next_sequence))
        self.releases = {}
        for record in records:
            self.releases[record["build"]] = Release(
                f"{name}-release-{record['name']}",
                ReleaseArgs(record=record, depends_on=tuple(args.depends_on)),
                opts=child,
            )
        self.live_builds = list(self.releases)
        self.retired = list(plan.retired)
        self.history = {r["build"]: r for r in plan.history}
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
        settings, store, data, source = args.settings, args.store, args.data, args.source
        if source is not None:  # promotion: the source's provenance and digests, no image build
            record = source.record
            images, created_at, git_sha = record["images"], record["createdAt"], record["gitSha"]
            pull_secret = source.pull_secret_name
        else:
            images = Images(
                f"{name}-images-{settings.dns_build}",
                ImagesArgs(build=settings.build, registry=args.registry, push_to=settings.local_registry),
                opts=pulumi.ResourceOptions(parent=self),
            ).refs
            created_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
            git_sha = settings.git_sha
            pull_secret = args.registry.pull_secret_name if args.registry is not None else None
        champion = args.plan.gate_champion
        record = release_spec.render(release_spec.ReleaseInputs(
            build=settings.build,
            dns_build=settings.dns_build,
            sequence=sequence,
            created_at=created_at,
            git_sha=git_sha,
            namespace=settings.namespace,
            images=images,
            models_claim=store.claim_name,
            data_env=data.env if data else [],
            data_volumes=data.volumes if data else [],
            data_mounts=data.mounts if data else [],
            trainer_env=settings.trainer_env,
            gate_min_ndcg=settings.gate_min_ndcg,
            gate_min_lift=settings.gate_min_lift,
            wait_timeout_seconds=settings.wait_timeout_seconds,
            train_timeout_seconds=settings.train_timeout_minutes * 60,
            rollout_timeout_seconds=settings.rollout_timeout_minutes * 60,
            replicas=settings.replicas,
            resources=settings.resources,
            pull_secret=pull_secret,
            champion_folder=release_spec.model_folder(champion) if champion else None,
            champion_tolerance=settings.champion_tolerance if champion else None,
            data_location=data.location if data else _source_data(source),
        ))
        if source is not None:
            record = promotion.promoted_record(record, source.stack, settings.train_timeout_minutes * 60)
            if source.record.get(training_results.FIELD):  # trained in the source stack: the same model
                record[training_results.FIELD] = source.record[training_results.FIELD]
        return record
