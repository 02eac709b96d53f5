"""Writing the served model under MODELFOLDER/model/ with the names of modelshare.layout."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import sparse

import modelshare
from modelshare import MODEL_DIR, layout
from trainer import drift, novelty
from trainer.families import Servable


def _array(value: np.ndarray) -> Callable:
    return lambda handle: np.save(handle, value, allow_pickle=False)


def _matrix(value: sparse.csr_matrix | sparse.csc_matrix) -> Callable:
    # Uncompressed: the scorer loads it at start-up and the share is not short of bytes. In the
    # format given: item-item matrices go as CSC, the CSR arrays of the scorer's operand.
    return lambda handle: sparse.save_npz(handle, value, compressed=False)


def _json(value) -> Callable:
    return lambda handle: handle.write(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def write_served(
    folder: Path,
    user_ids: list[str],
    item_ids: list[str],
    seen: sparse.csr_matrix,
    popularity: np.ndarray,
    model: Servable,
    card: dict,
    log,
) -> None:
    """Every file the scorer reads: ids, seen items, popularity, the model's vectors, each user's
    novelty and the card."""
    started = time.monotonic()
    binary_seen = seen.tocsr().astype(np.float32)
    binary_seen.data[:] = 1.0
    user_novelty, novelty_card = novelty.user_novelty(binary_seen)
    log("novelty", seconds=round(time.monotonic() - started, 3))
    popular = np.argsort(-popularity, kind="stable").astype(np.int32)
    if sparse.issparse(model.user_vectors):
        user_file, user_writer = layout.USER_VECTORS_SPARSE, _matrix(sparse.csr_matrix(model.user_vectors))
    else:
        user_file, user_writer = (
            layout.USER_VECTORS_DENSE,
            _array(model.user_vectors.astype(np.float32, copy=False)),
        )
    item_vectors = model.item_vectors
    if sparse.issparse(item_vectors):
        item_file, item_writer = layout.ITEM_VECTORS_SPARSE, _matrix(item_vectors)
    else:
        # copy=False keeps the memory order too: EASE's items are written column-major (families).
        item_file, item_writer = (
            layout.ITEM_VECTORS_DENSE,
            _array(item_vectors.astype(np.float32, copy=False)),
        )
    card = {**card, "user_vectors": user_file, "item_vectors": item_file, "novelty": novelty_card}
    files = [
        (layout.USER_IDS, _json(user_ids)),
        (layout.ITEM_IDS, _json(item_ids)),
        (layout.SEEN, _matrix(binary_seen)),
        (layout.POPULAR, _array(popular)),
        (layout.POPULAR_SCORES, _array(popularity[popular].astype(np.float32))),
        (user_file, user_writer),
        (item_file, item_writer),
        (layout.NOVELTY, _array(user_novelty)),
        (layout.MODEL_CARD, _json(card)),
    ]
    target = folder / MODEL_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name, writer in files:
        # Streamed into a temporary name, fsynced, renamed: a file under its final name is whole.
        modelshare.atomic_write(target / name, writer)
        log("write-file", file=f"{MODEL_DIR}/{name}", bytes=(target / name).stat().st_size)


def write_report(folder: Path, profile: dict, drift_report: dict | None, card_html: str, log) -> None:
    """What a person reads about the release, beside the model: the data profile (which the next
    build's drift report compares with), the drift report against the champion, the model card."""
    target = folder / MODEL_DIR
    files = [
        (drift.PROFILE, _json(profile)),
        (layout.CARD, lambda handle: handle.write(card_html.encode("utf-8"))),
    ]
    if drift_report is not None:
        files.append((drift.REPORT, _json(drift_report)))
    for name, writer in files:
        modelshare.atomic_write(target / name, writer)
        log("write-file", file=f"{MODEL_DIR}/{name}", bytes=(target / name).stat().st_size)
