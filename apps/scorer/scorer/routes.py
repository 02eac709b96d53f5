"""FastAPI: every route of the API (docs/CONTRACTS.md, section 4), request validation, error messages
and /docs.

Imported only when built (scorer.api.Scorer.fastapi): FastAPI and pydantic take longer to import
than a MovieLens 1M model takes to verify and load, so a worker becomes ready without them and
builds this in the background (or at the first request that needs it before then).
"""

# No `from __future__ import annotations`: FastAPI must resolve the request model defined
# inside build() (its size limit comes from the environment).
import json
import time
from typing import Annotated, Any, Protocol

from fastapi import Body, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException

from scorer.contract import (
    ALIVE,
    DEFAULT_K,
    MAX_EXCLUDE,
    MAX_EXCLUDE_ID,
    MAX_K,
    ROUTE_BATCH,
    ROUTE_FEEDBACK,
    ROUTE_ONE,
)
from scorer.feedback import ID_PATTERN, NotIssued
from scorer.model import Model
from scorer.settings import Settings
from scorer.telemetry import Telemetry


class Slot(Protocol):
    model: Model | None  # None until a verified model is loaded


class Scorer(Protocol):
    """What the routes use of the application they are built for (scorer.api.Scorer)."""

    settings: Settings
    slot: Slot
    telemetry: Telemetry

    def not_ready(self) -> dict: ...

    def readiness(self) -> tuple[int, dict]: ...

    def one_body(self, user_id: str, k: int, started: float, exclude: list[str]) -> bytes: ...

    async def batch_body(self, user_ids: list[str], k: int, started: float, exclude: list[str]) -> bytes: ...

    def take_feedback(self, request_id: str, item: str, event: str) -> dict: ...


# ---- schemas (they are what /docs shows) ----------------------------------------------------


class ScoredItem(BaseModel):
    item_id: str
    score: float


class RecommendationOut(BaseModel):
    user_id: str
    build: str
    items: list[ScoredItem] = Field(description="Best first; never an item the user already interacted with")
    fallback: str | None = Field(
        description='null, or "popular" when the model does not know the user and answers the popular items'
    )


class BatchOut(BaseModel):
    build: str
    results: list[RecommendationOut] = Field(description="One per requested user id, in request order")


class VersionOut(BaseModel):
    build: str
    model_sha256: str = Field(description="sha256 of the model's manifest.json, which pins every file")
    created_at: str | None
    git_sha: str | None
    metrics: dict | None = Field(description="metrics.json of the model folder")


class FeedbackOut(BaseModel):
    request_id: str
    served_by: str = Field(description="The build that served the list (named by the request id)")
    counted: bool = Field(description="false for a replay: this pod counted the same event before")


class Problem(BaseModel):
    detail: str


def _integral(value):
    """k: 2.0 is the integer 2, as JSON Schema's `integer` says (and as `?k=2.0` is read)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


# The length check also refuses a lone surrogate escape ("\ud800"), which is no UTF-8 text.
UserId = Annotated[str, StringConstraints(min_length=1)]
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
ExcludedId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EXCLUDE_ID)]
EXCLUDE_DOC = f"Item ids never to return (e.g. what is in the basket); at most {MAX_EXCLUDE}"
Exclude = Annotated[list[ExcludedId] | None, Query(max_length=MAX_EXCLUDE, description=EXCLUDE_DOC)]
K = Annotated[int, Field(ge=1, le=MAX_K, description="How many items per user"), BeforeValidator(_integral)]
# Any text after /recommendations/ is the id, slashes included (sent as / or %2F); an empty id
# is a 422 like any other invalid input, not a redirect.
ROUTE_ONE_ANY = ROUTE_ONE.replace("}", ":path}")


def _problem(errors: list[dict]) -> Response:
    """The 422 of every invalid request: `message` says what is wrong, `detail` lists each error."""
    message = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
    if any(e["loc"] == ["body"] for e in errors):
        message += ' (expected a JSON object such as {"user_ids": ["u1", "u2"], "k": 10})'
    # json.dumps escapes anything, even text that is not valid UTF-8; the input is not echoed back
    # (it can be megabytes).
    body = json.dumps({"message": message, "detail": errors})
    return Response(body, status_code=422, media_type="application/json")


CARD_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}

# ---- the application ------------------------------------------------------------------------


def build(scorer: Scorer) -> FastAPI:
    settings, slot = scorer.settings, scorer.slot
    api = FastAPI(
        redirect_slashes=False,
        title="mlpipeline scorer",
        version=settings.build,
        description="Recommendations from the model of one release (build). "
        "Every response carries the header X-Model-Build.",
    )
    not_ready: dict[int | str, dict[str, Any]] = {
        503: {"model": Problem, "description": "No verified model is loaded (yet); the reason"}
    }
    invalid: dict[int | str, dict[str, Any]] = {
        422: {"description": "Invalid request: `message` says what is wrong"}
    }
    too_large: dict[int | str, dict[str, Any]] = {
        413: {"model": Problem, "description": "Body larger than MAX_BATCH_USERS ids can take"}
    }
    too_long: dict[int | str, dict[str, Any]] = {
        414: {
            "model": Problem,
            "description": "URL longer than 16 KiB (a long `exclude`: send it in a batch)",
        }
    }
    problem_json = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}

    class BatchIn(BaseModel):
        model_config = ConfigDict(strict=True)
        user_ids: list[UserId] = Field(
            max_length=settings.max_batch_users,
            description=f"At most {settings.max_batch_users} ids (MAX_BATCH_USERS)",
        )
        k: K = DEFAULT_K
        exclude: list[ExcludedId] = Field(default=[], max_length=MAX_EXCLUDE, description=EXCLUDE_DOC)

    events = settings.feedback_events  # FEEDBACK_EVENTS

    def known_event(value: str) -> str:
        if value not in events:
            raise ValueError(f"must be one of {', '.join(events)} (FEEDBACK_EVENTS)")
        return value

    class FeedbackIn(BaseModel):
        model_config = ConfigDict(strict=True)
        request_id: str = Field(
            pattern=ID_PATTERN,
            description="The X-Request-ID of the recommendation response whose list the event is about",
        )
        item_id: ItemId
        event: Annotated[str, AfterValidator(known_event), Field(json_schema_extra={"enum": list(events)})]

    def unavailable() -> JSONResponse:
        return JSONResponse(scorer.not_ready(), status_code=503)

    @api.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
            for error in exc.errors()
        ]
        return _problem(errors)

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI could not parse the body: not UTF-8, gzip, nested too deep
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "unreadable"
            msg = f"not a JSON document in UTF-8 ({cause}); compressed bodies are not accepted"
            return _problem([{"loc": ["body"], "msg": msg, "type": "json_invalid"}])
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    # The probes: the front answers them (GET) before this app exists; declared here for /docs.
    @api.get("/healthz", summary="Alive: 200 while the process runs")
    async def healthz() -> dict:
        return ALIVE

    @api.get("/readyz", summary="Ready: 200 only when a verified model is loaded", responses=not_ready)
    async def readyz() -> JSONResponse:
        status, doc = scorer.readiness()
        return JSONResponse(doc, status_code=status)

    @api.get("/version", response_model=VersionOut, responses=not_ready)
    async def version():
        model = slot.model
        if model is None:
            return unavailable()
        return {
            "build": settings.build,
            "model_sha256": model.sha256,
            "created_at": model.created_at,
            "git_sha": settings.git_sha or model.git_sha,
            "metrics": model.metrics,
        }

    @api.get(
        ROUTE_ONE_ANY,
        response_model=RecommendationOut,
        responses={**not_ready, **invalid, **too_long},
        summary="Top-k items for one user",
    )
    async def recommend_one(
        user_id: Annotated[
            str, Path(min_length=1, description="A user id; one the model lacks gets the popular items")
        ],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="How many items")] = DEFAULT_K,
        exclude: Exclude = None,
    ):
        if slot.model is None:
            return unavailable()
        body = scorer.one_body(user_id, k, time.perf_counter(), exclude or [])
        return Response(body, media_type="application/json")

    @api.post(
        ROUTE_BATCH,
        response_model=BatchOut,
        responses={**not_ready, **invalid, **too_large},
        summary="Top-k items for each of several users",
    )
    async def recommend_batch(request: Annotated[BatchIn, Body()]):
        if slot.model is None:
            return unavailable()
        body = await scorer.batch_body(request.user_ids, request.k, time.perf_counter(), request.exclude)
        return Response(body, media_type="application/json")

    @api.post(
        ROUTE_FEEDBACK,
        response_model=FeedbackOut,
        responses={
            **invalid,
            404: {"model": Problem, "description": "No live build could have issued the request id; why"},
        },
        summary="What a user did with a recommended item: counted for the build that served the list",
    )
    async def feedback(event: Annotated[FeedbackIn, Body()]):
        try:
            return scorer.take_feedback(event.request_id, event.item_id, event.event)
        except NotIssued as exc:
            return JSONResponse({"detail": f"request_id: {exc}"}, status_code=404)

    @api.get(
        "/model-card",
        summary="The release's model card: verdict, metrics, data and drift, as one HTML page",
        response_class=HTMLResponse,
        # Its refusals are JSON like every other route's, not the page's text/html.
        responses={
            404: {"description": "This release has no model card", **problem_json},
            503: {"description": not_ready[503]["description"], **problem_json},
        },
    )
    async def model_card():
        model = slot.model
        if model is None:
            return unavailable()
        if model.card is None:
            detail = f"build {settings.build} has no model card (model/card.html): "
            detail += "trained before cards were written"
            return JSONResponse({"detail": detail}, status_code=404)
        # The page is self-contained (inline CSS and SVG): nothing else may load in its context.
        return HTMLResponse(model.card, headers=CARD_HEADERS)

    @api.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics():
        return Response(scorer.telemetry.render(), media_type=scorer.telemetry.content_type)

    return api
