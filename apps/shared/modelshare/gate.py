"""The quality gate: is a verified model good enough to serve? Decided by the trainer at the end of
the training Job (so a failing gate fails the Job, and `pulumi up`, at once) and checked again by the
waiter before the scorer may start; both read the same GATE_* variables and metrics.json.

- absolute floors: GATE_MIN_NDCG on model.ndcg_at_k, GATE_MIN_LIFT on lift_ndcg;
- champion/challenger (GATE_CHAMPION_MODELFOLDER, the model of the release holding most traffic):
  the trainer scored the champion's model on this build's own test holdout beside the new model
  (metrics.json ``champion``). The gate holds when the one-sided 95 % lower bound of the paired
  per-user NDCG gain is at least -GATE_CHAMPION_TOLERANCE: not worse beyond the tolerance, with
  that confidence. Comparing each model's NDCG on its own day's holdout would let an easy or hard
  split decide instead of the models.

A champion that is named but cannot be compared (missing, not verifying, a model format that cannot
be read, too few users to measure, or a comparison made against another model than the one in the
folder now) fails the gate with the reason: a comparison that was not made is never a pass. To
release without it, leave `championTolerance` empty for that update.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from modelshare.config import ConfigError, env_float
from modelshare.layout import COMPLETE, METRICS
from modelshare.manifest import model_sha256

CHAMPION = "champion"  # the metrics.json section of the paired comparison
DRIFT = "drift"  # the metrics.json section of the data drift against the champion's data
ONE_SIDED_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Gate:
    min_ndcg: float | None = None
    min_lift: float | None = None
    champion_folder: str | None = None
    champion_tolerance: float = 0.0

    @classmethod
    def from_env(cls) -> Gate:
        champion = os.environ.get("GATE_CHAMPION_MODELFOLDER", "").strip() or None
        if champion is not None and not os.path.isabs(champion):
            raise ConfigError(
                f"environment variable GATE_CHAMPION_MODELFOLDER must be an absolute path, got {champion!r}"
            )
        return cls(
            min_ndcg=_ratio("GATE_MIN_NDCG"),
            min_lift=env_float("GATE_MIN_LIFT", None, minimum=0.0),
            champion_folder=champion,
            champion_tolerance=_ratio("GATE_CHAMPION_TOLERANCE") or 0.0,
        )

    def champion_applies(self, own_folder: str | Path) -> bool:
        """A release is not its own challenger."""
        return (
            self.champion_folder is not None
            and Path(self.champion_folder).resolve() != Path(own_folder).resolve()
        )


def _ratio(name: str) -> float | None:
    value = env_float(name, None, minimum=0.0)
    if value is not None and value > 1:
        raise ConfigError(f"environment variable {name} must be a number between 0 and 1, got {value}")
    return value


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)  # empty: the gate holds
    checks: list[str] = field(default_factory=list)  # every check made, with its numbers
    notes: list[str] = field(default_factory=list)  # checks skipped, and why

    @property
    def passed(self) -> bool:
        return not self.failures


def number(doc: object, *path: str | int) -> float | None:
    """doc[path[0]][path[1]]... when it is a finite number, else None."""
    for key in path:
        if isinstance(key, int):
            doc = doc[key] if isinstance(doc, list) and -len(doc) <= key < len(doc) else None
        else:
            doc = doc.get(key) if isinstance(doc, dict) else None
    if isinstance(doc, bool) or not isinstance(doc, (int, float)) or not math.isfinite(doc):
        return None
    return float(doc)


def evaluate(gate: Gate, metrics: object, own_folder: str | Path) -> Verdict:
    verdict = Verdict()
    ndcg, lift = number(metrics, "model", "ndcg_at_k"), number(metrics, "lift_ndcg")

    def floor(name: str, value: float | None, minimum: float | None, variable: str) -> None:
        if minimum is None:
            return
        if value is None:
            verdict.failures.append(f"{METRICS} has no numeric {name}, required by {variable}")
        elif value < minimum:
            verdict.failures.append(f"{name} {value:.4f} < {variable} {minimum:.4f}")
        else:
            verdict.checks.append(f"{name} {value:.4f} >= {variable} {minimum:.4f}")

    floor("model.ndcg_at_k", ndcg, gate.min_ndcg, "GATE_MIN_NDCG")
    floor("lift_ndcg", lift, gate.min_lift, "GATE_MIN_LIFT")
    if gate.champion_folder is not None:
        if gate.champion_applies(own_folder):
            _champion(gate, metrics, verdict)
        else:
            verdict.notes.append("champion check skipped: the champion is this release")
    _drift(metrics, verdict)
    return verdict


def _drift(metrics: object, verdict: Verdict) -> None:
    """The trainer measured the data drift against the champion's data with its DRIFT_* thresholds
    and recorded what fails (metrics.json ``drift``): the waiter holds a release to the same decision."""
    drift = metrics.get(DRIFT) if isinstance(metrics, dict) else None
    if not isinstance(drift, dict):
        return
    failures = [str(f) for f in drift.get("failures") or []]
    verdict.failures += failures
    verdict.notes += [str(w) for w in drift.get("warnings") or [] if str(w) not in failures]


def _champion(gate: Gate, metrics: object, verdict: Verdict) -> None:
    assert gate.champion_folder is not None  # the caller checks
    folder = Path(gate.champion_folder)
    paired = metrics.get(CHAMPION) if isinstance(metrics, dict) else None
    if not isinstance(paired, dict):
        verdict.failures.append(
            f"{METRICS} has no paired comparison with the champion {folder} (GATE_CHAMPION_MODELFOLDER): "
            "the trainer makes it when the Job names the champion"
        )
        return
    if paired.get("error"):
        verdict.failures.append(f"champion {folder} could not be compared: {paired['error']}")
        return
    try:
        if not (folder / COMPLETE).is_file():
            raise OSError(f"{folder / COMPLETE} does not exist")
        current = model_sha256(folder)
    except OSError as exc:
        verdict.failures.append(f"champion {folder} is unavailable: {exc}")
        return
    if paired.get("model_sha256") != current:
        verdict.failures.append(
            f"{METRICS} compares with model {paired.get('model_sha256')} (build {paired.get('build')}), but "
            "the "
            f"champion {folder} is model {current}: the comparison is not with this champion"
        )
        return
    gain, lower = number(paired, "ndcg_gain", "gain"), number(paired, "ndcg_gain", "interval", 0)
    if gain is None or lower is None:
        verdict.failures.append(f"{METRICS} {CHAMPION}.ndcg_gain has no numeric gain and interval")
        return
    described = (
        f"paired NDCG gain over champion build {paired.get('build')} on {paired.get('users')} test users "
        f"{gain:+.4f} (one-sided {ONE_SIDED_CONFIDENCE:.0%} lower bound {lower:+.4f})"
    )
    if lower < -gate.champion_tolerance:
        verdict.failures.append(f"{described} < -GATE_CHAMPION_TOLERANCE {gate.champion_tolerance:.4f}")
    else:
        verdict.checks.append(f"{described} >= -GATE_CHAMPION_TOLERANCE {gate.champion_tolerance:.4f}")
