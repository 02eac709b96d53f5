"""The scorer's feedback settings (docs/CONTRACTS.md, sections 2 and 5): config `feedbackEvents` and
`feedbackWindowSeconds` as the scorer's FEEDBACK_EVENTS and FEEDBACK_WINDOW_SECONDS, and the
secret config `feedbackKey` as one Kubernetes Secret of the namespace, mounted read-only into the
scorer container of each new release and named by FEEDBACK_KEY_FILE (never an env value).

A value equal to the scorer's own default is not rendered, so a stack that sets none of the keys
renders exactly what it rendered before they existed. The Secret is the stack's, shared by every
release that mounts it; a release keeps what it was rendered with, so a key turned on reaches new
releases only. Ids from a release without the key carry no tag and a keyed pod refuses them (and
the other way round): `without_key` names those releases, and `check_key_kept` refuses to drop the
key while a live release mounts it (its next pod could not start).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import secret_file
from components.catalogue import DEFAULTS, NAMESPACE
from components.release import recorded_scorer_secrets
from components.release_spec import ReleaseRecord

SECRET_NAME = "scorer-feedback-key"
SECRET_ITEM = "key"
VOLUME = "feedback-key"
MOUNT = "/var/run/secrets/feedback"
KEY_FILE = f"{MOUNT}/{SECRET_ITEM}"


class FeedbackKeyError(ValueError):
    """The feedback key cannot be dropped while a live release mounts it; the message names them."""


def scorer_env(events: tuple[str, ...], window_seconds: int, keyed: bool) -> dict[str, str]:
    """The scorer's FEEDBACK_* variables that differ from its defaults (the catalogue's)."""
    env = {}
    if list(events) != DEFAULTS["feedbackEvents"]:
        env["FEEDBACK_EVENTS"] = ",".join(events)
    if window_seconds != DEFAULTS["feedbackWindowSeconds"]:
        env["FEEDBACK_WINDOW_SECONDS"] = str(window_seconds)
    if keyed:
        env["FEEDBACK_KEY_FILE"] = KEY_FILE
    return env


def mounts_key(record: ReleaseRecord) -> bool:
    return SECRET_NAME in recorded_scorer_secrets(record)


def without_key(kept: Iterable[ReleaseRecord]) -> list[str]:
    """Kept releases rendered without the key: their ids carry no tag."""
    return [r["build"] for r in kept if not mounts_key(r)]


def check_key_kept(kept: Iterable[ReleaseRecord], keyed: bool) -> None:
    """Refuse an update without the key while live releases mount its Secret."""
    mounting = [r["build"] for r in kept if mounts_key(r)]
    if not keyed and mounting:
        raise FeedbackKeyError(
            f"config {NAMESPACE}:feedbackKey is unset, but live release(s) {', '.join(mounting)} mount "
            f"its Secret {SECRET_NAME}: without it their next pod could not start. Set it again "
            "(`pulumi config set --secret feedbackKey <the same key>`) until they retire"
        )


@dataclass(frozen=True)
class FeedbackKeyArgs:
    namespace: str
    key: pulumi.Output[str]  # secret
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


class FeedbackKey(pulumi.ComponentResource):
    """The key's Secret, and the volume and mount that show it to the scorer as KEY_FILE."""

    secret: k8s.core.v1.Secret
    volume: dict[str, Any]  # pod volume
    mount: dict[str, Any]  # scorer volume mount

    def __init__(self, name: str, args: FeedbackKeyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlpipeline:feedback_key:FeedbackKey", name, None, opts)
        self.secret = secret_file.secret(
            f"{name}-secret",
            SECRET_NAME,
            SECRET_ITEM,
            args.key,
            args.namespace,
            args.labels,
            args.annotations,
            self,
        )
        self.volume = secret_file.volume(VOLUME, SECRET_NAME, SECRET_ITEM, SECRET_ITEM)
        self.mount = {"name": VOLUME, "mountPath": MOUNT, "readOnly": True}
        self.register_outputs({})
