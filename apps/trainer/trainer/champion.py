"""Champion and challenger on the same holdout: the served model of the release holding most traffic
(GATE_CHAMPION_MODELFOLDER), loaded from the share after its sha256s verify, ranks this build's test
users beside the new model, and the gate reads their paired per-user NDCG difference.

Both models face the same task, the one the champion would serve today. A held-out item the champion
was trained on for that user is dropped for both (the champion's served lists exclude its own seen
items, and the new model would be judged on answers its rival memorised); both exclude the user's
training items and the champion's seen items. A user the champion does not know gets its
popularity list, as the scorer would serve them; items the champion does not know cannot be
recommended by it. Scoring goes through the trainer's own Servable, i.e. the scorer's product
(scores = item_vectors @ user_vector).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

import modelshare
from modelshare import MODEL_DIR, IntegrityError, layout
from trainer.families import Servable
from trainer.metrics import Ranker, paired_gain, per_user, top_k_of_order
from trainer.split import sample_users


class ChampionError(RuntimeError):
    """The champion cannot be compared; the message says why (the gate then fails with it)."""


@dataclass
class Champion:
    folder: Path
    build: str
    model_sha256: str
    family: str
    model: Servable
    user_ids: list[str]
    item_ids: list[str]
    seen: sparse.csr_matrix  # champion users x champion items
    popular: np.ndarray  # champion item indices, most popular first


def _ids(path: Path) -> list[str]:
    ids = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(ids, list):
        raise ValueError(f"{path.name} is not a JSON list")
    return [str(i) for i in ids]


def _vectors(model_dir: Path, dense: str, sparse_name: str):
    if (model_dir / dense).is_file():
        return np.load(model_dir / dense, allow_pickle=False)
    if (model_dir / sparse_name).is_file():
        return sparse.load_npz(model_dir / sparse_name).tocsr().astype(np.float32)
    raise ValueError(f"neither {dense} nor {sparse_name} exists")


def load(folder: str | Path, threads: int) -> Champion:
    """The champion's served model; ChampionError when it does not verify or cannot be read."""
    folder = Path(folder)
    try:
        manifest = modelshare.verify(folder)
    except (IntegrityError, OSError) as exc:
        raise ChampionError(f"its folder does not verify: {exc}") from None
    model_dir = folder / MODEL_DIR
    try:
        card = json.loads((model_dir / layout.MODEL_CARD).read_text(encoding="utf-8"))
        user_ids, item_ids = _ids(model_dir / layout.USER_IDS), _ids(model_dir / layout.ITEM_IDS)
        users = _vectors(model_dir, layout.USER_VECTORS_DENSE, layout.USER_VECTORS_SPARSE)
        items = _vectors(model_dir, layout.ITEM_VECTORS_DENSE, layout.ITEM_VECTORS_SPARSE)
        seen = sparse.load_npz(model_dir / layout.SEEN).tocsr()
        popular = np.load(model_dir / layout.POPULAR, allow_pickle=False).astype(np.int64)
        right = items.T.tocsr() if sparse.issparse(items) else items.T
        shapes_fit = (
            users.shape[0] == len(user_ids) == seen.shape[0]
            and items.shape[0] == len(item_ids) == seen.shape[1]
            and users.shape[1] == right.shape[0]
            and popular.ndim == 1
            and (len(popular) == 0 or 0 <= popular.min() <= popular.max() < len(item_ids))
        )
        if not shapes_fit:
            raise ValueError(
                f"shapes do not fit together: user vectors {users.shape}, item vectors {items.shape}, seen "
                f"{seen.shape}, {len(user_ids)} user ids, {len(item_ids)} item ids"
            )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
        raise ChampionError(f"its model format cannot be read ({type(exc).__name__}: {exc})") from None
    family = str(card.get("family")) if isinstance(card, dict) else "?"
    return Champion(
        folder=folder,
        build=str(manifest.get("build")),
        model_sha256=modelshare.model_sha256(folder),
        family=family,
        model=Servable(family, card.get("params", {}), users, right, threads),
        user_ids=user_ids,
        item_ids=item_ids,
        seen=seen,
        popular=popular,
    )


class InNewSpace:
    """The champion as a Ranker over the new build's user and item indices."""

    def __init__(self, champion: Champion, user_ids: list[str], item_ids: list[str]):
        self.champion = champion
        row_of = {uid: row for row, uid in enumerate(champion.user_ids)}
        self.user_row = np.array([row_of.get(uid, -1) for uid in user_ids], dtype=np.int64)
        column_of = {iid: col for col, iid in enumerate(item_ids)}
        # champion item -> new item, -1 for unknown; one more -1 at the end so that -1 maps to -1
        self.to_new = np.array([column_of.get(iid, -1) for iid in champion.item_ids] + [-1], dtype=np.int64)
        self.to_champion = np.full(len(item_ids), -1, dtype=np.int64)
        known = np.flatnonzero(self.to_new[:-1] >= 0)
        self.to_champion[self.to_new[known]] = known
        self.shape = (len(user_ids), len(item_ids))

    def seen_in_new_space(self) -> sparse.csr_matrix:
        """What the champion saw in training, as new users x new items (known users and items only)."""
        users = np.flatnonzero(self.user_row >= 0)
        rows = self.champion.seen[self.user_row[users]].tocoo()
        columns = self.to_new[rows.col]
        keep = columns >= 0
        return sparse.csr_matrix(
            (np.ones(int(keep.sum()), dtype=np.float32), (users[rows.row[keep]], columns[keep])),
            shape=self.shape,
        )

    def _in_champion_space(self, seen: sparse.csr_matrix) -> sparse.csr_matrix:
        rows = seen.tocoo()
        columns = self.to_champion[rows.col]
        keep = columns >= 0
        return sparse.csr_matrix(
            (np.ones(int(keep.sum()), dtype=np.float32), (rows.row[keep], columns[keep])),
            shape=(seen.shape[0], len(self.champion.item_ids)),
        )

    def top_k(self, users: np.ndarray, seen: sparse.csr_matrix, k: int) -> np.ndarray:
        best = np.full((len(users), k), -1, dtype=np.int64)
        rows = self.user_row[users]
        known = rows >= 0
        excluded = self._in_champion_space(seen)
        if known.any():
            excluded_known = (excluded[known] + self.champion.seen[rows[known]]).tocsr()
            excluded_known.data[:] = 1.0
            ranked = np.asarray(self.champion.model.top_k(rows[known], excluded_known, k))
            best[np.flatnonzero(known)[:, None], np.arange(ranked.shape[1])] = self.to_new[ranked]
        if (~known).any():  # users it never saw: its popularity list, as the scorer serves them
            ranked = top_k_of_order(self.champion.popular, excluded[~known], k)
            best[np.flatnonzero(~known)[:, None], np.arange(ranked.shape[1])] = self.to_new[ranked]
        return best


def compare(
    champion: Champion,
    challenger: Ranker,
    user_ids: list[str],
    item_ids: list[str],
    train: sparse.csr_matrix,
    test: sparse.csr_matrix,
    max_users: int,
    min_users: int,
    seed,
) -> dict:
    """The metrics.json ``champion`` section: both models on this build's test holdout, paired."""
    ranker = InNewSpace(champion, user_ids, item_ids)
    seen_by_champion = ranker.seen_in_new_space()
    leaked = test.multiply(seen_by_champion).tocsr()
    relevant = (test - leaked).tocsr()
    relevant.eliminate_zeros()
    seen = (train + seen_by_champion).tocsr()
    users = sample_users(relevant, max_users, seed)
    section = {
        "build": champion.build,
        "folder": str(champion.folder),
        "model_sha256": champion.model_sha256,
        "family": champion.family,
        "users": len(users),
        "users_known_to_champion": int((ranker.user_row[users] >= 0).sum()),
        "held_out_pairs_dropped_as_seen_by_champion": int(leaked.nnz),
    }
    if len(users) < min_users:
        return {
            **section,
            "error": (
                f"only {len(users)} test users have held-out items the champion was not trained on, fewer "
                "than "
                f"EVAL_MIN_USERS {min_users}: a comparison on them would not count"
            ),
        }
    ours = per_user(challenger, users, seen, relevant)["ndcg_at_k"]
    theirs = per_user(ranker, users, seen, relevant)["ndcg_at_k"]
    return {
        **section,
        "model_ndcg": round(float(ours.mean()), 6),
        "champion_ndcg": round(float(theirs.mean()), 6),
        # two-sided 90 %: its lower end is the one-sided 95 % bound the gate reads
        "ndcg_gain": paired_gain(ours, theirs, confidence=0.90),
    }
