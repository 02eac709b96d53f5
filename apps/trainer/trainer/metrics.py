"""Top-k ranking metrics over a holdout, computed on the scores a model would serve.

Binary relevance: an item is relevant to a user when it is in the user's held-out items.
  precision@k = hits / k
  recall@k    = hits / |relevant|
  ndcg@k      = DCG / ideal DCG, gain 1/log2(rank + 1), ideal = min(k, |relevant|) hits on top
  map@k       = sum over hit ranks r of precision@r, divided by min(k, |relevant|)
Items in ``seen`` (the user's training interactions) are never ranked, as in the scorer.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from implicit.cpu.topk import topk as implicit_topk
from scipy import sparse

K = 10
NAMES = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k")
BATCH = 512


class Ranker(Protocol):
    def top_k(self, users: np.ndarray, seen: sparse.csr_matrix, k: int) -> np.ndarray:
        """Indices of the k best items for each user, never one of the user's ``seen`` items."""


def top_k_of_scores(scores: np.ndarray, seen: sparse.csr_matrix, k: int) -> np.ndarray:
    """Best k unseen items per row of a dense score matrix (modified in place)."""
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    scores[rows, seen.indices] = -np.inf
    k = min(k, scores.shape[1])
    best = np.argpartition(scores, scores.shape[1] - k, axis=1)[:, -k:]
    order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1, kind="stable")
    return np.take_along_axis(best, order, axis=1)


def top_k_of_sparse(scores: sparse.csr_matrix, seen: sparse.csr_matrix, k: int) -> np.ndarray:
    """Best k unseen items per row among the row's stored scores; -1 pads a row with fewer.
    For item-item models, whose scores are sums of non-negative similarities: an item without a
    stored score has score 0 and could only fill the list in arbitrary order, so the ranking that
    matters is the stored one, and taking it here avoids a dense users x items matrix."""
    scores, seen = scores.tocsr(), seen.tocsr()
    best = np.full((scores.shape[0], k), -1, dtype=np.int64)
    is_seen = np.zeros(scores.shape[1], dtype=bool)  # one row's seen items at a time
    for row in range(scores.shape[0]):
        lo, hi = scores.indptr[row], scores.indptr[row + 1]
        seen_items = seen.indices[seen.indptr[row] : seen.indptr[row + 1]]
        is_seen[seen_items] = True
        keep = ~is_seen[scores.indices[lo:hi]]
        is_seen[seen_items] = False
        items, values = scores.indices[lo:hi][keep], scores.data[lo:hi][keep]
        if len(items) > k:
            top = np.argpartition(-values, k - 1)[:k]
            items, values = items[top], values[top]
        order = np.argsort(-values, kind="stable")
        best[row, : len(order)] = items[order]
    return best


def top_k_of_factors(
    users: np.ndarray, items: np.ndarray, seen: sparse.csr_matrix, k: int, threads: int
) -> np.ndarray:
    """Same ranking as top_k_of_scores(users @ items.T), by implicit's blocked, threaded top-k."""
    best, _ = implicit_topk(
        items, users, min(k, items.shape[0]), filter_query_items=seen, num_threads=threads
    )
    return best


class Popularity:
    """The baseline and cold-start model: the same ranking for everyone, seen items skipped."""

    def __init__(self, matrix: sparse.csr_matrix):
        counts = np.bincount(matrix.indices, minlength=matrix.shape[1])
        self.scores = (counts / max(1, matrix.shape[0])).astype(np.float32)  # share of users
        self.order = np.argsort(-self.scores, kind="stable")

    def top_k(self, users: np.ndarray, seen: sparse.csr_matrix, k: int) -> np.ndarray:
        return top_k_of_order(self.order, seen, k)


def top_k_of_order(order: np.ndarray, seen: sparse.csr_matrix, k: int) -> np.ndarray:
    """The first k items of one ranking of all items (most popular first) that each row has not seen."""
    depth = min(len(order), k + int(np.diff(seen.indptr).max(initial=0)))
    candidates = order[:depth]
    taken = seen[:, candidates].toarray() > 0
    first_unseen = np.argsort(taken, axis=1, kind="stable")[:, : min(k, depth)]
    return candidates[first_unseen]


def per_user(
    ranker: Ranker, users: np.ndarray, seen: sparse.csr_matrix, relevant: sparse.csr_matrix, k: int = K
) -> dict[str, np.ndarray]:
    """Each metric for each of ``users`` (all of whom must have relevant items), in their order."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discount)
    values = {name: np.empty(len(users)) for name in NAMES}
    for start in range(0, len(users), BATCH):
        batch = users[start : start + BATCH]
        rows = slice(start, start + len(batch))
        best = ranker.top_k(batch, seen[batch], k)
        truth = relevant[batch]
        hits = (truth[np.arange(len(batch))[:, None], best] > 0).toarray()
        hits &= best >= 0  # implicit marks "no item" with -1
        n_rel = np.diff(truth.indptr)
        n_hits = hits.sum(axis=1)
        cap = np.minimum(n_rel, best.shape[1])
        precision_at_rank = np.cumsum(hits, axis=1) / np.arange(1, best.shape[1] + 1)
        values["precision_at_k"][rows] = n_hits / k
        values["recall_at_k"][rows] = n_hits / n_rel
        values["ndcg_at_k"][rows] = (hits * discount[: best.shape[1]]).sum(axis=1) / ideal[cap - 1]
        values["map_at_k"][rows] = (precision_at_rank * hits).sum(axis=1) / cap
    return values


def means(values: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: round(float(value.mean()), 6) for name, value in values.items()}


def evaluate(
    ranker: Ranker, users: np.ndarray, seen: sparse.csr_matrix, relevant: sparse.csr_matrix, k: int = K
) -> dict[str, float]:
    """Mean of each metric over ``users`` (all of whom must have relevant items)."""
    return means(per_user(ranker, users, seen, relevant, k))


def paired_gain(ours: np.ndarray, baseline: np.ndarray, confidence: float = 0.95) -> dict:
    """How much ``ours`` beats ``baseline`` on the same users: the mean per-user difference, relative
    to the baseline's mean, with a two-sided Student-t interval at ``confidence``. Paired, so that how
    hard each user is cancels out: a gain whose interval excludes 0 is not an accident of the sampled
    users."""
    # Student's t quantile from scipy.special: scipy.stats (t.ppf, the same function) takes half a
    # second to import, a second and more on a busy machine, for this one number.
    from scipy.special import stdtrit

    difference = ours - baseline
    mean, base = float(difference.mean()), float(baseline.mean())
    half = 0.0
    if len(difference) > 1:
        quantile = stdtrit(len(difference) - 1, 0.5 + confidence / 2)
        half = float(quantile * difference.std(ddof=1) / np.sqrt(len(difference)))
    relative = (lambda value: round(value / base, 6)) if base else (lambda value: None)
    return {
        "gain": round(mean, 6),
        "relative": relative(mean),
        "confidence": confidence,
        "interval": [round(mean - half, 6), round(mean + half, 6)],
        "relative_interval": [relative(mean - half), relative(mean + half)],
        "users": len(difference),
    }
