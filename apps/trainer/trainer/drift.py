"""Data drift between builds: this build's training data against the champion's, from a compact
profile each build writes beside its model (model/data_profile.json), so no old CSV is read again.

The profile holds the volume, histograms (log2 bins) of user activity (distinct items per user),
item popularity (distinct users per item) and interaction weights, and the TOP_ITEMS most popular
items with their counts. The report (model/drift.json, summarized in metrics.json ``drift``) puts
figures on what changed since the champion was trained:

  item_popularity_psi population stability index of the shares of interactions over the champion's
                      popularity groups (its top items in ten runs of equal mass, then the rest)
  user_activity_psi   population stability index of the user activity histograms
  weight_psi          population stability index of the weight histograms
  new_user_share      share of this build's interactions by users the champion was not trained on
  new_item_share      share of this build's interactions on items the champion was not trained on
  volume_change       rows used now / the champion's - 1 (-0.5: halved); thresholds apply to |x|

Each figure at or above its DRIFT_WARN_* threshold is a warning (in the report and the model card),
at or above its DRIFT_FAIL_* threshold a failure of the quality gate (modelshare.gate reads the
failures from metrics.json, so the waiter refuses the folder too). PSI below 0.1 is the usual "no
real change", above 0.25 "a shift worth acting on" (tests/apps/trainer/test_drift.py measures the
figures on two halves of one sample and on shifted copies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

import modelshare
from modelshare import MODEL_DIR, ConfigError, env_float, layout
from modelshare.drift_limits import FIGURES  # figure -> (warn default, what it measures)

PROFILE = "data_profile.json"  # under model/
REPORT = "drift.json"  # under model/
SCHEMA = 1
TOP_ITEMS = 1000  # the card names it: "the 1,000 most popular items"
# Histogram edges: counts 1, 2-3, 4-7, ... (activity, popularity) and weights (0, 1/16], ..., > 2^20.
COUNT_EDGES = [2.0**n for n in range(0, 25)] + [math.inf]
WEIGHT_EDGES = [0.0] + [2.0**n for n in range(-4, 21)] + [math.inf]
PSI_FLOOR = 1e-4  # a bin empty on one side would make PSI infinite
POPULARITY_GROUPS = 10


class DriftError(RuntimeError):
    """The champion's profile cannot be read; the report says why instead of figures."""


@dataclass(frozen=True)
class Thresholds:
    warn: dict[str, float]  # figure -> threshold; a figure absent is never warned about
    fail: dict[str, float]  # figure -> threshold; empty: drift never fails the gate

    @classmethod
    def from_env(cls) -> Thresholds:
        # One call per name, so that tests/test_docs.py finds each in docs/CONTRACTS.md.
        warn = {
            "item_popularity_psi": _limit(
                "DRIFT_WARN_ITEM_POPULARITY_PSI", FIGURES["item_popularity_psi"][0]
            ),
            "user_activity_psi": _limit("DRIFT_WARN_USER_ACTIVITY_PSI", FIGURES["user_activity_psi"][0]),
            "weight_psi": _limit("DRIFT_WARN_WEIGHT_PSI", FIGURES["weight_psi"][0]),
            "new_user_share": _limit("DRIFT_WARN_NEW_USER_SHARE", FIGURES["new_user_share"][0]),
            "new_item_share": _limit("DRIFT_WARN_NEW_ITEM_SHARE", FIGURES["new_item_share"][0]),
            "volume_change": _limit("DRIFT_WARN_VOLUME_CHANGE", FIGURES["volume_change"][0]),
        }
        fail = {
            "item_popularity_psi": _limit("DRIFT_FAIL_ITEM_POPULARITY_PSI", None),
            "user_activity_psi": _limit("DRIFT_FAIL_USER_ACTIVITY_PSI", None),
            "weight_psi": _limit("DRIFT_FAIL_WEIGHT_PSI", None),
            "new_user_share": _limit("DRIFT_FAIL_NEW_USER_SHARE", None),
            "new_item_share": _limit("DRIFT_FAIL_NEW_ITEM_SHARE", None),
            "volume_change": _limit("DRIFT_FAIL_VOLUME_CHANGE", None),
        }
        return cls(
            {k: v for k, v in warn.items() if v is not None}, {k: v for k, v in fail.items() if v is not None}
        )


def _limit(name: str, default: float | None) -> float | None:
    value = env_float(name, default, minimum=0.0)
    if value is not None and math.isinf(value):
        raise ConfigError(f"environment variable {name} must be a finite number, got {value}")
    return value


def variable(kind: str, figure: str) -> str:
    """DRIFT_WARN_ITEM_POPULARITY_PSI for ("warn", "item_popularity_psi"): the name a message cites."""
    return f"DRIFT_{kind.upper()}_{figure.upper()}"


# ---- the profile of one build's data ------------------------------------------------------------


def _histogram(values: np.ndarray, edges: list[float]) -> list[int]:
    """Counts per bin [edges[i], edges[i+1])."""
    counts, _ = np.histogram(values, bins=np.asarray(edges))
    return [int(c) for c in counts]


def profile(matrix: sparse.csr_matrix, user_ids: list[str], item_ids: list[str], report: dict) -> dict:
    """The compact description of a build's training data that a later build compares with."""
    matrix = matrix.tocsr()
    activity = np.diff(matrix.indptr)
    popularity = np.bincount(matrix.indices, minlength=matrix.shape[1])
    top = np.argsort(-popularity, kind="stable")[:TOP_ITEMS]
    weights = matrix.data.astype(np.float64)
    return {
        "schema": SCHEMA,
        "n_users": int(matrix.shape[0]),
        "n_items": int(matrix.shape[1]),
        "n_interactions": int(matrix.nnz),
        "rows_used": int(report.get("rows_used", matrix.nnz)),
        "weight_columns": list(report.get("weight_columns", [])),
        "total_weight": round(float(weights.sum()), 3),
        "count_edges": COUNT_EDGES[:-1],
        "user_activity": _histogram(activity, COUNT_EDGES),
        "user_activity_quantiles": _quantiles(activity),
        "item_popularity": _histogram(popularity, COUNT_EDGES),
        "item_popularity_quantiles": _quantiles(popularity),
        "weight_edges": WEIGHT_EDGES[:-1],
        "weights": _histogram(weights, WEIGHT_EDGES),
        "weight_quantiles": _quantiles(weights),
        # [item id, distinct users], most popular first; their counts' share of n_interactions
        "top_items": [[item_ids[i], int(popularity[i])] for i in top],
        "top_items_share": round(float(popularity[top].sum()) / max(1, matrix.nnz), 6),
    }


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {}
    return {q: round(float(np.quantile(values, float(q))), 4) for q in ("0.1", "0.5", "0.9", "0.99")}


# ---- divergences ----------------------------------------------------------------------------------


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index of two histograms on the same bins: sum (a - e) ln(a / e)."""
    e, a = np.asarray(expected, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if e.sum() == 0 or a.sum() == 0:
        return 0.0 if e.sum() == a.sum() else math.inf
    e, a = np.maximum(e / e.sum(), PSI_FLOOR), np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def popularity_psi(theirs: dict, counts: dict[str, int], total: int) -> float:
    """PSI of the interaction shares over the champion's popularity groups: its top items cut into
    POPULARITY_GROUPS runs of about equal mass, most popular first, and one group for every other
    item. Grouping by the champion's ranks makes a new favourite or a reversed ranking move mass
    between groups, while the sampling noise of thousands of thin items averages out inside them."""
    top = theirs["top_items"]
    reference = np.zeros(POPULARITY_GROUPS + 1)
    actual = np.zeros(POPULARITY_GROUPS + 1)
    mass = sum(c for _, c in top)
    before = 0
    for item, count in top:
        group = min(POPULARITY_GROUPS - 1, int(POPULARITY_GROUPS * before / mass)) if mass else 0
        before += count
        reference[group] += count
        actual[group] += counts.get(item, 0)
    reference[-1] = max(0, theirs["n_interactions"] - reference[:-1].sum())
    actual[-1] = max(0, total - actual[:-1].sum())
    return psi(reference.tolist(), actual.tolist())


# ---- the report -------------------------------------------------------------------------------------


def champion_profile(folder: str | Path) -> tuple[dict, set[str], set[str]]:
    """The champion's profile and the users and items it was trained on (its model's id lists),
    from a folder the champion comparison verified."""
    model_dir = Path(folder) / MODEL_DIR
    try:
        doc = modelshare.read_json(model_dir / PROFILE)
        users = modelshare.read_json(model_dir / layout.USER_IDS)
        items = modelshare.read_json(model_dir / layout.ITEM_IDS)
    except FileNotFoundError as exc:
        raise DriftError(
            f"the champion has no {Path(exc.filename).name} (a release made before data profiles "
            "were written has none)"
        ) from None
    except (OSError, ValueError) as exc:
        raise DriftError(f"the champion's profile cannot be read: {exc}") from None
    if (
        not isinstance(doc, dict)
        or doc.get("schema") != SCHEMA
        or not isinstance(users, list)
        or not isinstance(items, list)
    ):
        raise DriftError(f"the champion's {PROFILE} is not a schema {SCHEMA} profile")
    return doc, {str(u) for u in users}, {str(i) for i in items}


def compare(
    ours: dict,
    theirs: dict,
    matrix: sparse.csr_matrix,
    user_ids: list[str],
    item_ids: list[str],
    known_users: set[str],
    known_items: set[str],
) -> dict:
    """The figures of this build's data against the champion's (its profile and id lists)."""
    matrix = matrix.tocsr()
    per_user = np.diff(matrix.indptr)
    per_item = np.bincount(matrix.indices, minlength=matrix.shape[1])
    new_users = np.array([uid not in known_users for uid in user_ids], dtype=bool)
    new_items = np.array([iid not in known_items for iid in item_ids], dtype=bool)
    total = max(1, matrix.nnz)
    figures = {
        "item_popularity_psi": popularity_psi(theirs, dict(zip(item_ids, per_item.tolist())), matrix.nnz),
        "user_activity_psi": psi(theirs["user_activity"], ours["user_activity"]),
        "weight_psi": psi(theirs["weights"], ours["weights"]),
        "new_user_share": float(per_user[new_users].sum()) / total,
        "new_item_share": float(per_item[new_items].sum()) / total,
        "volume_change": ours["rows_used"] / theirs["rows_used"] - 1 if theirs["rows_used"] else 0.0,
    }
    return {
        "figures": {name: round(value, 6) for name, value in figures.items()},
        "counts": {
            "users": len(user_ids),
            "new_users": int(new_users.sum()),
            "champion_users": len(known_users),
            "items": len(item_ids),
            "new_items": int(new_items.sum()),
            "champion_items": len(known_items),
            "interactions": int(matrix.nnz),
            "champion_interactions": int(theirs["n_interactions"]),
        },
    }


def judge(figures: dict[str, float], thresholds: Thresholds) -> tuple[list[str], list[str]]:
    """(warnings, failures): a message per figure at or above its threshold (a failing figure is
    not warned about as well)."""
    found: dict[str, list[str]] = {"warn": [], "fail": []}
    for kind, limits in (("fail", thresholds.fail), ("warn", thresholds.warn)):
        for name, limit in limits.items():
            value = figures.get(name)
            if value is None or (
                kind == "warn" and name in thresholds.fail and magnitude(name, value) >= thresholds.fail[name]
            ):
                continue
            if magnitude(name, value) >= limit:
                shown = f"{value:+.4f}" if name == "volume_change" else f"{value:.4f}"
                found[kind].append(
                    f"data drift: {name} {shown} ({FIGURES[name][1]}) >= {variable(kind, name)} {limit:g}"
                )
    return found["warn"], found["fail"]


def magnitude(name: str, value: float) -> float:
    """What a threshold is compared with: |volume_change| (halved and doubled alike), else the figure."""
    return abs(value) if name == "volume_change" else value


def report(
    ours: dict,
    matrix: sparse.csr_matrix,
    user_ids: list[str],
    item_ids: list[str],
    paired: dict,
    thresholds: Thresholds,
) -> dict:
    """model/drift.json: the comparison with the champion's data, or why it could not be made.
    ``paired`` is the champion comparison (metrics.json ``champion``): its folder is read only when
    that comparison verified it (it names the champion's model_sha256)."""
    section = {
        "champion": {"build": paired.get("build"), "folder": str(paired.get("folder"))},
        "thresholds": {"warn": thresholds.warn, "fail": thresholds.fail},
    }
    try:
        if not paired.get("model_sha256"):
            raise DriftError(f"the champion's folder cannot be used: {paired.get('error')}")
        theirs, known_users, known_items = champion_profile(paired["folder"])
    except DriftError as exc:
        return {**section, "error": str(exc), "warnings": [f"data drift not measured: {exc}"], "failures": []}
    figures = compare(ours, theirs, matrix, user_ids, item_ids, known_users, known_items)
    warnings, failures = judge(figures["figures"], thresholds)
    if sorted(ours["weight_columns"]) != sorted(theirs.get("weight_columns", [])):
        warnings.append(
            f"data drift: the weight column changed from {theirs.get('weight_columns')} to "
            f"{ours['weight_columns']}"
        )
    return {
        **section,
        **figures,
        "champion_profile": {
            key: theirs.get(key)
            for key in (
                "n_users",
                "n_items",
                "n_interactions",
                "rows_used",
                "weight_columns",
                "user_activity",
                "item_popularity",
                "weights",
                "count_edges",
                "weight_edges",
                "top_items_share",
            )
        },
        "warnings": warnings,
        "failures": failures,
    }


def summary(drift: dict) -> dict:
    """What metrics.json carries of the report (the gate reads ``failures``)."""
    return {
        key: drift[key] for key in ("champion", "figures", "error", "warnings", "failures") if key in drift
    }
