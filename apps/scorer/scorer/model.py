"""A verified model folder in memory, and top-k recommendation with numpy.

One scoring path for every model family (modelshare.layout): scores = ITEM_VECTORS @ user_vector,
the user vector being a row of USER_VECTORS. Dense arrays are memory-mapped, so several worker
processes share one copy through the page cache; sparse artifacts (scipy .npz files) are read
and multiplied with numpy alone, so no model needs scipy's import at start.
"""

from __future__ import annotations

import functools
import itertools
import zipfile
from collections.abc import Callable, Collection
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
    """A CSR matrix as its three numpy arrays, with the few operations scoring needs: no scipy,
    whose import alone took longer than verifying and loading a MovieLens 1M release (0.21 s of a
    0.9 s start, measured)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, shape: tuple[int, int]):
        self.indptr, self.indices, self.data, self.shape = indptr, indices, data, shape

    def row(self, r: int) -> np.ndarray:
        return self.indices[self.indptr[r] : self.indptr[r + 1]]

    def entries(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.indptr[r], self.indptr[r + 1]
        return self.indices[lo:hi], self.data[lo:hi]

    def transposed(self) -> _Csr:
        """The CSR of the transpose (only for files written before the trainer stored the
        transpose itself; a stable sort keeps each new row's columns in order)."""
        order = np.argsort(self.indices, kind="stable")
        rows = np.repeat(np.arange(self.shape[0], dtype=np.int32), np.diff(self.indptr))[order]
        indptr = np.zeros(self.shape[1] + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.indices, minlength=self.shape[1]), out=indptr[1:])
        return _Csr(indptr, rows, self.data[order], (self.shape[1], self.shape[0]))

    def combine(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """sum_j weights[j] * self[rows[j]] as a dense row: a user's row times an item-item matrix."""
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        lengths = stops - starts
        total = int(lengths.sum())
        # positions of every stored entry of the chosen rows, without a Python loop over them
        positions = np.arange(total) + np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        scaled = self.data[positions] * np.repeat(weights, lengths)
        return np.bincount(self.indices[positions], weights=scaled, minlength=self.shape[1])

    def times_transposed(self, dense: np.ndarray) -> np.ndarray:
        """dense @ self.T, for dense user factors against sparse item factors (rows = items)."""
        contributions = dense[:, self.indices] * self.data  # users x stored entries
        padded = np.concatenate([contributions, np.zeros((dense.shape[0], 1), contributions.dtype)], axis=1)
        sums = np.add.reduceat(padded, np.minimum(self.indptr[:-1], len(self.indices)), axis=1)
        sums[:, np.diff(self.indptr) == 0] = 0.0  # reduceat gives an empty row one entry, not 0
        return sums


def _load_csr(path: Path, data: bool = True) -> tuple[_Csr, str]:
    """A scipy.sparse.save_npz file (CSR or CSC) read with numpy alone, and its format: the
    arrays of a CSC matrix are the CSR arrays of its transpose, returned as such."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            fmt = npz["format"].item()
            fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
            if fmt not in ("csr", "csc"):
                raise ModelError(f"{path} must hold a CSR or CSC matrix, found format {fmt!r}")
            rows, columns = (int(n) for n in npz["shape"])
            values = np.asarray(npz["data"], dtype=np.float32) if data else np.zeros(0, np.float32)
            shape = (rows, columns) if fmt == "csr" else (columns, rows)
            return _Csr(npz["indptr"], npz["indices"], values, shape), fmt
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path} is not a scipy sparse .npz file: {exc}") from None


def _load_csr_parts(path: Path) -> _Csr:
    """Seen items: a CSR matrix whose stored values do not matter."""
    matrix, fmt = _load_csr(path, data=False)
    if fmt != "csr":
        raise ModelError(f"{path} must hold a CSR matrix, found format {fmt!r}")
    return matrix


def _load_dense(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ModelError(f"{path} is not a numpy .npy file: {exc}") from None


def _one_of(model_dir: Path, dense: str, sparse: str) -> tuple[np.ndarray | _Csr, str]:
    """The array of whichever file exists, and its form: "dense", "csr" or "csc" (then the
    returned matrix is the file's transpose)."""
    if (model_dir / dense).is_file():
        return _load_dense(model_dir / dense), "dense"
    if (model_dir / sparse).is_file():
        return _load_csr(model_dir / sparse)
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
        users, user_form = _one_of(model_dir, layout.USER_VECTORS_DENSE, layout.USER_VECTORS_SPARSE)
        self.user_vectors = users.transposed() if isinstance(users, _Csr) and user_form == "csc" else users
        sparse_users = isinstance(users, _Csr)
        items, item_form = _one_of(model_dir, layout.ITEM_VECTORS_DENSE, layout.ITEM_VECTORS_SPARSE)
        # The operand of the one product per batch, users x items, in the form the product reads
        # without a copy per request. Behind sparse user rows that is the items' transpose, row-major
        # (scores = the user's entries times rows of it): the trainer writes EASE's and ease+als's
        # dense item vectors column-major and item-item matrices as CSC, so it is the file as mapped
        # or read; a file in the other order (an older release) is turned once, here. Behind dense
        # user factors, sparse item factors are used with rows = items (times_transposed).
        self._items_t: np.ndarray | _Csr
        item_shape: tuple[int, ...]
        if isinstance(items, _Csr):
            item_shape = items.shape[::-1] if item_form == "csc" else items.shape
            self._items_t = items if (item_form == "csc") == sparse_users else items.transposed()
        else:
            item_shape = items.shape
            self._items_t = np.ascontiguousarray(items.T) if sparse_users else items.T
        self._accelerated: Callable[[list[int]], np.ndarray] | None = None  # set by accelerate()
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
        self._check_shapes(model_dir, item_shape)
        self._popular_ids = self._item_ids[np.asarray(self.popular, dtype=np.int64)].tolist()
        self._popular_scores = np.round(np.asarray(self.popular_scores, dtype=np.float64), 6).tolist()

    def _check_shapes(self, model_dir: Path, item_shape: tuple[int, ...]) -> None:
        n_users, n_items = len(self.user_ids), len(self.item_ids)
        problems = []
        if self.user_vectors.shape[0] != n_users:
            problems.append(f"user vectors have {self.user_vectors.shape[0]} rows for {n_users} user ids")
        if item_shape[0] != n_items:
            problems.append(f"item vectors have {item_shape[0]} rows for {n_items} item ids")
        if len(item_shape) != 2 or len(self.user_vectors.shape) != 2:
            problems.append("user and item vectors must be 2-D")
        elif item_shape[1] != self.user_vectors.shape[1]:
            problems.append(
                f"item vectors have {item_shape[1]} columns, user vectors {self.user_vectors.shape[1]}"
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

    def accelerate(self) -> None:
        """Multiply sparse artifacts with scipy's kernels from now on: called once the model is
        ready (readiness does not wait for scipy's import), they are 3 to 5 times faster than
        numpy's gathers for MovieLens 1M's EASE rows (0.4 against 2.5 ms a user, measured). The
        matrices share the arrays already loaded. Factor models need nothing and import nothing."""
        users, items_t = self.user_vectors, self._items_t
        if not isinstance(users, _Csr) and not isinstance(items_t, _Csr):
            return
        import scipy.sparse

        def csr(matrix: _Csr):
            return scipy.sparse.csr_matrix((matrix.data, matrix.indices, matrix.indptr), shape=matrix.shape)

        dense_users = users if isinstance(users, np.ndarray) else None
        fast_users = csr(users) if isinstance(users, _Csr) else None
        fast_items = csr(items_t) if isinstance(items_t, _Csr) else None

        def product(rows: list[int]) -> np.ndarray:
            if fast_users is not None:
                picked = fast_users[rows]
            else:
                assert dense_users is not None  # one of the two forms
                picked = np.asarray(dense_users[rows])
            if fast_items is None:
                scores = picked @ items_t
            elif fast_users is None:  # dense factors, items as rows: scipy multiplies sparse @ dense
                scores = (fast_items @ picked.T).T
            else:
                scores = picked @ fast_items
            scores = scores.toarray() if hasattr(scores, "toarray") else scores
            return np.asarray(scores, dtype=np.float32)

        self._accelerated = product

    def _scores(self, rows: list[int]) -> np.ndarray:
        """users x items scores, float32, a fresh array (_top_k writes into it)."""
        if self._accelerated is not None:
            return self._accelerated(rows)
        users, items_t = self.user_vectors, self._items_t
        if isinstance(users, _Csr):
            if isinstance(items_t, _Csr):  # item-item neighbours: add up the user's items' rows
                parts = [items_t.combine(*users.entries(row)) for row in rows]
            else:  # EASE, ease+als: the user's weights times the rows of the dense operand
                parts = [values @ items_t[columns] for columns, values in map(users.entries, rows)]
            return np.array(parts, dtype=np.float32).reshape(len(rows), len(self.item_ids))
        dense = np.asarray(users[rows])
        scores = items_t.times_transposed(dense) if isinstance(items_t, _Csr) else dense @ items_t
        return np.asarray(scores, dtype=np.float32)

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
