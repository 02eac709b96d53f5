"""The HTTP API (docs/CONTRACTS.md, section 4): the ASGI application `python -m scorer` serves.

FastAPI (scorer.routes) defines every route, validates every request and documents the schemas
at /docs and /openapi.json. In front of it sits a small ASGI function that answers the two hot
requests (`GET /recommendations/{user_id}` and `POST /recommendations`) itself when they are
plainly well-formed and the model is loaded, with the same code FastAPI's routes call; anything
else, invalid requests included, goes to FastAPI, so there is one set of rules and error
messages. Measured (docs/BENCHMARKS.md) this front path multiplies throughput; FastAPI alone
spends most of a request in its own machinery, not in numpy. The front also answers the probes
(/healthz, /readyz), feeds the metrics and the prediction log and returns each request's
`X-Request-ID`; uvicorn adds `X-Model-Build` to every response
(`python -m scorer` passes it as a default header, so the server's own refusals carry it too).

The pod's probes go to the listener of scorer.probes on their own port, which reads a heartbeat
this app's event loop writes; this front still answers /healthz and /readyz on the serving port,
for this worker alone. Nothing may hold the loop long, or requests wait and the heartbeat stops:
a batch whose answer holds more than `INLINE_ITEMS` items is scored in this process's one
scoring thread (one at a time: a 1,000 users x k=1,000 batch takes about a second and builds a
million-item answer), while small requests stay on the loop, where they are fastest. A worker
that starts (or is restarted by uvicorn) makes requests wait for its model while it loads rather
than answer 503 "starting"; the probe port's /readyz says 503 until every worker has its model.

FastAPI is imported after the model is loaded, in the loader thread: its import takes longer
than verifying and loading a MovieLens 1M model, and readiness need not wait for it (measured in
bench/startup.py). A request that needs it sooner builds it then.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import orjson

import modelshare
from modelshare import FolderState, IntegrityError
from scorer import settings as settings_module
from scorer.contract import ALIVE, DEFAULT_K, MAX_EXCLUDE, MAX_EXCLUDE_ID, MAX_K, ROUTE_BATCH, ROUTE_ONE
from scorer.feedback import Ids, SeenEvents
from scorer.model import Model, ModelError, Recommendation
from scorer.predictionlog import CLIENT_REQUEST_ID, REQUEST_ID, client_request_id
from scorer.probes import HEARTBEATS_ENV, Heartbeat
from scorer.settings import FEEDBACK_TABLE_ENV, Settings, read_key
from scorer.telemetry import UNMATCHED, Telemetry

APP = "scorer"
RETRY_SECONDS = 1.0  # how often an incomplete folder is looked at again
_PREFIX = "/recommendations/"
_JSON = b"application/json"
_PROBES = ("/healthz", "/readyz")
INLINE_ITEMS = 10_000  # users x k of a batch scored on the event loop (~5 ms); more go to the thread
LOAD_WAIT_SECONDS = 10.0  # how long a request waits for a model that is being loaded


# ---- the model, loaded in the background so /healthz and /readyz answer at once -------------


class ModelSlot:
    """Holds the model once it is verified and loaded; until then, the reason it is not."""

    def __init__(self, settings: Settings, telemetry: Telemetry, on_change=lambda: None):
        self._settings, self._telemetry = settings, telemetry
        self._on_change = on_change  # called (in the loader thread) when the model or the reason changes
        self.model: Model | None = None
        self.reason: str | None = "starting: the model is not loaded yet"
        # Set once the model is loaded, refused, or the folder is not complete yet: until then the
        # model is being loaded and requests wait for it (wait_settled).
        self.settled = threading.Event()

    async def wait_settled(self) -> None:
        deadline = time.monotonic() + LOAD_WAIT_SECONDS
        while not self.settled.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def load(self) -> None:
        """Wait for the folder to be complete, then verify and load it (or refuse it, saying why)."""
        folder, build = self._settings.modelfolder, self._settings.build
        while True:
            state = modelshare.folder_state(folder)
            if state is FolderState.FAILED:
                return self._refuse(f"training failed: {modelshare.read_failed_reason(folder)}")
            if state is FolderState.COMPLETE:
                break
            reason = f"waiting for {folder}/{modelshare.COMPLETE} (the folder is {state.value})"
            if reason != self.reason:
                self.reason = reason
                self.settled.set()
                self._on_change()
                modelshare.log_event(APP, "waiting", build=build, modelfolder=folder, state=state.value)
            time.sleep(RETRY_SECONDS)
        started = time.perf_counter()
        try:
            model = Model.load(folder, build)
        except (IntegrityError, ModelError, OSError) as exc:
            # A complete folder that does not verify never heals (releases are immutable): stay
            # unready for good, and say why, in the log and in /readyz.
            return self._refuse(f"the model folder failed verification: {exc}")
        self.model, self.reason = model, None
        self.settled.set()
        self._on_change()
        self._telemetry.model_loaded(model.sha256)
        modelshare.log_event(
            APP,
            "model-loaded",
            build=build,
            model_sha256=model.sha256,
            family=model.family,
            n_users=len(model.user_ids),
            n_items=len(model.item_ids),
            seconds=round(time.perf_counter() - started, 3),
        )

    def _refuse(self, reason: str) -> None:
        self.reason = reason
        self.settled.set()
        self._on_change()
        modelshare.log_event(APP, "not-serving", build=self._settings.build, reason=reason)


# ---- the application ------------------------------------------------------------------------


class Scorer:
    """The ASGI application `python -m scorer` serves."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.telemetry = Telemetry(settings.build, settings.prediction_log_sample, settings.feedback_events)
        self.ids = Ids(settings.build, read_key(settings.feedback_key_file), settings.feedback_window_seconds)
        self.seen = SeenEvents(
            os.environ.get(FEEDBACK_TABLE_ENV)
        )  # shared by the workers of `python -m scorer`
        # The heartbeat the probe listener of `python -m scorer` reads (scorer.probes); none when
        # this app is served some other way.
        directory = os.environ.get(HEARTBEATS_ENV)
        beat_seconds = min(1.0, settings.liveness_stall_seconds / 4)
        self.heartbeat = Heartbeat(directory, self.readiness, beat_seconds) if directory else None
        self.slot = ModelSlot(settings, self.telemetry, self.heartbeat.write if self.heartbeat else _nothing)
        self._scoring = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")
        self._api = None  # FastAPI, built by fastapi()
        self._api_lock = threading.Lock()
        self._too_large = orjson.dumps(
            {
                "detail": f"request body larger than {settings.max_body_bytes} bytes: "
                f"send at most {settings.max_batch_users} user ids per request"
            }
        )

    def fastapi(self):
        """The FastAPI app of scorer.routes, imported and built once, by whoever needs it first."""
        with self._api_lock:
            if self._api is None:
                started = time.perf_counter()
                from scorer import routes

                self._api = routes.build(self)
                seconds = round(time.perf_counter() - started, 3)
                modelshare.log_event(APP, "api-built", build=self.settings.build, seconds=seconds)
            return self._api

    def _start_up(self) -> None:
        self.slot.load()
        if self.slot.model is not None:
            self.slot.model.accelerate()  # scipy's sparse kernels, once ready: readiness does not wait
        self.fastapi()  # after the model: readiness does not wait for FastAPI's import

    # Shared by the fast path and FastAPI's routes.

    def not_ready(self) -> dict:
        """The 503 body of every route while no model is loaded: why not."""
        return {"detail": f"no model loaded: {self.slot.reason}"}

    def readiness(self) -> tuple[int, dict]:
        if self.slot.model is None:
            return 503, self.not_ready()
        return 200, {"status": "ready", "build": self.settings.build}

    def answer(
        self, user_ids: list[str], k: int, started: float, exclude: list[str] | tuple = ()
    ) -> list[Recommendation]:
        model = self.slot.model
        assert model is not None  # every caller answers 503 before, while no model is loaded
        recommendations = model.recommend(user_ids, k, exclude)
        self.telemetry.predictions_made(recommendations, k, time.perf_counter() - started)
        return recommendations

    def _doc(self, rec: Recommendation) -> dict:
        return {
            "user_id": rec.user_id,
            "build": self.settings.build,
            "items": [{"item_id": i, "score": s} for i, s in zip(rec.item_ids, rec.scores)],
            "fallback": rec.fallback,
        }

    def one_body(self, user_id: str, k: int, started: float, exclude: list[str] | tuple = ()) -> bytes:
        return orjson.dumps(self._doc(self.answer([user_id], k, started, exclude)[0]))

    def _batch_body(self, user_ids: list[str], k: int, started: float, exclude: list[str] | tuple) -> bytes:
        results = [self._doc(rec) for rec in self.answer(user_ids, k, started, exclude)]
        return orjson.dumps({"build": self.settings.build, "results": results})

    async def batch_body(
        self, user_ids: list[str], k: int, started: float, exclude: list[str] | tuple = ()
    ) -> bytes:
        """The batch answer; a large one is built in the scoring thread, off the event loop."""
        if len(user_ids) * k <= INLINE_ITEMS:
            return self._batch_body(user_ids, k, started, exclude)
        loop = asyncio.get_running_loop()
        # In this request's context, so the prediction log sees its request id.
        answer = contextvars.copy_context().run
        return await loop.run_in_executor(
            self._scoring, answer, self._batch_body, user_ids, k, started, exclude
        )

    def take_feedback(self, request_id: str, item: str, event: str) -> dict:
        """Count a feedback event for the build that served the list, once per pod; raises
        scorer.feedback.NotIssued for an id no live build could have issued."""
        served_by, issued = self.ids.check(request_id, time.time())
        counted = self.seen.first(request_id, item, event, issued)
        self.telemetry.feedback_received(request_id, served_by, item, event, counted)
        return {"request_id": request_id, "served_by": served_by, "counted": counted}

    # ASGI entry point.

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return await self.fastapi()(scope, receive, send)
        started = time.perf_counter()
        # For the prediction log and the response.
        REQUEST_ID.set(self.ids.issue())
        CLIENT_REQUEST_ID.set(client_request_id(scope["headers"]))
        method, path = scope["method"], scope["path"]
        if method == "GET" and path in _PROBES:
            status, doc = self.readiness() if path == "/readyz" else (200, ALIVE)
            # json, not orjson: a refusal reason may quote a path that is not valid UTF-8
            body = json.dumps(doc, separators=(",", ":")).encode()
            return await self._reply(send, status, body, method, path, started)
        if self.slot.model is None and not self.slot.settled.is_set():
            await self.slot.wait_settled()
        if self.slot.model is not None:
            if method == "GET" and path.startswith(_PREFIX):
                query = _plain_query(scope["query_string"])
                user_id = path[len(_PREFIX) :]
                if query and user_id:
                    k, exclude = query
                    body = self.one_body(user_id, k, started, exclude)
                    return await self._reply(send, 200, body, "GET", ROUTE_ONE, started)
        if method == "POST" and path == ROUTE_BATCH:
            body = await _read_body(scope, receive, self.settings.max_body_bytes)
            if body is None:
                return await self._reply(send, 413, self._too_large, method, ROUTE_BATCH, started)
            if self.slot.model is not None:
                parsed = _plain_batch(body, self.settings.max_batch_users)
                if parsed is not None:
                    user_ids, k, exclude = parsed
                    body = await self.batch_body(user_ids, k, started, exclude)
                    return await self._reply(send, 200, body, method, ROUTE_BATCH, started)
            receive = _replay(body, receive)
            scope = _as_json(scope)
        await self._to_fastapi(scope, receive, send, started)

    async def _reply(self, send, status: int, body: bytes, method: str, route: str, started: float) -> None:
        headers = [
            (b"content-type", _JSON),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", REQUEST_ID.get()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.telemetry.observe(method, route, status, time.perf_counter() - started)

    async def _to_fastapi(self, scope, receive, send, started: float) -> None:
        status = 500  # what the client gets if FastAPI raises before answering

        async def send_noting_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), (b"x-request-id", REQUEST_ID.get())],
                }
            await send(message)

        try:
            await self.fastapi()(scope, receive, send_noting_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or UNMATCHED
            self.telemetry.observe(scope["method"], template, status, time.perf_counter() - started)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.heartbeat:
                    self.heartbeat.start(asyncio.get_running_loop())
                threading.Thread(target=self._start_up, name="model-loader", daemon=True).start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.heartbeat:
                    self.heartbeat.stop()
                self._scoring.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


# ---- the fast path's strict parsing: anything unusual goes to FastAPI --------------------


def _plain_k(query: bytes) -> int | None:
    """k of a query string that is empty or exactly `k=<1..1000>`; None for anything else."""
    if not query:
        return DEFAULT_K
    if query.startswith(b"k=") and 2 < len(query) <= 6 and query[2:].isdigit():
        k = int(query[2:])
        if 1 <= k <= MAX_K:
            return k
    return None


def _plain_query(query: bytes) -> tuple[int, list[str]] | None:
    """(k, exclude) of a query of at most one plain `k` and non-empty `exclude` ids (repeated),
    read as FastAPI reads it; None for anything else."""
    k = _plain_k(query)
    if k is not None:
        return k, []
    k, exclude = DEFAULT_K, []
    seen_k = False
    if query.isascii() and b"%" not in query and b"+" not in query:  # nothing to unquote: split it
        pairs = [part.decode().partition("=")[::2] for part in query.split(b"&")]
    else:
        pairs = urllib.parse.parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    for name, value in pairs:
        if name == "exclude" and 0 < len(value) <= MAX_EXCLUDE_ID:
            exclude.append(value)
        elif name == "k" and not seen_k:
            seen_k = True
            plain = _plain_k(b"k=" + value.encode("latin-1", "replace"))
            if plain is None:
                return None
            k = plain
        else:
            return None
    return (k, exclude) if 0 < len(exclude) <= MAX_EXCLUDE else None


def _plain_batch(body: bytes, max_users: int) -> tuple[list[str], int, list[str]] | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict:
        return None
    user_ids, k, exclude = doc.get("user_ids"), doc.get("k", DEFAULT_K), doc.get("exclude", [])
    if type(user_ids) is not list or len(user_ids) > max_users or type(k) is not int or not 1 <= k <= MAX_K:
        return None
    if not all(type(uid) is str and uid for uid in user_ids):
        return None
    if (
        type(exclude) is not list
        or len(exclude) > MAX_EXCLUDE
        or not all(type(item) is str and 0 < len(item) <= MAX_EXCLUDE_ID for item in exclude)
    ):
        return None
    return user_ids, k, exclude


async def _read_body(scope, receive, limit: int) -> bytes | None:
    """The request body, or None when it is larger than limit (checked before reading it all)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _as_json(scope):
    """The batch endpoint reads its body as JSON whatever the Content-Type says (`curl -d` sends
    form encoding), on the fast path and FastAPI's alike."""
    headers = [(name, value) for name, value in scope["headers"] if name != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", _JSON)]}


def _replay(body: bytes, receive):
    """A receive() that hands FastAPI the body already read, then waits as the original would."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay():
        return pending.pop() if pending else await receive()

    return replay


def _nothing() -> None:
    pass


def create_app() -> Scorer:
    """uvicorn's factory: each worker process builds its own app from the environment."""
    return Scorer(settings_module.current())
