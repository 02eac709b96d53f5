"""A verified model folder in memory, and top-k recommendation with numpy.

One scoring path for every model family (modelshare.layout): scores = ITEM_VECTORS @ user_vector,
the user vector being a row of USER_VECTORS. Dense arrays are memory-mapped, so several worker
processes share one copy through the page cache. scipy is imported only for the sparse
(item-item) artifacts: factor models start without it.
"""

from __future__ import annotations

import functools
import itertools
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import modelshare
from modelshare import layout

# The batch is scored in slices of this many users so that a 1000-user request on a large
# catalogue does not allocate a (1000 x n_items) score matrix at once.
SCORE_SLICE = 128


class ModelError(RuntimeError):
    """The folder verifies but its artifacts do not fit together; the message names the file."""


@dataclass(frozen=True)
class Recommendation:
    user_id: str
    item_ids: list[str]
    scores: list[float]
    fallback: str | None  # None, or "popular" for a user the model has not seen
    novelty: float | None = None  # of a known user, when the release has novelty.npy


class _Csr:
    """The two arrays of a CSR matrix that row lookups need (seen items per user)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, shape: tuple[int, int]):
        self.indptr, self.indices, self.shape = indptr, indices, shape

    def row(self, r: int) -> np.ndarray:
        return self.indices[self.indptr[r] : self.indptr[r + 1]]


def _load_csr_parts(path: Path) -> _Csr:
    """Read a scipy.sparse.save_npz CSR file with numpy alone (no scipy import)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            fmt = npz["format"].item()
            fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
            if fmt != "csr":
                raise ModelError(f"{path} must hold a CSR matrix, found format {fmt!r}")
            rows, columns = (int(n) for n in npz["shape"])
            return _Csr(npz["indptr"], npz["indices"], (rows, columns))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path} is not a scipy sparse .npz file: {exc}") from None


def _load_sparse(path: Path):
    import scipy.sparse  # only item-item models need it

    try:
        return scipy.sparse.load_npz(path).tocsr().astype(np.float32)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path} is not a scipy sparse .npz file: {exc}") from None


def _load_dense(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ModelError(f"{path} is not a numpy .npy file: {exc}") from None


def _one_of(model_dir: Path, dense: str, sparse: str):
    if (model_dir / dense).is_file():
        return _load_dense(model_dir / dense), False
    if (model_dir / sparse).is_file():
        return _load_sparse(model_dir / sparse), True
    raise ModelError(f"{model_dir} has neither {dense} nor {sparse}")


def _ids(path: Path) -> list[str]:
    try:
        ids = modelshare.read_json(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is missing or not valid JSON: {exc}") from None
    if not isinstance(ids, list):
        raise ModelError(f"{path} must hold a JSON list of ids")
    return [str(i) for i in ids]


class Model:
    """Everything /recommendations needs, loaded from a folder that verified."""

    def __init__(self, folder: str | Path, manifest: dict):
        folder = Path(folder)
        model_dir = folder / layout.MODEL_DIR
        self.build = str(manifest.get("build"))
        self.created_at = manifest.get("created_at")
        self.git_sha = manifest.get("git_sha")
        self.sha256 = modelshare.model_sha256(folder)
        try:
            self.metrics = modelshare.read_json(folder / layout.METRICS)
        except (OSError, ValueError):
            self.metrics = None

        self.user_ids = _ids(model_dir / layout.USER_IDS)
        self.item_ids = _ids(model_dir / layout.ITEM_IDS)
        self._row_of_user = {uid: row for row, uid in enumerate(self.user_ids)}
        self._item_ids = np.array(self.item_ids, dtype=object)
        self.user_vectors, sparse_users = _one_of(
            model_dir, layout.USER_VECTORS_DENSE, layout.USER_VECTORS_SPARSE
        )
        item_vectors, sparse_items = _one_of(model_dir, layout.ITEM_VECTORS_DENSE, layout.ITEM_VECTORS_SPARSE)
        # Transposed once here so that scoring a batch is one product: users x items. Behind sparse
        # user rows (EASE, ease+als) scipy needs it row-major, or it copies it on every request (98
        # ms instead of 0.85 ms a request on MovieLens 1M). The trainer writes those item vectors
        # column-major, so this is the mapping itself; another file is copied once, here.
        if sparse_items:
            self._items_t = item_vectors.T.tocsr()
        elif sparse_users:
            self._items_t = np.ascontiguousarray(item_vectors.T)
        else:
            self._items_t = item_vectors.T
        self._sparse_items = sparse_items
        self.seen = _load_csr_parts(model_dir / layout.SEEN)
        self.popular = _load_dense(model_dir / layout.POPULAR)
        self.popular_scores = _load_dense(model_dir / layout.POPULAR_SCORES)
        # Per user (trainer.novelty); releases written before it have none.
        self.novelty = (
            _load_dense(model_dir / layout.NOVELTY) if (model_dir / layout.NOVELTY).is_file() else None
        )
        self.card = (model_dir / layout.CARD).read_bytes() if (model_dir / layout.CARD).is_file() else None
        try:  # the trained family as the trainer names it (e.g. ease+als); else the vectors' form
            self.family = str(modelshare.read_json(model_dir / layout.MODEL_CARD)["family"])
        except (OSError, ValueError, KeyError, TypeError):
            self.family = "item-item" if sparse_users else "factor"
        self._check_shapes(model_dir, item_vectors)
        self._popular_ids = self._item_ids[np.asarray(self.popular, dtype=np.int64)].tolist()
        self._popular_scores = np.round(np.asarray(self.popular_scores, dtype=np.float64), 6).tolist()

    def _check_shapes(self, model_dir: Path, item_vectors) -> None:
        n_users, n_items = len(self.user_ids), len(self.item_ids)
        problems = []
        if self.user_vectors.shape[0] != n_users:
            problems.append(f"user vectors have {self.user_vectors.shape[0]} rows for {n_users} user ids")
        if item_vectors.shape[0] != n_items:
            problems.append(f"item vectors have {item_vectors.shape[0]} rows for {n_items} item ids")
        if len(item_vectors.shape) != 2 or len(self.user_vectors.shape) != 2:
            problems.append("user and item vectors must be 2-D")
        elif item_vectors.shape[1] != self.user_vectors.shape[1]:
            problems.append(
                f"item vectors have {item_vectors.shape[1]} columns, "
                f"user vectors {self.user_vectors.shape[1]}"
            )
        if self.seen.shape != (n_users, n_items):
            problems.append(f"{layout.SEEN} has shape {self.seen.shape}, expected {(n_users, n_items)}")
        if self.popular.shape != self.popular_scores.shape or self.popular.ndim != 1:
            problems.append(f"{layout.POPULAR} and {layout.POPULAR_SCORES} must be 1-D of one length")
        elif self.popular.size and (self.popular.min() < 0 or self.popular.max() >= n_items):
            problems.append(f"{layout.POPULAR} holds item indices outside 0..{n_items - 1}")
        if self.novelty is not None and self.novelty.shape != (n_users,):
            problems.append(f"{layout.NOVELTY} has shape {self.novelty.shape}, expected ({n_users},)")
        if problems:
            raise ModelError(f"{model_dir}: " + "; ".join(problems))

    @classmethod
    def load(cls, folder: str | Path, build: str | None) -> Model:
        """Verify every checksum of the folder, then load it. Raises IntegrityError or ModelError."""
        manifest = modelshare.verify(folder, build=build)
        return cls(folder, manifest)

    @functools.cached_property
    def _column_of_item(self) -> dict[str, int]:
        # Built at the first request that excludes items, not at load (most never do).
        return {item: column for column, item in enumerate(self.item_ids)}

    def recommend(self, user_ids: list[str], k: int, exclude: Collection[str] = ()) -> list[Recommendation]:
        """Top-k unseen items for each user, best first; popular items for users the model lacks.
        No item of `exclude` is returned (ids the catalogue lacks are ignored)."""
        rows = [self._row_of_user.get(uid) for uid in user_ids]
        known = [(pos, row) for pos, row in enumerate(rows) if row is not None]
        excluded = self._excluded_columns(exclude)
        answers: list[Recommendation | None] = [None] * len(user_ids)
        for start in range(0, len(known), SCORE_SLICE):
            part = known[start : start + SCORE_SLICE]
            for (pos, row), (items, scores) in zip(part, self._top_k([row for _, row in part], k, excluded)):
                novelty = None if self.novelty is None else round(float(self.novelty[row]), 4)
                answers[pos] = Recommendation(user_ids[pos], items, scores, None, novelty)
        popular_ids, popular_scores = self._popular_ids, self._popular_scores
        if excluded is not None and len(known) < len(user_ids):
            skip = set(exclude)
            pairs = zip(popular_ids, popular_scores)
            kept = list(itertools.islice(((item, score) for item, score in pairs if item not in skip), k))
            popular_ids, popular_scores = [item for item, _ in kept], [score for _, score in kept]
        return [
            Recommendation(user_ids[pos], popular_ids[:k], popular_scores[:k], "popular")
            if answer is None
            else answer
            for pos, answer in enumerate(answers)
        ]

    def _excluded_columns(self, exclude: Collection[str]) -> np.ndarray | None:
        if not exclude:
            return None
        columns = self._column_of_item
        return np.fromiter((columns[item] for item in exclude if item in columns), dtype=np.int64, count=-1)

    def _scores(self, rows: list[int]) -> np.ndarray:
        users = self.user_vectors[rows]
        if self._sparse_items and isinstance(users, np.ndarray):
            # scipy multiplies sparse @ dense, not dense @ sparse: transpose around it.
            scores = (self._items_t.T @ users.T).T
        else:
            scores = users @ self._items_t
        if hasattr(scores, "toarray"):
            scores = scores.toarray()
        return np.asarray(scores, dtype=np.float32)  # a fresh array: _top_k may write into it

    def _top_k(
        self, rows: list[int], k: int, excluded: np.ndarray | None = None
    ) -> list[tuple[list[str], list[float]]]:
        scores = self._scores(rows)
        if excluded is not None:
            scores[:, excluded] = -np.inf  # the request's exclusions: never recommended, like seen items
        n_items = scores.shape[1]
        k = min(k, n_items)
        results = []
        for user_scores, row in zip(scores, rows):
            user_scores[self.seen.row(row)] = -np.inf  # seen items: never recommended
            top = (
                np.argpartition(user_scores, n_items - k)[n_items - k :]
                if k < n_items
                else np.arange(n_items)
            )
            top_scores = user_scores[top]
            order = np.argsort(top_scores)[::-1]
            top, top_scores = top[order], top_scores[order]
            keep = np.isfinite(top_scores)
            if not keep.all():
                top, top_scores = top[keep], top_scores[keep]
            results.append((self._item_ids[top].tolist(), [round(score, 6) for score in top_scores.tolist()]))
        return results
