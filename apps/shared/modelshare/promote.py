"""``python -m modelshare.promote``: copy a verified release from the source stack's share into
this stack's share, for promotion (prod takes dev's model bytes verbatim, no retraining).

SOURCE_MODELFOLDER  the source release folder (a read-only mount of the source stack's share)
MODELFOLDER         this stack's folder for the same build
BUILD_NUMBER        the build; both manifests must name it
GATE_*              this stack's quality gate (modelshare.gate), the same its waiter gets
TERMINATION_LOG     where the outcome goes (default /dev/termination-log, written only if it exists)

The source's metrics.json is verified against its manifest and held to *this* stack's gate before
anything is written; then every file is copied into a staging folder, each checked against the
source manifest (size and sha256) in the same pass that copies it, so what is checked is exactly
what is written, with one read of the source; two files at a time, largest first, so one file's
read from the share overlaps the other's sha256. The staging folder is completed and published in
one rename, so the waiter of the promoted release sees the same model_sha256 as the source
release, and verifies every file again on this stack's share before its scorer starts. A refusal
ends the process non-zero with the reason as its termination message, naming the damaged file or
the gate, which is what `pulumi up` prints when the Job fails (components/promotion.py): a build
below this stack's gate is refused in the seconds reading metrics.json takes, a damaged file as
soon as the copy reaches it, instead of the waiter crash-looping until the rollout deadline.
Idempotent like the trainer: a destination that is complete and verifies is left alone.

Exit codes: 0 copied, or already complete; 1 the source or the copy does not verify, or the copy
failed (MODELFOLDER then holds only failed.txt); 2 configuration; 5 below the gate (nothing written).
"""

from __future__ import annotations

import enum
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from modelshare.config import ConfigError, env_str
from modelshare.gate import Gate, Verdict, evaluate
from modelshare.layout import COMPLETE, MANIFEST, METRICS, FolderState, folder_state
from modelshare.logs import log_event, write_termination_message
from modelshare.manifest import (
    IntegrityError,
    check_files,
    copy_verified,
    mark_complete,
    read_json,
    read_manifest,
    verify,
)
from modelshare.publish import PublishError, mark_failed, publish, remove_stale_staging, staging_folder

APP = "promote"
# Files copied at once. Reading and writing release the GIL, and so does hashlib on large chunks:
# two copies keep the disk and the hash busy together (bench/promotion.py; the Job has the trainer's
# resources, two CPUs by default).
COPY_THREADS = 2


class Exit(enum.IntEnum):
    PROMOTED = 0
    FAILED = 1  # the source or the copy does not verify, or copying failed
    CONFIG = 2  # an environment variable is missing or malformed
    GATE = 5  # below this stack's quality gate (the waiter's code for the same refusal)


class BelowGate(Exception):
    """The source's model is below this stack's gate; the message lists every failed check."""


def promote(source: Path, dest: Path, build: str, gate: Gate | None = None) -> str:
    """Hold the source to `gate`, copy it checking each file against the source manifest as it is
    copied (copy_files), publish; return "copied" or "already-complete". Raises BelowGate before
    anything is written when the model does not pass `gate`, IntegrityError naming a damaged source
    file."""
    manifest = read_manifest(source, build)
    files = manifest["files"]
    if METRICS in files:  # the gate reads metrics.json: verified before it decides anything
        check_files(source, {METRICS: files[METRICS]})
    verdict = gate_verdict(gate or Gate(), source, manifest, dest)
    if not verdict.passed:
        raise BelowGate("; ".join(verdict.failures))
    if folder_state(dest) is FolderState.COMPLETE:
        if verify(dest, build)["files"] != files:
            raise IntegrityError(f"{dest} holds a different model for build {build} than {source}")
        return "already-complete"
    staging = staging_folder(dest)  # built whole beside dest, then published in one rename
    try:
        copy_files(source, staging, files)
        shutil.copyfile(source / MANIFEST, staging / MANIFEST)
        if read_json(staging / MANIFEST) != manifest:
            raise IntegrityError(f"{source / MANIFEST} changed while build {build} was being copied")
        mark_complete(staging, build)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not publish(staging, dest):  # another copy finished first
        if verify(dest, build)["files"] != files:
            raise IntegrityError(f"{dest} holds a different model for build {build} than {source}")
        return "already-complete"
    remove_stale_staging(dest)
    return "copied"


def copy_files(source: Path, staging: Path, files: dict) -> None:
    """Copy every file of the manifest's `files` from source into staging, each checked against its
    entry as it is copied, COPY_THREADS at a time, largest first. The first failure is raised only
    once no copy is running any more, so the caller's clean-up of staging cannot race a writer."""
    for rel in files:
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
    largest_first = sorted(files, key=lambda rel: (-_size(files[rel]), rel))
    pool = ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="copy")
    try:
        copies = [pool.submit(copy_verified, source / r, staging / r, files[r]) for r in largest_first]
        wait(copies, return_when=FIRST_EXCEPTION)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # a failure cancels the copies not started
    for copy in copies:
        error = None if copy.cancelled() else copy.exception()
        if error is not None:
            raise error


def _size(entry: object) -> int:
    size = entry.get("bytes") if isinstance(entry, dict) else None
    return size if isinstance(size, int) else 0


def gate_verdict(gate: Gate, source: Path, manifest: dict, dest: Path) -> Verdict:
    """`gate` on the source's metrics.json (verified with the rest of its manifest). The release's
    own folder is `dest`: a champion gate naming it is this release, not a challenger."""
    metrics = None
    if METRICS in manifest["files"]:
        try:
            metrics = read_json(source / METRICS)
        except (OSError, ValueError):
            metrics = None  # the gate then names the missing figure
    return evaluate(gate, metrics, dest)


def _finish(code: Exit, event: str, message: str, **fields: object) -> int:
    log_event(APP, event, exit_code=int(code), reason=message, **fields)
    write_termination_message(message, os.environ.get("TERMINATION_LOG", "").strip() or None)
    return code


def main() -> int:
    try:
        source = Path(env_str("SOURCE_MODELFOLDER"))
        dest = Path(env_str("MODELFOLDER"))
        build = env_str("BUILD_NUMBER")
        gate = Gate.from_env()
    except ConfigError as exc:
        return _finish(Exit.CONFIG, "config-error", f"configuration error: {exc}")
    started = time.perf_counter()
    try:
        outcome = promote(source, dest, build, gate)
    except BelowGate as exc:
        return _finish(
            Exit.GATE,
            "gate-failed",
            f"promotion of build {build} refused: it is below this stack's quality gate: {exc}",
            build=build,
            source=str(source),
        )
    except (IntegrityError, PublishError, OSError) as exc:
        reason = f"promotion of build {build} from {source} failed: {exc}"
        try:
            mark_failed(dest, reason)
        except (PublishError, OSError):
            pass
        return _finish(Exit.FAILED, "failed", reason, build=build, source=str(source))
    seconds = round(time.perf_counter() - started, 3)
    return _finish(
        Exit.PROMOTED,
        outcome,
        f"build {build} promoted from {source}: {outcome} in {seconds} s, every file verified against "
        "the source manifest",
        build=build,
        source=str(source),
        dest=str(dest),
        marker=COMPLETE,
        seconds=seconds,
    )


if __name__ == "__main__":
    sys.exit(main())
