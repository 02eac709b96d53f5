"""The candidate model families, each fitted into the ONE servable form:

    scores(user) = item_vectors @ user_vector      (= user_vector @ right, right = item_vectors.T)

  als        implicit's ALS on BM25- or log-weighted confidences   user/item factors, dense
  als-plain  implicit's ALS on the raw weights (the usual baseline) user/item factors, dense
  item-knn   implicit's BM25 or cosine item-item neighbours         user rows (sparse) x S
  ease       EASE, closed-form linear item model (Steck 2019), with   user rows (sparse) x B, dense
             EDLAE's dropout-emphasis regularization (Steck 2020)
  ease+als   the best EASE and the best ALS, scores added with a      [user row, user factors] (sparse)
             tuned weight after scaling each to unit spread            x [B; item factors.T], dense

For item models the user vector is the user's (weighted) interaction row, so a user's
recommendations follow their history without refitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight
from scipy import linalg, sparse
from threadpoolctl import threadpool_limits

from trainer.metrics import top_k_of_factors, top_k_of_scores, top_k_of_sparse


@dataclass
class Servable:
    family: str
    params: dict
    user_vectors: np.ndarray | sparse.csr_matrix  # row u = user u's vector
    right: np.ndarray | sparse.csr_matrix  # items on columns: scores = user_vectors[u] @ right

    threads: int = 1

    def scores(self, users: np.ndarray) -> np.ndarray:
        product = self.user_vectors[users] @ self.right
        return product.toarray() if sparse.issparse(product) else np.asarray(product)

    def top_k(self, users: np.ndarray, seen: sparse.csr_matrix, k: int) -> np.ndarray:
        if sparse.issparse(self.right):  # item-knn: a sparse product, ranked among its entries
            return top_k_of_sparse(self.user_vectors[users] @ self.right, seen, k)
        if sparse.issparse(self.user_vectors):  # EASE: dense items x items, at most EASE_MAX_ITEMS
            return top_k_of_scores(self.scores(users).astype(np.float32, copy=False), seen, k)
        return top_k_of_factors(self.user_vectors[users], self.item_vectors, seen, k, self.threads)

    @property
    def item_vectors(self) -> np.ndarray | sparse.csc_matrix:
        """Row i = item i's vector, as the scorer reads it (ITEM_VECTORS @ user_vector). A view, no
        copy: row-major for ALS (implicit's item factors); column-major for EASE and ease+als and CSC
        for item-item matrices, whose row-major `right` (CSR) the scorer then reads as its operand
        as it is, without turning anything at start."""
        if sparse.issparse(self.right):
            return cast(sparse.csr_matrix, self.right).T
        return self.right.T


def weigh(matrix: sparse.csr_matrix, scheme: str, K1: float = 100.0, B: float = 0.8) -> sparse.csr_matrix:
    """Turn aggregated weights into confidences.
    raw: as read; binary: 1; log: log1p(w), damping heavy repeats;
    bm25: BM25 over items as documents (implicit's lastfm recipe), damping heavy users and
    long item histories; floored at a small positive value so nothing turns into a dislike."""
    matrix = matrix.tocsr().astype(np.float32)
    if scheme == "raw":
        return matrix
    if scheme == "binary":
        out = matrix.copy()
        out.data[:] = 1.0
        return out
    if scheme == "log":
        out = matrix.copy()
        out.data = np.log1p(out.data)
        return out
    if scheme == "bm25":
        out = bm25_weight(matrix.T, K1=K1, B=B).T.tocsr().astype(np.float32)
        out.data = np.maximum(out.data, 1e-3)
        out.sort_indices()
        return out
    raise ValueError(f"unknown weighting {scheme!r}")


def _bm25_args(params: dict) -> dict:
    return {"K1": params["K1"], "B": params["B"]} if "K1" in params else {}


def fit_als(family: str, params: dict, matrix, threads: int, seed: int) -> Servable:
    scheme = "raw" if family == "als-plain" else params["weighting"]
    confidence = weigh(matrix, scheme, **_bm25_args(params))
    # implicit's own advice: BLAS threads fight its thread pool, so BLAS gets one thread here.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params["factors"],
            regularization=params["regularization"],
            alpha=params["alpha"],
            iterations=params["iterations"],
            num_threads=threads,
            random_state=seed,
        )
        model.fit(confidence, show_progress=False)
    return Servable(family, params, model.user_factors, model.item_factors.T, threads)


def fit_item_knn(family: str, params: dict, matrix, threads: int, seed: int) -> Servable:
    """implicit's BM25Recommender / CosineRecommender, with the item weighting done here in CSR
    (their fit hands COO to the neighbour search, which converts it with a warning)."""
    rows = weigh(matrix, params["input"])
    if params["similarity"] == "bm25":
        item_space = weigh(rows, "bm25", K1=params["K1"], B=params["B"])
    else:  # cosine: unit-length item columns
        norms = np.sqrt(np.bincount(rows.indices, rows.data.astype(np.float64) ** 2, minlength=rows.shape[1]))
        item_space = rows.copy()
        item_space.data = (rows.data / np.maximum(norms[rows.indices], 1e-12)).astype(np.float32)
    model = ItemItemRecommender(K=params["K"], num_threads=threads)
    with threadpool_limits(1, "blas"):
        model.fit(item_space.astype(np.float64), show_progress=False)  # its kNN kernel takes doubles
    similarity = model.similarity.tocsr().astype(np.float32)  # scores = rows @ similarity
    return Servable(family, params, rows, similarity, threads)


def fit_ease(family: str, params: dict, matrix, threads: int, seed: int) -> Servable:
    rows = weigh(matrix, params["input"])
    # Memory matters here (n_items^2 doubles): one float64 matrix is factored and inverted in place,
    # then turned into float32 weights; peak about 20 n^2 bytes (2 GB at 10 000 items).
    gram = (rows.T @ rows).toarray().astype(np.float64).T  # symmetric: the F-order view is in place
    # EDLAE: dropout p of the input adds p/(1-p) of each item's own weight to its ridge penalty, so
    # that popular items are regularized more; p = 0 is plain EASE.
    gram[np.diag_indices_from(gram)] *= 1.0 + params["dropout"] / (1.0 - params["dropout"])
    gram[np.diag_indices_from(gram)] += params["lambda"]
    # Cholesky-based inverse of the SPD Gram matrix: half the flops of a general inverse.
    factor, info = linalg.lapack.dpotrf(gram, lower=False, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE Gram matrix is not positive definite (dpotrf info {info})")
    inverse, info = linalg.lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE Gram matrix could not be inverted (dpotri info {info})")
    n = inverse.shape[0]
    for start in range(0, n, 1024):  # mirror the upper triangle, one block of rows at a time
        stop = min(start + 1024, n)
        inverse[start:stop, :start] = inverse[:start, start:stop].T
        block = inverse[start:stop, start:stop]
        block[np.tril_indices(stop - start, -1)] = block.T[np.tril_indices(stop - start, -1)]
    diagonal = np.diag(inverse).copy()
    inverse /= -diagonal  # B_ij = -P_ij / P_jj
    inverse[np.diag_indices_from(inverse)] = 0.0
    # Row-major (LAPACK left it column-major): sparse rows @ B would copy B on every product
    # otherwise, and the scorer maps the file of B's transpose as its row-major operand.
    return Servable(family, params, rows, np.ascontiguousarray(inverse, dtype=np.float32), threads)


def fit_rp3beta(family: str, params: dict, matrix, threads: int, seed: int) -> Servable:
    """RP3beta (Paudel et al. 2017; tuned as in Dacrema et al. 2019): the probability of a
    three-step walk item -> user -> item on the bipartite graph, each step's transition
    probabilities raised to ``alpha``, divided by the target item's popularity to the power
    ``beta`` (the penalty that lets it beat plain co-occurrence), keeping the ``K`` strongest
    neighbours of each item. Scores = the user's binary row @ W, W row i = item i's neighbours.

    Computed in blocks of items so that memory stays at BLOCK x n_items floats besides the result
    (n_items x K); time grows with the co-occurrences, bounded by the caller (RP3BETA_MAX_ITEMS)."""
    rows = weigh(matrix, "binary")
    n_items = rows.shape[1]
    user_degree = np.asarray(rows.sum(axis=1)).ravel()
    item_degree = np.bincount(rows.indices, minlength=n_items).astype(np.float64)
    alpha, beta, keep = params["alpha"], params["beta"], min(int(params["K"]), max(n_items - 1, 1))
    # user -> item step: 1/deg(u) to each item of the user; item -> user step: 1/deg(i).
    user_step = rows.copy()
    user_step.data = (1.0 / np.repeat(np.maximum(user_degree, 1.0), np.diff(rows.indptr))) ** alpha
    item_step = rows.T.tocsr()
    item_step.data = (1.0 / np.repeat(np.maximum(item_degree, 1.0), np.diff(item_step.indptr))) ** alpha
    penalty = np.where(item_degree > 0, np.maximum(item_degree, 1.0) ** -beta, 0.0).astype(np.float32)
    user_step = user_step.astype(np.float32)
    item_step = item_step.astype(np.float32)
    indptr = np.zeros(n_items + 1, dtype=np.int64)
    columns, values = [], []
    with threadpool_limits(threads, "blas"):
        for start in range(0, n_items, RP3_BLOCK):
            stop = min(start + RP3_BLOCK, n_items)
            walk = (item_step[start:stop] @ user_step).toarray()  # block x n_items, float32
            walk *= penalty
            walk[np.arange(stop - start), np.arange(start, stop)] = 0.0  # an item never recommends itself
            best = np.argpartition(-walk, keep - 1, axis=1)[:, :keep] if keep < n_items else None
            for offset in range(stop - start):
                row = walk[offset]
                chosen = np.flatnonzero(row) if best is None else best[offset][row[best[offset]] > 0]
                chosen.sort()
                columns.append(chosen.astype(np.int32))
                values.append(row[chosen])
                indptr[start + offset + 1] = indptr[start + offset] + len(chosen)
    similarity = sparse.csr_matrix(
        (
            np.concatenate(values) if values else np.zeros(0, np.float32),
            np.concatenate(columns) if columns else np.zeros(0, np.int32),
            indptr,
        ),
        shape=(n_items, n_items),
        dtype=np.float32,
    )
    return Servable(family, params, weigh(matrix, params.get("input", "binary")), similarity, threads)


RP3_BLOCK = 512  # items whose walks are computed at once (memory: RP3_BLOCK x n_items float32)


BLEND = "ease+als"
BLEND_WEIGHTS = [0.2, 0.35, 0.5, 0.65, 0.8]  # EASE's share of the blended score, tuned on validation
SCALE_USERS = 256  # users whose scores measure a model's spread


def score_spread(model: Servable, seed: int) -> float:
    """Standard deviation of a model's scores over a seeded sample of users: EASE and ALS scores
    differ in scale by orders of magnitude, so each is divided by its spread before they are added."""
    n_users = model.user_vectors.shape[0]
    users = np.sort(np.random.default_rng(seed).choice(n_users, min(n_users, SCALE_USERS), replace=False))
    return float(model.scores(users).std()) or 1.0


def blend(item_model: Servable, factor_model: Servable, weight: float, seed: int, params: dict) -> Servable:
    """weight * item scores / spread + (1 - weight) * factor scores / spread, as ONE servable:
    each user's vector is their item row followed by their factors, each item's vector its EASE
    column followed by its factors, so the scorer's single product computes the sum."""
    item_share = weight / score_spread(item_model, seed)
    factor_share = (1.0 - weight) / score_spread(factor_model, seed)
    user_vectors = sparse.hstack(
        [item_model.user_vectors * item_share, sparse.csr_matrix(factor_model.user_vectors * factor_share)],
        format="csr",
        dtype=np.float32,
    )
    right = np.vstack([item_model.right, factor_model.right])
    return Servable(BLEND, params, user_vectors, right, factor_model.threads)


def fit_blend(family: str, params: dict, matrix, threads: int, seed: int) -> Servable:
    """params: {"weight": EASE's share, "ease": EASE's params, "als": {"family": ..., **its params}}."""
    factor_params = {name: value for name, value in params["als"].items() if name != "family"}
    factor_model = fit(params["als"]["family"], factor_params, matrix, threads, seed)
    item_model = fit("ease", params["ease"], matrix, threads, seed)
    return blend(item_model, factor_model, params["weight"], seed, params)


FIT = {
    "als": fit_als,
    "als-plain": fit_als,
    "item-knn": fit_item_knn,
    "ease": fit_ease,
    "rp3beta": fit_rp3beta,
    BLEND: fit_blend,
}


def fit(family: str, params: dict, matrix, threads: int, seed: int) -> Servable:
    return FIT[family](family, params, matrix, threads, seed)


# Search spaces: ordered value ladders (the tuner steps along them) and where the search starts.
# Starts are settings that work well on public rating and play-count data; the ladders are wide
# because implicit's defaults (factors 100, regularization 0.01, alpha 1, raw weights) rarely do.
# Ladders are listed most influential first: the tuner tries their steps in this order.
ALS_LADDERS = {
    "regularization": [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0],
    "alpha": [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0],
    "factors": [16, 32, 64, 128, 256],
    "iterations": [8, 15, 25],
}
# The first ALS start; the others change a few of its settings.
ALS_START = {
    "weighting": "bm25",
    "K1": 100.0,
    "B": 0.8,
    "factors": 64,
    "regularization": 0.1,
    "alpha": 10.0,
    "iterations": 15,
}
SPACES: dict[str, dict[str, Any]] = {
    "als": {
        "ladders": {
            "weighting": ["bm25", "log"],
            **ALS_LADDERS,
            "K1": [1.2, 10.0, 100.0],
            "B": [0.5, 0.8, 0.95],
        },
        "starts": [
            ALS_START,
            {**ALS_START, "weighting": "log"},
            {**ALS_START, "weighting": "log", "factors": 32, "regularization": 10.0, "alpha": 1.0},
        ],
    },
    "als-plain": {
        "ladders": ALS_LADDERS,
        "starts": [
            {"factors": 64, "regularization": 0.1, "alpha": 1.0, "iterations": 15},
            {"factors": 64, "regularization": 1.0, "alpha": 10.0, "iterations": 15},
            {"factors": 32, "regularization": 10.0, "alpha": 1.0, "iterations": 15},
            {"factors": 128, "regularization": 100.0, "alpha": 3.0, "iterations": 15},
        ],
    },
    "item-knn": {
        "ladders": {
            "K": [25, 50, 100, 200, 400, 800],
            "similarity": ["bm25", "cosine"],
            "K1": [0.6, 1.2, 3.0, 10.0],
            "B": [0.25, 0.5, 0.75, 1.0],
            "input": ["binary", "log", "raw"],
        },
        "starts": [
            {"similarity": "bm25", "K": 100, "K1": 1.2, "B": 0.75, "input": "binary"},
            {"similarity": "cosine", "K": 100, "K1": 1.2, "B": 0.75, "input": "log"},
        ],
    },
    "rp3beta": {
        "ladders": {
            "beta": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8],
            "alpha": [0.25, 0.5, 0.75, 1.0, 1.25, 1.5],
            "K": [25, 50, 100, 200, 400, 800],
        },
        "starts": [
            {"alpha": 1.0, "beta": 0.3, "K": 200},
            {"alpha": 0.5, "beta": 0.4, "K": 100},
        ],
    },
    "ease": {
        "ladders": {
            "lambda": [3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0],
            "dropout": [0.0, 0.1, 0.25, 0.33, 0.5],
            "input": ["binary", "log"],
        },
        "starts": [
            {"lambda": 300.0, "dropout": 0.0, "input": "binary"},
            {"lambda": 100.0, "dropout": 0.0, "input": "log"},
        ],
    },
}


def canonical(family: str, params: dict) -> dict:
    """Drop parameters that do not apply (BM25's K1/B without BM25), so equal settings compare equal."""
    bm25 = params.get("weighting", params.get("similarity")) == "bm25"
    return {name: value for name, value in params.items() if bm25 or name not in ("K1", "B")}
