"""Top-k ranking metrics over a holdout, computed on the scores a model would serve.

Binary relevance: an item is relevant to a user when it is in the user's held-out items.
  precision@k = hits / k
  recall@k    = hits / |relevant|
  ndcg@k      = DCG / ideal DCG, gain 1/log2(rank + 1), ideal = min(k, |relevant|) hits on top
  map@k       = sum over hit ranks r of precision@r, divided by min(k, |relevant|)
Items in ``seen`` (the user's training interactions) are never ranked, as in the scorer.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import sparse

K = 10
NAMES = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k")
BATCH = 512

ScoreFn = Callable[[np.ndarray], np.ndarray]  # user indices -> dense float scores (users x items)


def top_k(scores: np.ndarray, seen: sparse.csr_matrix, k: int) -> np.ndarray:
    """Indices of the k best unseen items of each row of ``scores`` (modified in place)."""
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    scores[rows, seen.indices] = -np.inf
    k = min(k, scores.shape[1])
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1, kind="stable")
    return np.take_along_axis(best, order, axis=1)


def evaluate(
    score: ScoreFn, users: np.ndarray, seen: sparse.csr_matrix, relevant: sparse.csr_matrix, k: int = K
) -> dict[str, float]:
    """Mean of each metric over ``users`` (all of whom must have relevant items)."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discount)
    sums = dict.fromkeys(NAMES, 0.0)
    for start in range(0, len(users), BATCH):
        batch = users[start : start + BATCH]
        best = top_k(np.array(score(batch), dtype=np.float32), seen[batch], k)
        truth = relevant[batch]
        hits = np.take_along_axis(truth.toarray() > 0, best, axis=1)
        n_rel = np.diff(truth.indptr)
        n_hits = hits.sum(axis=1)
        cap = np.minimum(n_rel, best.shape[1])
        precision_at_rank = np.cumsum(hits, axis=1) / np.arange(1, best.shape[1] + 1)
        sums["precision_at_k"] += (n_hits / k).sum()
        sums["recall_at_k"] += (n_hits / n_rel).sum()
        sums["ndcg_at_k"] += ((hits * discount[: best.shape[1]]).sum(axis=1) / ideal[cap - 1]).sum()
        sums["map_at_k"] += ((precision_at_rank * hits).sum(axis=1) / cap).sum()
    return {name: round(float(total / len(users)), 6) for name, total in sums.items()}


def popularity_scores(matrix: sparse.csr_matrix) -> np.ndarray:
    """Share of users who interacted with each item: the popularity model's score."""
    counts = np.bincount(matrix.indices, minlength=matrix.shape[1])
    return (counts / max(1, matrix.shape[0])).astype(np.float32)
