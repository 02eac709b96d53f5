"""The model share contract (docs/CONTRACTS.md, section 1), shared by trainer, waiter and scorer.

    /mnt/models/<build>/          MODELFOLDER, one per release, never overwritten
        model/...                 artifacts (names in ``modelshare.layout``)
        metrics.json              evaluation results
        manifest.json             provenance + sha256 and size of every other file
        complete.txt              written last, atomically
        failed.txt                written instead of complete.txt, one actionable line

Every image copies this package beside its app, so there is exactly one definition of the
marker names, the manifest format and checksum verification.
"""

from modelshare import cpus
from modelshare.config import ConfigError, env_float, env_int, env_str
from modelshare.layout import (
    COMPLETE,
    FAILED,
    MANIFEST,
    METRICS,
    MODEL_DIR,
    FolderState,
    folder_state,
    read_failed_reason,
)
from modelshare.logs import log_event
from modelshare.manifest import (
    IntegrityError,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_files,
    make_manifest,
    mark_complete,
    mark_failed,
    model_sha256,
    read_json,
    sha256_file,
    verify,
)

__all__ = [
    "COMPLETE",
    "FAILED",
    "MANIFEST",
    "METRICS",
    "MODEL_DIR",
    "ConfigError",
    "FolderState",
    "IntegrityError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_files",
    "cpus",
    "env_float",
    "env_int",
    "env_str",
    "folder_state",
    "log_event",
    "make_manifest",
    "mark_complete",
    "mark_failed",
    "model_sha256",
    "read_failed_reason",
    "read_json",
    "sha256_file",
    "verify",
]
