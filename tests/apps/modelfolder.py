"""Build model folders the way the trainer does (docs/CONTRACTS.md section 1, artifacts of
modelshare.layout), so the waiter and scorer are tested, and benchmarked, without waiting for a real
training run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse

import modelshare
from modelshare import layout
from trainer.novelty import user_novelty


def metrics(ndcg: float = 0.30, popular_ndcg: float = 0.10, k: int = 10) -> dict:
    def block(ndcg_value):
        return {
            "precision_at_k": ndcg_value / 2,
            "recall_at_k": ndcg_value,
            "ndcg_at_k": ndcg_value,
            "map_at_k": ndcg_value / 3,
        }

    return {
        "k": k,
        "model": block(ndcg),
        "popularity": block(popular_ndcg),
        "lift_ndcg": ndcg / popular_ndcg,
        "protocol": "leave-last-out per user (test fixture)",
        "n_users": 0,
        "n_items": 0,
        "n_interactions": 0,
    }


@dataclass
class ModelFolder:
    path: Path
    build: str
    user_ids: list[str]
    item_ids: list[str]
    seen: scipy.sparse.csr_matrix
    user_vectors: np.ndarray | scipy.sparse.csr_matrix  # ndarray (factor) or csr (item-item)
    item_vectors: np.ndarray | scipy.sparse.csr_matrix
    popular: np.ndarray
    extra: dict = field(default_factory=dict)

    def unseen_scores(self, user_id: str) -> dict[str, float]:
        """item id -> score of every item the user has not seen, computed here independently
        of the scorer's code: what a correct top-k must be drawn from, best first."""
        row = self.user_ids.index(user_id)
        user = self.user_vectors[row]
        user = user.toarray().ravel() if scipy.sparse.issparse(user) else np.asarray(user, dtype=np.float64)
        vectors = self.item_vectors
        items = vectors if isinstance(vectors, np.ndarray) else vectors.toarray()
        scores = items.astype(np.float64) @ user
        seen = set(self.seen[row].indices.tolist())
        return {self.item_ids[i]: float(scores[i]) for i in range(len(self.item_ids)) if i not in seen}

    def seen_ids(self, user_id: str) -> set[str]:
        return {self.item_ids[i] for i in self.seen[self.user_ids.index(user_id)].indices}


def interactions(n_users: int, n_items: int, per_user: int, seed: int) -> scipy.sparse.csr_matrix:
    """A users x items CSR of 1.0 weights with a long-tailed item popularity, like real data."""
    rng = np.random.default_rng(seed)
    per_user = min(per_user, n_items)
    rows = np.repeat(np.arange(n_users), per_user)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    cols = rng.choice(n_items, size=rows.size, p=popularity / popularity.sum())
    matrix = scipy.sparse.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def write_model_folder(
    folder: str | Path,
    build: str = "7",
    *,
    family: str = "factor",
    n_users: int = 40,
    n_items: int = 30,
    factors: int = 8,
    per_user: int = 5,
    seed: int = 0,
    metrics_doc: dict | None = None,
    complete: bool = True,
    novelty: bool = True,
) -> ModelFolder:
    """Write a release folder: model/ artifacts, metrics.json, manifest.json, then complete.txt."""
    folder = Path(folder)
    model_dir = folder / layout.MODEL_DIR
    model_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed + 1)
    seen = interactions(n_users, n_items, per_user, seed)
    user_ids = [f"u{i}" for i in range(n_users)]
    item_ids = [f"i{i}" for i in range(n_items)]

    if family == "factor":
        user_vectors = rng.standard_normal((n_users, factors)).astype(np.float32)
        item_vectors = rng.standard_normal((n_items, factors)).astype(np.float32)
        np.save(model_dir / layout.USER_VECTORS_DENSE, user_vectors)
        np.save(model_dir / layout.ITEM_VECTORS_DENSE, item_vectors)
    elif family == "item-item":
        user_vectors = seen.astype(np.float32)
        cooc = (seen.T @ seen).tocsr().astype(np.float32)
        cooc.setdiag(0)
        cooc.eliminate_zeros()
        item_vectors = cooc.multiply(rng.random(cooc.shape, dtype=np.float32) + 0.5).tocsr()  # break ties
        scipy.sparse.save_npz(model_dir / layout.USER_VECTORS_SPARSE, user_vectors)
        scipy.sparse.save_npz(model_dir / layout.ITEM_VECTORS_SPARSE, item_vectors)
    else:
        raise ValueError(f"unknown family {family!r}")

    counts = np.asarray(seen.sum(axis=0)).ravel()
    popular = np.argsort(-counts, kind="stable").astype(np.int32)
    scipy.sparse.save_npz(model_dir / layout.SEEN, seen)
    np.save(model_dir / layout.POPULAR, popular)
    np.save(model_dir / layout.POPULAR_SCORES, counts[popular].astype(np.float32))
    modelshare.atomic_write_json(model_dir / layout.USER_IDS, user_ids)
    modelshare.atomic_write_json(model_dir / layout.ITEM_IDS, item_ids)
    if novelty:  # as the trainer writes it (releases before it had none: novelty=False)
        np.save(model_dir / layout.NOVELTY, user_novelty(seen)[0])
    modelshare.atomic_write_json(
        model_dir / layout.MODEL_CARD,
        {"family": family, "params": {"factors": factors}, "n_users": n_users, "n_items": n_items},
    )
    doc = metrics() if metrics_doc is None else metrics_doc
    doc = {**doc, "n_users": n_users, "n_items": n_items, "n_interactions": int(seen.nnz)}
    modelshare.atomic_write_json(folder / layout.METRICS, doc)
    modelshare.make_manifest(folder, build=build, git_sha="0123abc", params={"factors": factors})
    if complete:
        modelshare.mark_complete(folder, build)
    return ModelFolder(folder, build, user_ids, item_ids, seen, user_vectors, item_vectors, popular)
