"""One JSON object per line on stdout: what the cluster's log pipeline indexes."""

from __future__ import annotations

import json
import sys
import time


def log_event(app: str, event: str, **fields) -> None:
    record = {"ts": round(time.time(), 3), "app": app, "event": event, **fields}
    sys.stdout.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
    sys.stdout.flush()
