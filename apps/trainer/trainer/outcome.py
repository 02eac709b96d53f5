"""How a training run ends: its exit code, its termination message and the failed marker.

Every outcome of ``python -m trainer`` (trainer.main) ends here: the exit codes (trainer.main's
docstring says what each means), `Stop` for an outcome decided deep in a run, the summary of a
complete folder that ends the termination message (the program reads it back into the release's
ledger record, components/training_results.py), failed.txt with the reason for the waiter, and the
check of a folder that is already complete (never changed: it must be this release's and pass the
gate). The events log of the whole trainer (`log`) is here too, as every outcome is logged.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import modelshare
from modelshare import METRICS, PublishError
from modelshare.gate import Gate
from modelshare.gate import evaluate as evaluate_gate

APP = "trainer"
TRAINED, TRAINING_FAILED, CONFIG, GATE, OTHER_RELEASE = 0, 1, 2, 3, 4


class Stop(Exception):
    """The run ends with this exit code and reason (the termination message)."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def log(event: str, **fields) -> None:
    modelshare.log_event(APP, event, **fields)


SUMMARY_LIMIT = 3000  # bytes of the JSON line; the termination message keeps 4096


def summary(folder: Path) -> dict:
    """What a complete folder holds, as the termination message's last line: the program reads it
    back into the release's ledger record (components/training_results.py)."""
    manifest = modelshare.read_json(folder / modelshare.MANIFEST)
    metrics = modelshare.read_json(folder / METRICS)
    data = manifest.get("data") or {}
    files = data.get("files") or []
    listing = "".join(f"{f.get('name')} {f.get('sha256')}\n" for f in files)
    paired = metrics.get("champion") or {}
    result = {
        "build": manifest.get("build"),
        "modelSha256": modelshare.model_sha256(folder),
        "gitSha": manifest.get("git_sha"),
        "trainerImage": manifest.get("trainer_image"),
        # one digest of the inputs: sha256 over "<name> <sha256>" lines (each file's is in the manifest)
        "data": {
            "source": data.get("source"),
            "sha256": hashlib.sha256(listing.encode()).hexdigest(),
            "files": len(files),
            "rowsUsed": data.get("rows_used"),
        },
        "family": metrics.get("family"),
        "params": metrics.get("params"),
        "test": metrics.get("model"),
        "liftNdcg": metrics.get("lift_ndcg"),
        "gatePassed": (metrics.get("gate") or {}).get("passed"),
        "champion": {key: paired.get(key) for key in ("build", "ndcg_gain", "error") if key in paired}
        or None,
    }
    if len(json.dumps(result)) > SUMMARY_LIMIT:
        result["params"] = "see metrics.json"
    return result


def with_summary(message: str, folder: Path) -> str:
    """The reason a person reads first, then the summary line the program reads."""
    try:
        line = json.dumps(summary(folder), separators=(",", ":"), default=str)
    except (OSError, ValueError, KeyError) as exc:
        log("summary-not-written", error=str(exc))
        return message
    return message[: modelshare.logs.TERMINATION_MESSAGE_LIMIT - len(line) - 2] + "\n" + line


def _identity() -> dict:
    return {
        "git_sha": os.environ.get("GIT_SHA", "").strip() or None,
        "trainer_image": os.environ.get("TRAINER_IMAGE", "").strip() or None,
    }


def already_complete(folder: Path, build: str) -> tuple[int, str]:
    """A complete folder is never changed: check that it is this release's, and its gate again."""
    modelshare.remove_stale_staging(folder)
    try:
        manifest = modelshare.read_json(folder / modelshare.MANIFEST)
    except (OSError, ValueError) as exc:
        return OTHER_RELEASE, f"build {build}: {folder} is complete but its manifest is unreadable: {exc}"
    mismatches = modelshare.release_mismatches(manifest, build=build, **_identity())
    if mismatches:
        return OTHER_RELEASE, (
            f"build {build}: {folder} already holds a model of another release (its manifest records "
            + "; ".join(mismatches)
            + "); it is never changed: deploy under a new build id"
        )
    try:
        metrics = modelshare.read_json(folder / METRICS)
    except (OSError, ValueError):
        metrics = None
    verdict = evaluate_gate(Gate.from_env(), metrics, folder)
    if not verdict.passed:
        return GATE, f"build {build} is below the quality gate: " + "; ".join(verdict.failures)
    return TRAINED, f"build {build} is complete (trained earlier); gate: " + (
        "; ".join(verdict.checks) or "no gate set"
    )


def fail(folder: Path, reason: str) -> None:
    try:
        modelshare.mark_failed(folder, reason)
    except (OSError, PublishError) as exc:
        log("failed-marker-not-written", folder=str(folder), error=str(exc))


def training_failed(folder: Path, build: str, reason: str, **fields) -> int:
    """Mark the folder failed for the waiter and end with the reason as the termination message."""
    fail(folder, reason)
    return finish(
        TRAINING_FAILED,
        f"training of build {build} failed: {reason}",
        "failed",
        build=build,
        reason=reason,
        **fields,
    )


def finish(code: int, message: str, event: str, **fields) -> int:
    """Log the outcome and leave ``message`` as the termination message."""
    log(event, exit_code=code, **{"reason": message, **fields})
    modelshare.write_termination_message(message, os.environ.get("TERMINATION_LOG", "").strip() or None)
    return code
