"""The `traffic` and `shadow` config, checked against the live releases and turned into a plan.

Pure Python, no resources: `__main__.py` calls `plan_traffic` before declaring anything, so a
bad split fails the update before a single object changes.

    traffic   {"152": 90, "153": 10}   explicit: build -> percent; live builds not named get 0 and stay warm
              auto / {}                auto: the newest release takes 100 once Ready, the others 0
              unset                    the mode in force stays: an explicit split is carried over from
                                       the last update (output `traffic`), a new build joining it at
                                       `canaryPercent` (0: warm, no traffic) until traffic is set again;
                                       in auto mode with `canaryPercent` > 0 a new build joins the
                                       serving split at that percent too, and the split turns explicit
    shadow    {"build": "154", "percent": 10}   mirror a copy of 10% of requests to 154

So a rollback (`traffic={"152": 100}`) survives the nightly updates that follow, which set no
traffic: their builds join at 0 %, gated and warm, and nobody's decision is undone by a schedule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

AUTO, EXPLICIT = "auto", "explicit"


class TrafficError(ValueError):
    """A traffic or shadow config that cannot be applied; the message says what to fix."""


@dataclass(frozen=True)
class Shadow:
    build: str
    percent: int  # share of requests whose copy goes to the shadow; its answers are dropped


@dataclass(frozen=True)
class TrafficPlan:
    """Where requests go. `weights` names every live build, oldest first; 0 = warm, no traffic."""

    weights: Mapping[str, int]
    shadow: Shadow | None = None
    mode: str = AUTO  # explicit: the split stays until traffic is set again

    @property
    def serving(self) -> tuple[str, ...]:
        """Builds that receive requests; the router waits for these to be Ready."""
        return tuple(build for build, weight in self.weights.items() if weight > 0)

    @property
    def champion(self) -> str:
        """The build holding most traffic. On a tie the older build wins: a challenger has to
        take the lead outright before it becomes the bar that the next build is gated against."""
        return max(self.weights, key=lambda build: (self.weights[build], -self._age(build)))

    def _age(self, build: str) -> int:
        return list(self.weights).index(build)


def plan_traffic(
    traffic: Mapping[str, Any] | str | None,
    live_builds: Sequence[str],
    shadow: Mapping[str, Any] | str | None = None,
    previous: Mapping[str, Any] | None = None,
    canary_percent: int = 0,
) -> TrafficPlan:
    """Validate `traffic` and `shadow` against the live builds (oldest first) and return the plan.
    `previous` is the last update's `traffic` output: with `traffic` unset (None or ""), an explicit
    split it holds stays in force, a new build joining at `canary_percent`.

    Raises TrafficError listing every problem found, so one failed update shows them all.
    """
    live = [str(build) for build in live_builds]
    if not live:
        raise TrafficError("there is no live release to route traffic to")
    mirror = _parse_shadow(shadow, live)
    if traffic is None or traffic == "":
        carried = _explicit_weights(previous)
        if carried is None:
            carried = _auto_canary_base(previous, live, canary_percent)
        if carried is None:
            return TrafficPlan(_newest_takes_all(live, mirror), mirror)
        requested, source = _join(carried, live, canary_percent), "the split in force"
    elif isinstance(traffic, str) and traffic.strip() == AUTO:
        return TrafficPlan(_newest_takes_all(live, mirror), mirror)
    else:
        requested = _parse_mapping(traffic, "traffic", 'e.g. {"152": 90, "153": 10}, or auto')
        source = "traffic"
        if not requested:
            return TrafficPlan(_newest_takes_all(live, mirror), mirror)

    problems = []
    weights = {build: 0 for build in live}
    for build, weight in requested.items():
        build = str(build)
        if isinstance(weight, bool) or not isinstance(weight, int):
            problems.append(f"weight of build {build} must be a whole percent, got {weight!r}")
            continue
        if not 0 <= weight <= 100:
            problems.append(f"weight of build {build} is {weight}; a weight is between 0 and 100")
        if build not in weights:
            problems.append(f"build {build} is not live (live builds: {', '.join(live)})")
            continue
        weights[build] = weight
    if not problems and sum(weights.values()) != 100:
        problems.append(f"weights sum to {sum(requested.values())}, not 100")
    if mirror and not problems and weights[mirror.build] > 0:
        problems.append(
            f"shadow build {mirror.build} also has {weights[mirror.build]}% of traffic; "
            "a shadow only receives mirrored copies, give it 0"
        )
    if problems:
        raise TrafficError(f"{source} {json.dumps(requested)} rejected: " + "; ".join(problems))
    return TrafficPlan(weights, mirror, EXPLICIT)


def _explicit_weights(previous: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The split of the last update when it was explicit, else None (auto, or no update yet)."""
    if not isinstance(previous, Mapping) or previous.get("mode") != EXPLICIT:
        return None
    weights = previous.get("weights")
    if not isinstance(weights, Mapping):
        raise TrafficError(f"the previous traffic output is explicit but has no weights map: {previous!r}")
    return {str(b): _whole(w) for b, w in weights.items()}


def _auto_canary_base(
    previous: Mapping[str, Any] | None, live: list[str], canary_percent: int
) -> dict[str, Any] | None:
    """In auto mode with canary_percent > 0: the last update's split over the builds still live, when
    it still adds up to 100 and a new build has appeared since, for the new build to join as a
    canary (the split turns explicit, for the canary analysis to promote or roll back). None
    otherwise, and the newest takes all: a first release, or no canary configured."""
    if not canary_percent or not isinstance(previous, Mapping):
        return None
    weights = previous.get("weights")
    if not isinstance(weights, Mapping):
        return None
    held = {str(b): _whole(w) for b, w in weights.items() if str(b) in live}
    weights_ok = all(isinstance(w, int) for w in held.values()) and sum(held.values()) == 100
    if not weights_ok or all(build in held for build in live):
        return None
    return held


def _whole(weight: Any) -> Any:
    """A weight read back from a stack output: JSON numbers arrive as floats (100.0)."""
    return int(weight) if isinstance(weight, float) and weight.is_integer() else weight


def _join(carried: Mapping[str, Any], live: list[str], canary_percent: int) -> dict[str, Any]:
    """The carried split over today's live builds: a build not in it (the new one) gets
    `canary_percent`, taken from the others in proportion (the rest of the rounding from the one
    holding most); a build gone from the live set keeps its weight, so that checking rejects it."""
    weights = {build: weight for build, weight in carried.items() if build in live or weight}
    new = [build for build in live if build not in carried]
    if not new or not canary_percent or not all(isinstance(w, int) for w in weights.values()):
        return {**weights, **{build: 0 for build in new}}
    kept = {build: weight * (100 - canary_percent) // 100 for build, weight in weights.items()}
    largest = max(weights, key=lambda build: weights[build])
    kept[largest] += 100 - canary_percent - sum(kept.values())
    return {**kept, **{build: 0 for build in new[:-1]}, new[-1]: canary_percent}


def _newest_takes_all(live: list[str], mirror: Shadow | None) -> dict[str, int]:
    candidates = [build for build in live if not mirror or build != mirror.build]
    if not candidates:
        raise TrafficError(f"the only live build, {live[-1]}, is the shadow: nothing can serve traffic")
    return {build: 100 if build == candidates[-1] else 0 for build in live}


def _parse_shadow(raw: Mapping[str, Any] | str | None, live: list[str]) -> Shadow | None:
    spec = _parse_mapping(raw, "shadow", 'e.g. {"build": "154", "percent": 10}')
    if not spec:
        return None
    unknown = sorted(set(spec) - {"build", "percent"})
    build, percent = str(spec.get("build", "")), spec.get("percent", 100)
    problems = []
    if unknown:
        problems.append(f"unknown keys {unknown} (allowed: build, percent)")
    if not build:
        problems.append("'build' is missing")
    elif build not in live:
        problems.append(f"build {build} is not live (live builds: {', '.join(live)})")
    if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
        problems.append(f"percent must be a whole number from 1 to 100, got {percent!r}")
    if problems:
        raise TrafficError(f"shadow {json.dumps(spec)} rejected: " + "; ".join(problems))
    return Shadow(build, percent)


def _parse_mapping(raw: Mapping[str, Any] | str | None, key: str, example: str) -> dict[str, Any]:
    """Config objects arrive parsed (Pulumi.<stack>.yaml) or as JSON text (--config key='{...}')."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TrafficError(f"{key} is not valid JSON ({exc.msg}); {example}") from None
    if not isinstance(raw, Mapping):
        raise TrafficError(f"{key} must be a JSON object, {example}; got {json.dumps(raw)}")
    return dict(raw)
