"""The scorer's environment (docs/CONTRACTS.md, section 2)."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from modelshare import ConfigError, cpus, env_float, env_int, env_str
from scorer.contract import MAX_EXCLUDE, MAX_EXCLUDE_ID

# The feedback dedupe table's file (scorer.feedback), set by `python -m scorer` for its workers.
FEEDBACK_TABLE_ENV = "SCORER_FEEDBACK_TABLE"
_EVENT = re.compile(r"[a-z0-9_-]{1,32}")


@dataclass(frozen=True)
class Settings:
    modelfolder: str
    build: str
    git_sha: str | None
    port: int
    probe_port: int  # /healthz and /readyz for the kubelet, answered apart from the serving port
    liveness_stall_seconds: float  # a worker whose event loop has not run for longer is not alive
    host: str
    workers: int
    max_batch_users: int
    prediction_log_sample: float  # share of requests whose answers go to the prediction log
    request_timeout_seconds: float
    feedback_events: tuple[str, ...] = ("click", "purchase")  # the events POST /feedback accepts
    feedback_window_seconds: float = 86400.0  # how long after a list its feedback is accepted
    feedback_key_file: str | None = None  # the key that authenticates request ids (scorer.feedback)

    @property
    def max_body_bytes(self) -> int:
        # Room for every allowed user id at up to 1 KiB each, and for the largest `exclude`;
        # anything larger is refused (413) before it is read into memory.
        return 64 * 1024 + 1024 * self.max_batch_users + MAX_EXCLUDE * (MAX_EXCLUDE_ID + 8)


def from_env() -> Settings:
    """Raise ConfigError naming the variable when one is missing or malformed."""
    modelfolder = env_str("MODELFOLDER")
    if not os.path.isabs(modelfolder):
        raise ConfigError(f"environment variable MODELFOLDER must be an absolute path, got {modelfolder!r}")
    port, probe_port = env_int("PORT", 8080, minimum=1), env_int("PROBE_PORT", 8081, minimum=1)
    for name, value in (("PORT", port), ("PROBE_PORT", probe_port)):
        if value > 65535:
            raise ConfigError(f"environment variable {name} must be <= 65535, got {value}")
    if probe_port == port:
        raise ConfigError(f"environment variable PROBE_PORT must differ from PORT ({port})")
    sample = env_float("PREDICTION_LOG_SAMPLE", 1.0, minimum=0.0)
    if sample > 1.0:
        raise ConfigError(f"environment variable PREDICTION_LOG_SAMPLE must be between 0 and 1, got {sample}")
    build = env_str("BUILD_NUMBER")
    if not (build.isascii() and build.isprintable()):  # it goes into every response's X-Model-Build
        raise ConfigError(f"environment variable BUILD_NUMBER must be printable ASCII, got {build!r}")
    events = tuple(event.strip() for event in env_str("FEEDBACK_EVENTS", "click,purchase").split(","))
    if not all(_EVENT.fullmatch(event) for event in events) or len(set(events)) != len(events):
        raise ConfigError(
            "environment variable FEEDBACK_EVENTS must be distinct comma-separated names "
            f"([a-z0-9_-], up to 32 characters), got {','.join(events)!r}"
        )
    key_file = os.environ.get("FEEDBACK_KEY_FILE", "").strip() or None
    try:
        read_key(key_file)  # now, so that a bad key stops the pod at start
    except (OSError, ValueError) as exc:
        raise ConfigError(f"environment variable FEEDBACK_KEY_FILE: {exc}") from None
    return Settings(
        modelfolder=modelfolder,
        build=build,
        git_sha=os.environ.get("GIT_SHA", "").strip() or None,
        port=port,
        probe_port=probe_port,
        liveness_stall_seconds=env_float("LIVENESS_STALL_SECONDS", 10.0, minimum=0.1),
        host=env_str("HOST", "0.0.0.0"),
        workers=env_int("WORKERS", cpus.whole(), minimum=1),
        max_batch_users=env_int("MAX_BATCH_USERS", 1000, minimum=1),
        prediction_log_sample=sample,
        request_timeout_seconds=env_float("REQUEST_TIMEOUT_SECONDS", 10.0, minimum=0.1),
        feedback_events=events,
        feedback_window_seconds=env_float("FEEDBACK_WINDOW_SECONDS", 86400.0, minimum=1.0),
        feedback_key_file=key_file,
    )


def read_key(path: str | None) -> bytes | None:
    """The key that authenticates request ids (scorer.feedback), from FEEDBACK_KEY_FILE: a mounted
    Secret, never the environment itself. None without one."""
    if not path:
        return None
    key = Path(path).read_bytes().strip()
    if len(key) < 16:
        raise ValueError(f"{path} must hold a key of at least 16 bytes")
    return key


@functools.cache
def current() -> Settings:
    """The settings of this process, read once (the app and each connection's protocol share them)."""
    return from_env()
