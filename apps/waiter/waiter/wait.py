"""Hold the scorer's pod until its model folder is complete, verified and good enough.

Polls (network shares have no inotify) and exits with one of the codes below; the reason goes to
stdout as a JSON line and to the termination message that `kubectl describe pod` shows.
"""

from __future__ import annotations

import enum
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import modelshare
from modelshare import MANIFEST, METRICS, ConfigError, FolderState, IntegrityError
from modelshare.gate import Gate, evaluate

APP = "waiter"
# Once manifest.json exists the trainer is writing its last marker (the manifest needs every
# other file's checksum, complete.txt comes right after), so look again soon: this keeps the time
# from complete.txt to exit well under a second with the default 1 s poll.
FINISHING_POLL_SECONDS = 0.1
STILL_WAITING_EVERY_SECONDS = 30.0


class Exit(enum.IntEnum):
    READY = 0
    CONFIG = 2  # an environment variable is missing or malformed
    TRAINING_FAILED = 3  # failed.txt: the trainer gave up
    INTEGRITY = 4  # complete.txt, but a checksum or size does not match, or the manifest is another release's
    GATE = 5  # the model is below the quality gate
    TIMEOUT = 6  # WAIT_TIMEOUT_SECONDS passed without complete.txt


@dataclass(frozen=True)
class Settings:
    folder: Path
    build: str
    # What the release recorded at training: the manifest must say the same (None: not checked).
    git_sha: str | None
    trainer_image: str | None
    poll_seconds: float
    timeout_seconds: float
    gate: Gate
    termination_log: str | None


def _positive(name: str, default: float) -> float:
    value = modelshare.env_float(name, default, minimum=0.0)
    if value <= 0:
        raise ConfigError(f"environment variable {name} must be a number > 0, got {value}")
    return value


def _optional(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def read_settings() -> Settings:
    folder = modelshare.env_str("MODELFOLDER")
    if not os.path.isabs(folder):
        raise ConfigError(f"environment variable MODELFOLDER must be an absolute path, got {folder!r}")
    return Settings(
        folder=Path(folder),
        build=modelshare.env_str("BUILD_NUMBER"),
        git_sha=_optional("GIT_SHA"),
        trainer_image=_optional("TRAINER_IMAGE"),
        poll_seconds=_positive("POLL_INTERVAL_SECONDS", 1.0),
        timeout_seconds=modelshare.env_float("WAIT_TIMEOUT_SECONDS", 3600.0, minimum=0.0),
        gate=Gate.from_env(),
        termination_log=_optional("TERMINATION_LOG"),
    )


def _waiting_for(settings: Settings, state: FolderState) -> str:
    if state is FolderState.MISSING:
        return f"{settings.folder} to be created by the training job"
    return f"{settings.folder / modelshare.COMPLETE} (training is running, or crashed)"


def _poll_seconds(settings: Settings, state: FolderState) -> float:
    if state is FolderState.INCOMPLETE and (settings.folder / MANIFEST).is_file():
        return min(settings.poll_seconds, FINISHING_POLL_SECONDS)
    return settings.poll_seconds


class Done(Exception):
    def __init__(self, code: Exit, event: str, message: str, **fields):
        super().__init__(message)
        self.code, self.event, self.message, self.fields = code, event, message, fields


def wait_for_complete(settings: Settings) -> None:
    """Return once complete.txt exists; raise Done on failed.txt or the timeout."""
    started = time.monotonic()
    deadline = started + settings.timeout_seconds
    last_state, last_report = None, started
    while True:
        state = modelshare.folder_state(settings.folder)
        if state is FolderState.COMPLETE:
            return
        if state is FolderState.FAILED:
            reason = modelshare.read_failed_reason(settings.folder)
            raise Done(
                Exit.TRAINING_FAILED,
                "training-failed",
                f"training of build {settings.build} failed: {reason}",
            )
        now = time.monotonic()
        waiting_for = _waiting_for(settings, state)
        if now >= deadline:
            raise Done(
                Exit.TIMEOUT,
                "timeout",
                f"gave up after WAIT_TIMEOUT_SECONDS={settings.timeout_seconds:g}: "
                f"still waiting for {waiting_for}",
            )
        if state is not last_state:
            modelshare.log_event(
                APP, "waiting", build=settings.build, state=state.value, waiting_for=waiting_for
            )
            last_state, last_report = state, now
        elif now - last_report >= STILL_WAITING_EVERY_SECONDS:
            modelshare.log_event(
                APP,
                "still-waiting",
                build=settings.build,
                state=state.value,
                waiting_for=waiting_for,
                waited_seconds=round(now - started),
                timeout_seconds=settings.timeout_seconds,
            )
            last_report = now
        time.sleep(max(0.0, min(_poll_seconds(settings, state), deadline - now)))


def check_release(settings: Settings) -> dict:
    """Verify every checksum, then the gate; return the log fields of success or raise Done."""
    try:
        manifest = modelshare.verify(settings.folder, build=settings.build)
    except (IntegrityError, OSError) as exc:
        raise Done(
            Exit.INTEGRITY, "integrity-error", f"build {settings.build} does not verify: {exc}"
        ) from None
    expected = {"git_sha": settings.git_sha, "trainer_image": settings.trainer_image}
    mismatches = modelshare.release_mismatches(
        manifest, **{k: v for k, v in expected.items() if v is not None}
    )
    if mismatches:
        raise Done(
            Exit.INTEGRITY,
            "integrity-error",
            f"build {settings.build}: {settings.folder} holds a model of another release (its manifest "
            "records " + "; ".join(mismatches) + "): a build id is one release; deploy under a new build id",
        )
    metrics = None
    if METRICS in manifest["files"]:  # verified with the rest: safe to read
        try:
            metrics = modelshare.read_json(settings.folder / METRICS)
        except (OSError, ValueError):
            metrics = None
    verdict = evaluate(settings.gate, metrics, settings.folder)
    for note in verdict.notes:
        modelshare.log_event(APP, "gate-note", build=settings.build, note=note)
    if not verdict.passed:
        raise Done(
            Exit.GATE,
            "gate-failed",
            f"build {settings.build} is below the quality gate: " + "; ".join(verdict.failures),
            checks=verdict.checks,
        )
    return {"model_sha256": modelshare.model_sha256(settings.folder), "gate": verdict.checks or "no gate set"}


def main() -> int:
    try:
        settings = read_settings()
    except ConfigError as exc:
        modelshare.log_event(APP, "config-error", error=str(exc))
        modelshare.write_termination_message(f"configuration error: {exc}", _optional("TERMINATION_LOG"))
        return Exit.CONFIG
    try:
        wait_for_complete(settings)
        fields = check_release(settings)
    except Done as done:
        modelshare.log_event(
            APP,
            done.event,
            build=settings.build,
            exit_code=int(done.code),
            reason=done.message,
            **done.fields,
        )
        modelshare.write_termination_message(done.message, settings.termination_log)
        return done.code
    gate = "; ".join(fields["gate"]) if isinstance(fields["gate"], list) else fields["gate"]
    message = f"build {settings.build} is complete and verified; gate: {gate}"
    modelshare.log_event(APP, "ready", build=settings.build, **fields)
    modelshare.write_termination_message(message, settings.termination_log)
    return Exit.READY


if __name__ == "__main__":
    sys.exit(main())
