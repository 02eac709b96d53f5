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
from scipy import sparse
from scipy.sparse.linalg import svds

RANK = 32


def item_basis(binary: sparse.csr_matrix, rank: int = RANK, seed: int = 0) -> np.ndarray:
    """items x r orthonormal columns: the subspace the typical user histories span."""
    r = min(rank, min(binary.shape) - 1)
    if r < 1:
        return np.zeros((binary.shape[1], 0))
    _, _, vt = svds(binary.astype(np.float64), k=r, random_state=seed)
    return vt.T


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
