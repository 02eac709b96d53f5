"""Novelty: how unlike the training data a user's history is, written beside the model so the
scorer can report, per answered user, whether the traffic looks like what the model learned from.

A linear autoencoder of the binary users x items rows (its closed form: the top RANK right
singular vectors) reconstructs what typical users do. A user's reconstruction error, the share
of the history's energy outside that subspace, is the raw score; the served novelty is its
percentile among the training users (0.97: only 3 % of them are less typical), so 0.95 means the
same thing in every release. The scorer sees only user ids, so the score of each known user is
computed here, once; users the model does not know are counted as fallbacks instead.
bench/novelty.py measures how well the raw score separates held-out real users from synthetic ones.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, sparse
from threadpoolctl import threadpool_limits

RANK = 32


def item_basis(binary: sparse.csr_matrix, rank: int = RANK, seed: int = 0) -> np.ndarray:
    """items x r orthonormal columns: the subspace the typical user histories span (the top r right
    singular vectors), by the randomized range finder of Halko, Martinsson and Tropp (2011) with
    POWER_ITERATIONS subspace iterations: ten sparse products with a block of r + OVERSAMPLE
    vectors, where ARPACK's Lanczos took one sparse product per step (1.3 s instead of 26 s on 3.3 M
    interactions of 100 k items, on a busy machine; on MovieLens 1M the served percentiles
    rank-correlate 0.998 with ARPACK's, and tests/apps/trainer/test_novelty.py checks the kept
    energy)."""
    r = min(rank, min(binary.shape) - 1)
    if r < 1:
        return np.zeros((binary.shape[1], 0))
    rows = binary.astype(np.float32).tocsr()
    columns = rows.T.tocsr()
    width = min(r + OVERSAMPLE, min(binary.shape))
    noise = np.random.default_rng(seed).standard_normal((rows.shape[0], width)).astype(np.float32)
    # The steps in between only need a well-conditioned block spanning the right subspace: one
    # Cholesky QR pass each. On 5 M rows user_novelty took 12 % less time (median of 9 interleaved
    # runs) and no served percentile moved by more than one user's rank in 120 000.
    basis = _orthonormal(columns @ noise, passes=1)
    for _ in range(POWER_ITERATIONS):  # each pass sharpens the gap between kept and dropped directions
        basis = _orthonormal(columns @ _orthonormal(rows @ basis, passes=1), passes=1)
    # The right singular vectors of rows @ basis are the eigenvectors of its small Gram matrix.
    projected = (rows @ basis).astype(np.float64)
    values, vectors = np.linalg.eigh(projected.T @ projected)
    top = vectors[:, np.argsort(-values)[:r]]
    return _orthonormal(basis.astype(np.float64) @ top).astype(np.float64)


def _orthonormal(block: np.ndarray, passes: int = 2) -> np.ndarray:
    """Orthonormal columns spanning a tall block: Cholesky QR, twice by default (CholeskyQR2: as
    accurate as Householder for blocks this well conditioned, and a few small products instead of
    numpy's qr, which took a second for 120 000 x 42)."""
    block = block.astype(np.float64)
    for _ in range(passes):
        gram = block.T @ block
        shift = 1e-12 * np.trace(gram)  # a zero column (an empty catalogue part) stays finite
        factor = np.linalg.cholesky(gram + shift * np.eye(len(gram)))
        # block = Q L^T: Q = block @ inv(L)^T, one product with a small inverse
        block = block @ linalg.solve_triangular(factor, np.eye(len(gram)), lower=True).T
    # float32 for the sparse products (float32 rows): a float64 block would make scipy copy the
    # rows as float64 for every product.
    return block.astype(np.float32)


OVERSAMPLE = 10
POWER_ITERATIONS = 4


def reconstruction_error(binary: sparse.csr_matrix, basis: np.ndarray) -> np.ndarray:
    """Per row: 1 - |x V|^2 / |x|^2, in [0, 1]; 1 for an empty row."""
    energy = np.asarray(binary.multiply(binary).sum(axis=1), dtype=np.float64).ravel()
    kept = np.square(binary @ basis).sum(axis=1) if basis.shape[1] else np.zeros(binary.shape[0])
    error = np.ones(binary.shape[0])
    rows = energy > 0
    error[rows] = 1.0 - kept[rows] / energy[rows]
    return np.clip(error, 0.0, 1.0)


def percentile(errors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The share of `reference` errors at or below each error."""
    ranked = np.sort(reference)
    return (np.searchsorted(ranked, errors, side="right") / max(len(ranked), 1)).astype(np.float32)


def user_novelty(binary: sparse.csr_matrix, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Novelty of every user row of the training matrix, and what the model card says of it."""
    # One BLAS thread: the products are thin (42 columns), and two threads spinning for them on a
    # busy machine made a 42 x 42 Gram matrix take 2.6 s instead of 0.03 s (measured). Effective
    # only from the main thread: the trainer, which runs this in its writer thread, sets it there.
    with threadpool_limits(1, "blas"):
        basis = item_basis(binary, seed=seed)
        errors = reconstruction_error(binary, basis)
    summary = {
        "method": "linear autoencoder (top singular vectors of the binary user x item rows)",
        "rank": int(basis.shape[1]),
        "error_quantiles": {
            q: round(float(np.quantile(errors, float(q))), 6) for q in ("0.5", "0.95", "0.99")
        }
        if len(errors)
        else {},
    }
    return percentile(errors, errors), summary
