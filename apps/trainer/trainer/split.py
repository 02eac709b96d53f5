"""Seeded per-user holdout: the split behind both the tuning and the reported metrics."""

from __future__ import annotations

import numpy as np
from scipy import sparse

MIN_ITEMS = 3  # a user needs this many distinct items to give some to a holdout


def nested_holdout(matrix: sparse.csr_matrix, fraction: float, seed) -> tuple[sparse.csr_matrix, ...]:
    """Split each user's distinct items at random, twice, from ONE seeded shuffle of them: for users
    with >= MIN_ITEMS items, max(1, floor(fraction * n)) go to the test set (the first items of the
    shuffled order); the same rule on the rest picks the validation set (the next ones), so
    validation is a uniform draw from the training items, never from the test set. Users with
    fewer items keep them all. Same seed, same split. Returns (train, test, fit, validation):
    train = fit + validation."""
    matrix = matrix.tocsr()
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    # row + a uniform draw in [0, 1): one sort groups by user and shuffles within each user
    order = np.argsort(rows + np.random.default_rng(seed).random(matrix.nnz))
    rank = np.empty(matrix.nnz, dtype=np.int64)  # each entry's position in its user's shuffled order
    rank[order] = np.arange(matrix.nnz) - matrix.indptr[rows[order]]
    n_test = _held_out(counts, fraction)
    n_validation = _held_out(counts - n_test, fraction)
    test = rank < n_test[rows]
    validation = ~test & (rank < (n_test + n_validation)[rows])
    return (
        _subset(matrix, ~test, counts - n_test),
        _subset(matrix, test, n_test),
        _subset(matrix, ~test & ~validation, counts - n_test - n_validation),
        _subset(matrix, validation, n_validation),
    )


def _held_out(counts: np.ndarray, fraction: float) -> np.ndarray:
    return np.where(counts >= MIN_ITEMS, np.maximum(1, np.floor(fraction * counts)), 0).astype(np.int64)


def _subset(matrix: sparse.csr_matrix, keep: np.ndarray, per_row: np.ndarray) -> sparse.csr_matrix:
    indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
    np.cumsum(per_row, out=indptr[1:])
    return sparse.csr_matrix((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)


def sample_users(relevant: sparse.csr_matrix, limit: int, seed) -> np.ndarray:
    """Users with something held out, at most ``limit`` of them (seeded sample), sorted."""
    users = np.flatnonzero(np.diff(relevant.indptr))
    if len(users) > limit:
        users = np.sort(np.random.default_rng(seed).choice(users, limit, replace=False))
    return users
