"""One JSON object per line on stdout: what the cluster's log pipeline indexes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096  # what Kubernetes keeps of it


def log_event(app: str, event: str, **fields) -> None:
    record = {"ts": round(time.time(), 3), "app": app, "event": event, **fields}
    sys.stdout.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def write_termination_message(message: str, path: str | None = None) -> None:
    """Kubernetes shows this file's content as the container's termination message (`kubectl
    describe pod`, and pulumi-kubernetes' error when a Job or pod fails). ``path`` (TERMINATION_LOG)
    is created; the default path is written only when it exists (in a container)."""
    target = Path(path or DEFAULT_TERMINATION_LOG)
    if not path and not target.exists():
        return
    try:
        target.write_text(message[:TERMINATION_MESSAGE_LIMIT] + "\n", encoding="utf-8")
    except OSError:
        pass  # read-only or absent: the log line still says it
