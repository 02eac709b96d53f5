"""Feedback on served lists (docs/CONTRACTS.md, section 4): the request ids the scorer issues, how
a feedback event's id is checked, and the per-pod table that makes a replayed event count once.

A request id is `<build>.<8 hex: unix second it was issued><16 hex: random>`, followed by 16 hex
of HMAC-SHA256 over everything before them when FEEDBACK_KEY_FILE gives a key. The build in it is
what attributes the feedback: any pod of any release can take an event and count it for the build
that served the list, whatever the router's split. An id is refused unless it could come from a
live build: the right shape, issued no more than FEEDBACK_WINDOW_SECONDS ago (and not in the
future, give or take a minute of clock skew), and, with a key, carrying a tag only a holder of
the key can make. Without a key anyone can forge an id for any build; so that forged builds cannot
grow the metrics, a worker then counts feedback for at most MAX_BUILDS builds. The key, shared by
every release, belongs in a Secret mounted as a file: never in the environment.

Dedupe: (request_id, item, event) counts once per pod. The workers of a pod share one fixed-size
table in a file (`python -m scorer` creates it, like the metrics directory) under an exclusive
lock. A replay within the window is found in the table; after it, its id is refused as expired.
The table has `SLOTS` entries in buckets of `WAYS`; a full bucket forgets the entry of the oldest
id first, so a replay counts twice only when more than `WAYS` events of one window fall in one
bucket: with 65,536 events a window (a pod's share) about one bucket in a million overflows, with
262,144 one in fifty, and then only its oldest entry is lost. Memory is the table, whatever the
traffic: 16 bytes a slot, 8 MiB. Across pods nothing is shared: an event replayed to another pod
counts there too (at most once per pod).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import mmap
import os
import re
import threading
import time
from pathlib import Path

import numpy as np

SLOTS = 1 << 19
WAYS = 8
MAX_BUILDS = 16  # builds a worker counts feedback for when ids are not authenticated
SKEW_SECONDS = 60  # an id may look issued this far in the future (clocks of two pods differ)
_STAMP, _NONCE, _TAG = 8, 16, 16  # hex digits of the issue time, the random part and the tag
# What an id looks like; the schema of POST /feedback says the same.
ID_PATTERN = r"^[!-~]{1,64}\.[0-9a-f]{24}([0-9a-f]{16})?$"
_ID = re.compile(ID_PATTERN)


class NotIssued(ValueError):
    """The id is well formed, but no live build could have issued it; the message says why."""


class Ids:
    """Issues this build's request ids and checks any build's."""

    def __init__(self, build: str, key: bytes | None, window_seconds: float):
        self._prefix = build.encode() + b"."
        self._key, self.window_seconds = key, window_seconds
        self._builds: set[str] = set()  # those counted for, without a key (MAX_BUILDS)

    def issue(self) -> bytes:
        rid = self._prefix + b"%08x" % int(time.time()) + os.urandom(_NONCE // 2).hex().encode()
        return rid + self._tag(rid) if self._key else rid

    def _tag(self, rid: bytes) -> bytes:
        assert self._key is not None
        return hmac.new(self._key, rid, hashlib.sha256).hexdigest()[:_TAG].encode()

    def check(self, request_id: str, now: float) -> tuple[str, int]:
        """(the build that issued it, the unix second it was issued), or NotIssued."""
        if not _ID.fullmatch(request_id):
            raise NotIssued(f"not a request id this API issues (expected <build>.<hex>: {ID_PATTERN})")
        build, _, digits = request_id.rpartition(".")
        issued = int(digits[:_STAMP], 16)
        if self._key:
            if len(digits) != _STAMP + _NONCE + _TAG:
                raise NotIssued("the request id carries no authentication tag; this pod requires one")
            rid = request_id[:-_TAG].encode()
            if not hmac.compare_digest(self._tag(rid), digits[-_TAG:].encode()):
                raise NotIssued("the request id's authentication tag is wrong: no live build issued it")
        elif len(digits) != _STAMP + _NONCE:
            raise NotIssued("the request id carries a tag, but this pod has no key to check it")
        if issued > now + SKEW_SECONDS:
            raise NotIssued(f"the request id was issued {issued - now:.0f} s in the future")
        if issued < now - self.window_seconds:
            raise NotIssued(
                f"the request id was issued {now - issued:.0f} s ago, "
                f"longer than FEEDBACK_WINDOW_SECONDS={self.window_seconds:g}"
            )
        if not self._key and build not in self._builds:
            if len(self._builds) >= MAX_BUILDS:
                raise NotIssued(
                    f"build {build!r}: this worker already counts feedback for {MAX_BUILDS} builds "
                    "(request ids are not authenticated: set FEEDBACK_KEY_FILE)"
                )
            self._builds.add(build)
        return build, issued


class SeenEvents:
    """The pod's dedupe table: a file mapped by every worker (a private one without a file)."""

    def __init__(self, path: str | Path | None = None, slots: int = SLOTS):
        size = slots * 16
        if path is None:
            self._fd = None
            self._map = mmap.mmap(-1, size)
        else:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            if os.fstat(self._fd).st_size != size:  # a new file is sparse: pages come as they are used
                os.ftruncate(self._fd, size)
            self._map = mmap.mmap(self._fd, size)
        # [bucket, way] = (fingerprint, issued): 0 marks an empty slot.
        self._table = np.ndarray((slots // WAYS, WAYS, 2), dtype=np.uint64, buffer=self._map)
        self._thread_lock = threading.Lock()

    def first(self, request_id: str, item: str, event: str, issued: int) -> bool:
        """True the first time this pod sees the event; False for a replay."""
        digest = hashlib.blake2b(f"{request_id}\0{item}\0{event}".encode(), digest_size=8).digest()
        fingerprint = int.from_bytes(digest, "little") | 1  # never 0, the empty mark
        bucket = self._table[(fingerprint >> 1) % len(self._table)]
        with self._thread_lock:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if (bucket[:, 0] == fingerprint).any():
                    return False
                # An empty slot, else the oldest id's; the bucket stays in the order its entries
                # came, newest last, so among ids of one second the first to come goes first.
                way = int(bucket[:, 1].argmin())
                bucket[way:-1] = bucket[way + 1 :].copy()
                bucket[-1] = (fingerprint, issued)
                return True
            finally:
                if self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
