"""``python -m modelshare.promote``: copy a verified release from the source stack's share into
this stack's share, for promotion (prod takes dev's model bytes verbatim, no retraining).

SOURCE_MODELFOLDER  the source release folder (a read-only mount of the source stack's share)
MODELFOLDER         this stack's folder for the same build
BUILD_NUMBER        the build; both manifests must name it

The copy is checked file by file against the *source* manifest before complete.txt is written,
so the waiter of the promoted release sees the same model_sha256 as the source release.
Idempotent like the trainer: a destination that is complete and verifies is left alone.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from modelshare.config import ConfigError, env_str
from modelshare.layout import COMPLETE, MANIFEST, FolderState, folder_state
from modelshare.logs import log_event
from modelshare.manifest import IntegrityError, check_files, mark_complete, verify
from modelshare.publish import PublishError, mark_failed, publish, remove_stale_staging, staging_folder

APP = "promote"


def promote(source: Path, dest: Path, build: str) -> str:
    """Copy and verify; return "copied" or "already-complete"."""
    manifest = verify(source, build)
    if folder_state(dest) is FolderState.COMPLETE:
        if verify(dest, build)["files"] != manifest["files"]:
            raise IntegrityError(f"{dest} holds a different model for build {build} than {source}")
        return "already-complete"
    staging = staging_folder(dest)  # built whole beside dest, then published in one rename
    try:
        for rel in manifest["files"]:
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, target)
        shutil.copyfile(source / MANIFEST, staging / MANIFEST)
        check_files(staging, manifest["files"])
        mark_complete(staging, build)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not publish(staging, dest):  # another copy finished first
        if verify(dest, build)["files"] != manifest["files"]:
            raise IntegrityError(f"{dest} holds a different model for build {build} than {source}")
        return "already-complete"
    remove_stale_staging(dest)
    return "copied"


def main() -> int:
    try:
        source = Path(env_str("SOURCE_MODELFOLDER"))
        dest = Path(env_str("MODELFOLDER"))
        build = env_str("BUILD_NUMBER")
    except ConfigError as exc:
        log_event(APP, "config-error", error=str(exc))
        return 2
    try:
        outcome = promote(source, dest, build)
    except (IntegrityError, PublishError, OSError) as exc:
        try:
            mark_failed(dest, f"promotion of build {build} from {source} failed: {exc}")
        except (PublishError, OSError):
            pass
        log_event(APP, "failed", build=build, source=str(source), error=str(exc))
        return 1
    log_event(APP, outcome, build=build, source=str(source), dest=str(dest), marker=COMPLETE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
