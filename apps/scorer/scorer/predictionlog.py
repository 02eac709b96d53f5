"""The prediction log: one JSON line per answered user on stdout, where cluster log collectors
(Fluent Bit, Azure Monitor's Container insights) pick it up. Each line names the model that
answered (build and sha256), the request (the id the scorer issued for it, scorer.feedback, which
the response's X-Request-ID returns and feedback events name; and the client's own X-Request-ID
when it sent a plain one), the user, k, the returned item ids, the latency, the fallback and the
user's novelty (scorer_novelty, trainer.novelty). A feedback event writes one line too, joinable
on `request_id`. PREDICTION_LOG_SAMPLE keeps that share of requests (every user of a kept
request); feedback is never sampled. Nothing else of the request is read, so no credential or
header can end up in it.
"""

from __future__ import annotations

import contextvars
import os
import random
import re
import time

import orjson

# A write of at most PIPE_BUF bytes to a pipe is atomic: lines of several workers never interleave.
_PIPE_BUF = 4096
# An incoming id is kept only if it is safe to echo in a header and a log line as it is.
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")

# The id the scorer issued for the request being answered, and the client's own (b"" when it sent
# none), set by the ASGI front for the task answering it.
REQUEST_ID: contextvars.ContextVar[bytes] = contextvars.ContextVar("request_id", default=b"")
CLIENT_REQUEST_ID: contextvars.ContextVar[bytes] = contextvars.ContextVar("client_request_id", default=b"")


def client_request_id(headers) -> bytes:
    """The client's X-Request-ID when it is a plain token, else b""."""
    for name, value in headers:
        if name == b"x-request-id" and _SAFE_ID.fullmatch(value):
            return value
    return b""


class PredictionLog:
    def __init__(self, build: str, sample: float):
        self.build, self.sample = build, sample
        self.model_sha256: str | None = None

    def write(self, recommendations, k: int, seconds: float) -> None:
        if self.sample < 1.0 and (self.sample <= 0.0 or random.random() >= self.sample):
            return
        common = {
            "ts": round(time.time(), 3),
            "app": "scorer",
            "event": "prediction",
            "build": self.build,
            "model_sha256": self.model_sha256,
            "request_id": REQUEST_ID.get().decode(),
            "client_request_id": CLIENT_REQUEST_ID.get().decode() or None,
            "k": k,
            "latency_ms": round(seconds * 1000, 3),
        }
        _write_lines(
            [
                orjson.dumps(
                    {
                        **common,
                        "user": rec.user_id,
                        "items": rec.item_ids,
                        "fallback": rec.fallback,
                        "novelty": rec.novelty,
                    },
                    option=orjson.OPT_APPEND_NEWLINE,
                )
                for rec in recommendations
            ]
        )

    def feedback(self, request_id: str, served_by: str, item: str, event: str, counted: bool) -> None:
        """One line per feedback event; `counted` is false for a replay (it counted before)."""
        line = {
            "ts": round(time.time(), 3),
            "app": "scorer",
            "event": "feedback",
            "build": self.build,
            "request_id": request_id,
            "served_by": served_by,
            "item": item,
            "feedback": event,
            "counted": counted,
        }
        _write(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))


def _write_lines(lines: list[bytes]) -> None:
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) > _PIPE_BUF:
            _write(b"".join(chunk))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        _write(b"".join(chunk))


def _write(data: bytes) -> None:
    try:
        while data:
            data = data[os.write(1, data) :]
    except OSError:  # a closed or full log pipe must not turn a prediction into an error
        pass
