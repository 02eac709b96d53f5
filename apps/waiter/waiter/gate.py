"""The quality gate: is a verified model good enough to serve?

Two kinds of check, all against metrics.json (docs/CONTRACTS.md, section 1):
- absolute floors: GATE_MIN_NDCG on model.ndcg_at_k, GATE_MIN_LIFT on lift_ndcg;
- champion/challenger: the new model's ndcg must reach the ndcg of the release that holds most
  traffic (GATE_CHAMPION_MODELFOLDER) minus GATE_CHAMPION_TOLERANCE.

A champion that cannot be read (retired and deleted, incomplete, its metrics.json failing its
checksum, measured at another k) is reported and the champion check skipped: the floors still
hold, and a deleted champion must not block every later release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import modelshare
from modelshare import COMPLETE, MANIFEST, METRICS, IntegrityError


@dataclass(frozen=True)
class Gate:
    min_ndcg: float | None = None
    min_lift: float | None = None
    champion_folder: str | None = None
    champion_tolerance: float = 0.0


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)  # empty: the gate holds
    checks: list[str] = field(default_factory=list)  # every check made, with its numbers
    notes: list[str] = field(default_factory=list)  # checks skipped, and why

    @property
    def passed(self) -> bool:
        return not self.failures


def number(doc: object, *path: str) -> float | None:
    """doc[path[0]][path[1]]... when it is a finite number, else None."""
    for key in path:
        doc = doc.get(key) if isinstance(doc, dict) else None
    if isinstance(doc, bool) or not isinstance(doc, (int, float)) or not math.isfinite(doc):
        return None
    return float(doc)


def champion_metrics(folder: str | Path) -> dict:
    """The champion's metrics.json, checked against its own manifest; IntegrityError if unusable.
    Only metrics.json is hashed: the champion's model files are not this gate's business."""
    folder = Path(folder)
    if not (folder / COMPLETE).is_file():
        raise IntegrityError(f"{folder / COMPLETE} does not exist")
    try:
        files = modelshare.read_json(folder / MANIFEST)["files"]
        entry = files[METRICS]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(
            f"{folder / MANIFEST} does not list {METRICS} ({type(exc).__name__}: {exc})"
        ) from None
    modelshare.check_files(folder, {METRICS: entry})
    try:
        return modelshare.read_json(folder / METRICS)
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{folder / METRICS} is unreadable: {exc}") from None


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
        _champion(gate, metrics, ndcg, Path(own_folder), verdict)
    return verdict


def _champion(gate: Gate, metrics: object, ndcg: float | None, own: Path, verdict: Verdict) -> None:
    assert gate.champion_folder is not None  # the caller checks
    champion = Path(gate.champion_folder)
    if champion.resolve() == own.resolve():
        verdict.notes.append("champion check skipped: the champion is this release")
        return
    try:
        champion_doc = champion_metrics(champion)
    except IntegrityError as exc:
        verdict.notes.append(f"champion check skipped: champion {champion} is unavailable: {exc}")
        return
    champion_ndcg = number(champion_doc, "model", "ndcg_at_k")
    if champion_ndcg is None:
        verdict.notes.append(f"champion check skipped: {champion / METRICS} has no numeric model.ndcg_at_k")
        return
    k, champion_k = (metrics.get("k") if isinstance(metrics, dict) else None), champion_doc.get("k")
    if k != champion_k:
        verdict.notes.append(
            f"champion check skipped: champion measured ndcg at k={champion_k}, this model at k={k}"
        )
        return
    required = champion_ndcg - gate.champion_tolerance
    if ndcg is None:
        verdict.failures.append(
            f"{METRICS} has no numeric model.ndcg_at_k, required by GATE_CHAMPION_MODELFOLDER"
        )
    elif ndcg < required:
        verdict.failures.append(
            f"model.ndcg_at_k {ndcg:.4f} < champion {champion} ndcg {champion_ndcg:.4f} "
            f"- GATE_CHAMPION_TOLERANCE {gate.champion_tolerance:.4f}"
        )
    else:
        verdict.checks.append(
            f"model.ndcg_at_k {ndcg:.4f} >= champion ndcg {champion_ndcg:.4f} "
            f"- tolerance {gate.champion_tolerance:.4f}"
        )
