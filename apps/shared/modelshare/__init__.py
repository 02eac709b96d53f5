"""The model share contract (docs/CONTRACTS.md, section 1), shared by trainer, waiter and scorer.

    /mnt/models/<build>/          MODELFOLDER, one per release, never overwritten
        model/...                 artifacts (names in ``modelshare.layout``)
        metrics.json              evaluation results
        manifest.json             provenance + sha256 and size of every other file
        complete.txt              written last
        failed.txt                instead of complete.txt, one actionable line

A folder appears whole: it is built in a staging folder beside it and published by one rename
(``modelshare.publish``), so a complete folder never changes again, whatever runs concurrently.

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
from modelshare.logs import log_event, write_termination_message
from modelshare.manifest import (
    IntegrityError,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_files,
    make_manifest,
    mark_complete,
    model_sha256,
    read_json,
    release_mismatches,
    sha256_file,
    verify,
)
from modelshare.publish import (
    PublishError,
    clear_incomplete,
    mark_failed,
    publish,
    remove_stale_staging,
    staging_folder,
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
    "PublishError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_files",
    "clear_incomplete",
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
    "publish",
    "read_json",
    "release_mismatches",
    "remove_stale_staging",
    "sha256_file",
    "staging_folder",
    "verify",
    "write_termination_message",
]
