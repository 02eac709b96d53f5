"""Names inside a model folder, and the state a folder is in."""

from __future__ import annotations

import enum
from pathlib import Path

COMPLETE = "complete.txt"
FAILED = "failed.txt"
MANIFEST = "manifest.json"
METRICS = "metrics.json"
MODEL_DIR = "model"

# Artifacts under model/ that the trainer writes and the scorer reads. One scoring path:
# scores = ITEM_VECTORS @ user_vector, where the user vector is a row of USER_VECTORS
# (dense .npy for factor models, CSR .npz for item-item models whose user vector is the
# user's interaction row). Exactly one file of each pair exists. A dense ITEM_VECTORS behind
# sparse user rows is stored column-major: its transpose, the scorer's operand, maps row-major; a
# sparse one is stored CSC, whose arrays are the CSR of that transpose (CSR files are read too).
USER_VECTORS_DENSE = "user_vectors.npy"
USER_VECTORS_SPARSE = "user_vectors.npz"
ITEM_VECTORS_DENSE = "item_vectors.npy"
ITEM_VECTORS_SPARSE = "item_vectors.npz"
USER_IDS = "user_ids.json"  # JSON list, index = row of USER_VECTORS and SEEN
ITEM_IDS = "item_ids.json"  # JSON list, index = row of ITEM_VECTORS
SEEN = "seen.npz"  # CSR users x items: what each user already interacted with
POPULAR = "popular.npy"  # int32 item indices, most popular first
POPULAR_SCORES = "popular_scores.npy"  # float32, aligned with POPULAR
MODEL_CARD = "model.json"  # {"family", "params", "n_users", "n_items", ...}
# float32 per user row: the share of training users whose history is more typical (trainer.novelty);
# optional (releases before it have none).
NOVELTY = "novelty.npy"
# The model card, a self-contained HTML page (trainer.modelcard) the scorer serves at /model-card;
# optional (releases before it have none).
CARD = "card.html"

# Names the trainer uses while a file is being written; never listed in a manifest.
TMP_SUFFIX = ".tmp"


class FolderState(enum.Enum):
    MISSING = "missing"  # no folder yet: training has not started
    INCOMPLETE = "incomplete"  # folder without a marker: training running, or crashed
    FAILED = "failed"  # failed.txt: training gave up, with a reason
    COMPLETE = "complete"  # complete.txt: written in full (checksums still to verify)


def folder_state(folder: str | Path) -> FolderState:
    folder = Path(folder)
    if (folder / COMPLETE).is_file():
        return FolderState.COMPLETE
    if (folder / FAILED).is_file():
        return FolderState.FAILED
    if folder.is_dir():
        return FolderState.INCOMPLETE
    return FolderState.MISSING


def read_failed_reason(folder: str | Path) -> str:
    try:
        return (Path(folder) / FAILED).read_text(encoding="utf-8").strip() or "(no reason given)"
    except OSError as exc:
        return f"(failed.txt unreadable: {exc})"
