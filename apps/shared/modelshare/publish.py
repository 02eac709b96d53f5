"""Publishing a release folder in one step, so that a complete folder never changes again.

An attempt (a training or promotion pod) builds the whole folder, complete.txt included, in a private
staging folder beside it (``.<build>.<random>.staging``, on the same share), then renames it to
MODELFOLDER. A rename onto a folder that is not empty fails, so whatever runs at the same time
(a pod replaced while the old one still runs, a lost node's pod coming back), the first complete
folder stays as it is and a later attempt finds it and discards its own.

A failure is published the same way: a folder holding only failed.txt. The steps that make room for a
new attempt are each atomic and only ever remove a failed attempt: unlink MODELFOLDER/failed.txt
(a complete folder never contains one, since nothing is ever written into an existing folder),
rmdir MODELFOLDER (which only removes an empty folder), and for a folder that an attempt wrote in
place (an older trainer, or your own) a rename of the whole folder out of the way.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from modelshare.layout import (
    COMPLETE,
    FAILED,
    MANIFEST,
    METRICS,
    MODEL_DIR,
    TMP_SUFFIX,
    FolderState,
    folder_state,
)
from modelshare.manifest import _fsync_dir, atomic_write_text

STAGING_SUFFIX = ".staging"
RELEASE_NAMES = {MODEL_DIR, METRICS, MANIFEST, COMPLETE, FAILED}
ATTEMPTS = 20  # rounds of making room; each round only loses to another attempt's rename


class PublishError(RuntimeError):
    """MODELFOLDER holds something that is neither complete nor a failed attempt: it is not cleared."""


def staging_folder(folder: str | Path) -> Path:
    """A new private folder beside ``folder`` for one attempt to build in."""
    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:12]}{STAGING_SUFFIX}")
    staging.mkdir(parents=True)
    return staging


def publish(staging: str | Path, folder: str | Path) -> bool:
    """Rename ``staging`` to ``folder``. True when published; False when ``folder`` was already
    complete (another attempt won: ``staging`` is removed and ``folder`` left as it is)."""
    staging, folder = Path(staging), Path(folder)
    for _ in range(ATTEMPTS):
        try:
            os.rename(staging, folder)
        except OSError:
            if folder_state(folder) is FolderState.COMPLETE:
                shutil.rmtree(staging, ignore_errors=True)
                return False
            _make_room(folder)
            continue
        _fsync_dir(folder.parent)
        return True
    raise PublishError(f"could not publish {staging} as {folder}: other attempts kept replacing it")


def clear_incomplete(folder: str | Path) -> None:
    """Take away a failed or crashed attempt's folder (not a complete one) before a new attempt."""
    folder = Path(folder)
    if folder_state(folder) is not FolderState.COMPLETE:
        _make_room(folder)


def _make_room(folder: Path) -> None:
    try:
        (folder / FAILED).unlink()
    except FileNotFoundError:
        pass
    try:
        folder.rmdir()
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    if folder_state(folder) is FolderState.COMPLETE:
        return
    # An attempt that wrote into the folder itself (an older trainer, or your own): move it away
    # whole, in one rename, and put it back at once should it have been completed meanwhile.
    leftovers = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    foreign = [name for name in leftovers if name not in RELEASE_NAMES and not name.endswith(TMP_SUFFIX)]
    if foreign:
        raise PublishError(
            f"{folder} holds {foreign[:5]}, which a release folder never has: refusing to clear it "
            "(MODELFOLDER must be the release's own folder, /mnt/models/<build>)"
        )
    trash = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:12]}.cleared")
    try:
        os.rename(folder, trash)
    except OSError:
        return  # gone or replaced meanwhile: the next round looks again
    if (trash / COMPLETE).is_file():
        os.rename(trash, folder)
        return
    shutil.rmtree(trash, ignore_errors=True)


def mark_failed(folder: str | Path, reason: str) -> bool:
    """Publish a folder holding only failed.txt with ``reason`` unless ``folder`` is complete.
    False when it was complete (then nothing is written)."""
    folder = Path(folder)
    if folder_state(folder) is FolderState.COMPLETE:
        return False
    staging = staging_folder(folder)
    atomic_write_text(staging / FAILED, " ".join(reason.split()) + "\n")
    return publish(staging, folder)


def remove_stale_staging(folder: str | Path) -> None:
    """Once ``folder`` is complete, the staging folders of its other attempts can only be thrown
    away (an attempt still writing into one fails and finds the folder complete)."""
    folder = Path(folder)
    for stale in folder.parent.glob(f".{folder.name}.*{STAGING_SUFFIX}"):
        shutil.rmtree(stale, ignore_errors=True)
