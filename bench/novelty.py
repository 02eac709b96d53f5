"""Novelty (trainer.novelty): does the linear autoencoder of user histories separate real users it
never saw from users unlike the data, on real data? MovieLens 100k and 1M (bench.trainer_runs's
copies), users split 80/20 at random: the basis is fitted on the 80 %, then the held-out real
users are compared with synthetic users of the same history lengths, whose items are drawn
  - uniformly from the catalogue,
  - by the items' popularity in the fitted part (only the co-occurrence structure is wrong: the
    hard case),
  - half from the user's real history and half uniformly (a partly odd user).
Figures: AUC (chance that a synthetic user scores above a real one; 0.5 is no separation) and
the share above the fitted users' 95th percentile, the threshold the alert rule and the canary
analysis use (for the held-out real users this should stay near 5 %).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from trainer import novelty

SEED = 13


def binary(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sparse.csr_matrix:
    matrix = sparse.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(np.r_[negatives, positives], kind="stable"), kind="stable") + 1.0
    return (ranks[len(negatives) :].sum() - len(positives) * (len(positives) + 1) / 2) / (
        len(negatives) * len(positives)
    )


def load(folder) -> sparse.csr_matrix:
    import pyarrow.csv as pa_csv

    table = pa_csv.read_csv(folder / "ratings.csv")
    _, users = np.unique(table["user_id"].to_numpy(zero_copy_only=False), return_inverse=True)
    _, items = np.unique(table["item_id"].to_numpy(zero_copy_only=False), return_inverse=True)
    return binary(users, items, (users.max() + 1, items.max() + 1))


def separation(matrix: sparse.csr_matrix) -> dict:
    rng = np.random.default_rng(SEED)
    order = rng.permutation(matrix.shape[0])
    cut = int(0.8 * len(order))
    fitted, held_out = matrix[order[:cut]], matrix[order[cut:]]
    basis = novelty.item_basis(fitted, seed=SEED)
    threshold = np.quantile(novelty.reconstruction_error(fitted, basis), 0.95)
    real = novelty.reconstruction_error(held_out, basis)

    counts = np.diff(held_out.indptr)
    rows = np.repeat(np.arange(len(counts)), counts)
    n_items = matrix.shape[1]
    popularity = np.asarray(fitted.sum(axis=0)).ravel()
    popularity = popularity / popularity.sum()
    half = rng.random(len(rows)) < 0.5
    mixed_items = np.where(half, held_out.indices, rng.integers(0, n_items, len(rows)))
    synthetic = {
        "uniform items": binary(rows, rng.integers(0, n_items, len(rows)), held_out.shape),
        "popularity-matched items": binary(
            rows, rng.choice(n_items, len(rows), p=popularity), held_out.shape
        ),
        "half real, half uniform": binary(rows, mixed_items, held_out.shape),
    }
    result = {
        "users": matrix.shape[0],
        "items": n_items,
        "rank": basis.shape[1],
        "held_out": len(real),
        "real_above": float(np.mean(real > threshold)),
        "kinds": {},
    }
    for kind, users in synthetic.items():
        errors = novelty.reconstruction_error(users, basis)
        result["kinds"][kind] = {"auc": auc(real, errors), "above": float(np.mean(errors > threshold))}
    return result


def main() -> str:
    from bench.trainer_runs import ensure_movielens

    lines = [
        "| data | users x items | synthetic users | AUC | synthetic above p95 | real held-out above p95 |",
        "|---|---|---|---:|---:|---:|",
    ]
    worst = None
    for name, title in (("ml-100k", "MovieLens 100k"), ("ml-1m", "MovieLens 1M")):
        folder = ensure_movielens(name)
        if folder is None:
            lines.append(f"| {title} | could not be downloaded | | | | |")
            continue
        r = separation(load(folder))
        for kind, figures in r["kinds"].items():
            worst = figures["auc"] if worst is None else min(worst, figures["auc"])
            lines.append(
                f"| {title} | {r['users']:,} x {r['items']:,} | {kind} | {figures['auc']:.3f} | "
                f"{figures['above']:.1%} | {r['real_above']:.1%} |"
            )
    lines += [
        "",
        f"Rank {novelty.RANK} basis fitted on a random 80 % of the users; the rest are the held-out real "
        "users, each paired with synthetic users of the same history length. "
        + (f"Worst AUC over the cases: **{worst:.3f}**." if worst is not None else "No data could be read."),
    ]
    return "\n".join(lines)
