"""The frontier bench's iALS reference fit: it must minimize the revisit paper's objective, since
its figures stand for "iALS with frequency-scaled regularization" in docs/BENCHMARKS.md."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from bench.frontier import _solve_side, fit_ials


def _loss(w, rows, other, alpha0, regularization, n_other):
    """Rendle et al. (2021), one user's part: observed items pulled to 1, every item's score
    weighted by alpha0 towards 0, lambda * (|I_u| + alpha0 |I|) ||w||^2 (nu = 1)."""
    scores = other @ w
    observed = scores[rows]
    return (
        np.sum((1 - observed) ** 2)
        + alpha0 * np.sum(scores**2)
        + regularization * (len(rows) + alpha0 * n_other) * w @ w
    )


def test_each_row_is_the_minimum_of_its_frequency_scaled_objective():
    rng = np.random.default_rng(0)
    matrix = sparse.random(30, 40, density=0.2, format="csr", random_state=1)
    matrix.data[:] = 1.0
    other = rng.normal(size=(40, 8))
    alpha0, regularization = 0.1, 0.05
    solved = _solve_side(matrix, other, alpha0, regularization, 40)
    for row in range(30):
        items = matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]]
        if len(items) == 0:
            assert not solved[row].any()
            continue
        best = _loss(solved[row], items, other, alpha0, regularization, 40)
        for _ in range(20):  # a strictly convex objective: every nearby point is worse
            nearby = solved[row] + 1e-3 * rng.normal(size=8)
            assert _loss(nearby, items, other, alpha0, regularization, 40) > best


def test_it_recommends_what_a_users_group_likes():
    # Two groups of 20 users, each liking its own 10 items; user 0 has not seen item 9 of its group.
    dense = np.zeros((40, 20))
    dense[:20, :10] = 1.0
    dense[20:, 10:] = 1.0
    dense[0, 9] = 0.0
    model = fit_ials(sparse.csr_matrix(dense), {"factors": 4, "alpha0": 0.1, "regularization": 0.01}, 0)
    scores = model.scores(np.array([0]))[0]
    assert scores[9] > scores[10:].max()
