"""What this update does, decided from the stack's previous outputs before anything is declared.

    previous outputs (`releases`, `retiredReleases`, `traffic`, read through a StackReference to
    the stack itself) + settings  ->  UpdatePlan:
        releases   which earlier releases stay (records, verbatim), which retire, whether the
                   requested build is new (render it) or comes back from the ledger or its history
        traffic    the weights of the live builds, the shadow (components/traffic.py)
        champion   the release a new build is gated against (champion/challenger)

Retention keeps the build being deployed, the newest `keepReleases - 1` others, and never retires
a release that the requested `traffic` sends requests to, the `shadow`, or the previous champion
(the build that held most traffic after the last update, from the stack output `traffic`): the
warm release a rollback moves back to. Retired records move to the stack output
`retiredReleases` (the newest HISTORY_SIZE), so `pulumi up --config build=<retired build>`
re-declares that release verbatim from its record: same digests, same model folder (its Job finds
the folder complete and is a no-op).

Every check (previous records, traffic, shadow, router kind) runs here, so a bad config fails the
update with nothing changed. Pure Python but for `read_previous`; components/ledger.py declares
what the plan says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pulumi

from components import feedback_key, release_spec
from components.build import Build
from components.release import RecordError, check_objects
from components.release_spec import ReleaseRecord
from components.router import check_router
from components.sdk_internals import stack_output_now
from components.settings import Settings
from components.traffic import EXPLICIT, TrafficPlan, plan_traffic

OUTPUT = "releases"
HISTORY_OUTPUT = "retiredReleases"
TRAFFIC_OUTPUT = "traffic"
DEPLOYED_OUTPUT = (
    "deployedBuilds"  # every build id ever deployed on the stack, in order: ids are never re-used
)
HISTORY_SIZE = 20  # retired records kept for a verbatim re-deploy
RECORD_FIELDS = (
    "build",
    "name",
    "sequence",
    "createdAt",
    "gitSha",
    "modelFolder",
    "images",
    "service",
    "objects",
)


class LedgerError(ValueError):
    """The previous ledger cannot be carried forward; the message names the build and the problem."""


@dataclass(frozen=True)
class LedgerPlan:
    kept: tuple[ReleaseRecord, ...]  # records of earlier releases that stay, oldest first
    new_build: bool  # the requested build is in neither the ledger nor its history: render it
    next_sequence: int  # the new build's sequence number
    retired: tuple[str, ...]  # builds dropped from the ledger, oldest first
    history: tuple[ReleaseRecord, ...] = ()  # retired records to export, oldest first
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
        previous.releases,
        settings.build,
        settings.keep_releases,
        protected=protected,
        history=previous.history,
        deployed=previous.deployed,
    )
    keyed = settings.feedback_key is not None
    feedback_key.check_key_kept(releases.kept, keyed)
    keyless = feedback_key.without_key(releases.kept) if keyed else []
    if keyless and releases.new_build:
        pulumi.log.warn(
            f"build {settings.build.id} mounts feedbackKey, live release(s) {', '.join(keyless)} do not: "
            "until they retire, feedback that reaches a pod of the other kind than the one that served "
            "the list is refused (404); send feedback pinned to the build that served the list "
            "(header x-model-build; docs/CONTRACTS.md, section 5)"
        )
    live = releases.live_builds(settings.build.id)
    traffic = plan_traffic(settings.traffic, live, settings.shadow, previous.traffic, settings.canary_percent)
    check_router(settings.router, traffic, settings.gateway, settings.hostnames)
    champion = previous.champion
    gate = (
        champion
        if settings.champion_tolerance is not None and champion in live and champion != settings.build.id
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


def check_record(build: str, record: Any) -> ReleaseRecord:
    if not isinstance(record, Mapping):
        raise LedgerError(f"release {build}: record is a {type(record).__name__}, not a map")
    record = normalize(record)
    missing = [name for name in RECORD_FIELDS if name not in record]
    if missing:
        raise LedgerError(f"release {build}: record lacks {', '.join(missing)}")
    if record.get("schema") != release_spec.SCHEMA:
        raise LedgerError(
            f"release {build}: record schema {record.get('schema')!r}, "
            f"this program reads schema {release_spec.SCHEMA}"
        )
    if record["build"] != build:
        raise LedgerError(f"release {build}: record is for build {record['build']!r}")
    if not isinstance(record["sequence"], int) or record["sequence"] < 1:
        raise LedgerError(
            f"release {build}: sequence must be a positive whole number, got {record['sequence']!r}"
        )
    try:
        check_objects(record)
    except RecordError as exc:
        raise LedgerError(str(exc)) from None
    return cast(ReleaseRecord, record)


def plan_releases(
    previous: Mapping[str, Any] | None,
    new: Build,
    keep: int,
    protected: frozenset[str] | set[str] = frozenset(),
    history: Mapping[str, Any] | None = None,
    deployed: Sequence[str] = (),
) -> LedgerPlan:
    """Which releases stay. The requested build always stays; of the others, the newest keep-1
    and every protected one. A requested build found only in the history comes back verbatim; one
    deployed before whose record is gone is refused: a build id names one release forever, and
    rendering it again from today's code would pair new images with the model its first Job left."""
    build = new.id
    records = [check_record(str(b), r) for b, r in (previous or {}).items()]
    records.sort(key=lambda r: r["sequence"])
    live_names = {r["build"] for r in records}
    retired_records = {str(b): r for b, r in (history or {}).items() if str(b) not in live_names}
    sequences = [r["sequence"] for r in records]
    if len(set(sequences)) != len(sequences):
        raise LedgerError(f"releases {[r['build'] for r in records]} do not have distinct sequence numbers")
    clash = [r["build"] for r in records if r["name"] == new.dns and r["build"] != build]
    if clash:
        raise LedgerError(
            f"build {build} and live release {clash[0]} share the resource name {new.dns}; "
            f"use another build id (names are lowercase, '.' and '_' become '-')"
        )
    current = next((r for r in records if r["build"] == build), None)
    if current is None and build in retired_records:
        current = check_record(build, retired_records.pop(build))
    # Outputs of older code have no list: every build they still name was deployed.
    known_builds = list(
        dict.fromkeys(
            [*(str(b) for b in deployed), *(str(b) for b in (history or {})), *(r["build"] for r in records)]
        )
    )
    if current is None and build in known_builds:
        raise LedgerError(
            f"build {build} was deployed on this stack before and its record is no longer kept "
            f"(retiredReleases holds the newest {HISTORY_SIZE} retired): a build id is one release, never "
            "rendered twice; deploy under a new build id"
        )
    others = [r for r in records if r is not current]
    newest = others[max(0, len(others) - (keep - 1)) :] if keep > 1 else []
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
    value = stack_output_now(ref, name)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise LedgerError(f"stack output {name} is a {type(value).__name__}, not a list of build ids")
    return [str(build) for build in value]


def _map_output(ref: pulumi.StackReference, name: str, expected: str) -> dict:
    value = stack_output_now(ref, name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LedgerError(f"stack output {name} is a {type(value).__name__}, not {expected}")
    return dict(value)
