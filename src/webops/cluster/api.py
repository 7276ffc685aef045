"""The HTTP API. Endpoints are plain `def`: FastAPI runs them in its thread pool, so a request
computing embeddings never blocks the worker's event loop (with a preloaded model, `async def`
endpoints can hang workers: gunicorn #2478, pytorch #49555).

Every dimension of a request is bounded, and what is past a bound is a 4xx naming it, never a
500: body bytes (413, checked as the body arrives), sentences, characters and word pieces per
sentence (the model reads 256; more would be silently cut), word pieces per request (what bounds
the time: `Limits.max_tokens` is kept within what the worker timeout allows), NaN / Infinity /
lone surrogates (422). A 422 says what is wrong without echoing the input back.

No `from __future__ import annotations` here: FastAPI reads the request model from the endpoint's
annotation, and that model is a class local to create_app (it carries the configured limits).
"""

import copy
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from starlette.routing import Match

from .statsd_client import StatsdClient
from . import DEFAULT_MODE, EXAMPLE, PRESETS
from .access_log import AccessLog
from .clustering import cluster
from .metrics import UNMATCHED, UNPARSED, Metrics, statsd_route
from .scheduler import Busy, Scheduler, split

log = logging.getLogger("webops.cluster")
MAX_ERRORS = 20  # validation errors a 422 lists (a body of 19,000 bad items gets 20 and a count)


@dataclass
class Limits:
    max_sentences: int = 1000
    max_chars: int = 2000
    max_tokens: int = 50_000  # word pieces per request: ~16 s of one core (3,100 word pieces/s)
    max_body: int = 1 << 20  # bytes
    max_queue: int = 100_000  # word pieces queued per worker before a 503 (scheduler.py)

    def check(self, timeout: float) -> None:
        """Refuse limits the worker timeout cannot hold: a request of `max_tokens` word pieces must
        end within the timeout even on a machine 3x slower than the one measured."""
        for name in ("max_sentences", "max_chars", "max_tokens", "max_body", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_tokens / 1000 > timeout:
            raise ValueError(
                f"--max-tokens {self.max_tokens} cannot be encoded within --timeout {timeout:g} s "
                f"(about 1,000 word pieces/s on a slow core): lower it or raise the timeout"
            )


class ClusterResponse(BaseModel):
    clusters: list[list[str]]


class Error(BaseModel):
    detail: str


class ErrorItem(BaseModel):
    type: str | None = None
    loc: list[str | int] | None = None
    msg: str


class ValidationErrors(BaseModel):
    detail: list[ErrorItem] | str = Field(
        description=f"what is wrong and where (at most {MAX_ERRORS} errors), never the input itself"
    )


class BodyLimit:
    """ASGI middleware: a body over `max_body` bytes is a 413, checked against Content-Length and
    as it streams in (it is read whole before the app sees it: at most max_body bytes held)."""

    def __init__(self, app, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = JSONResponse({"detail": f"request body over {self.max_body} bytes"}, status_code=413)
        length = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_body:
            return await too_large(scope, receive, send)
        body, more = [], True
        size = 0
        while more:  # read it all first (at most max_body + one chunk): a 413 before any work
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message], receive), send)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return await too_large(scope, receive, send)
            body.append(chunk)
            more = message.get("more_body", False)
        whole = {"type": "http.request", "body": b"".join(body), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)


class Observe:
    """ASGI middleware, the outermost: every response (413s, 404s and 500s included) counted by
    route template and status in Prometheus and statsd, timed from the request's first byte to the
    last byte of the response (reading and validating the body included), and logged."""

    def __init__(
        self, app, router, metrics: Metrics, stats: StatsdClient | None, access_log: AccessLog | None
    ) -> None:
        self.app, self.router, self.metrics = app, router, metrics
        self.stats, self.access_log = stats, access_log

    def route(self, scope) -> str:
        """The template of the route the request is for (a bounded set), not its path."""
        partial = None
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return route.path
            if match == Match.PARTIAL and partial is None:
                partial = route.path  # the path matches, the method does not: a 405
        return partial or UNMATCHED

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        arrived, started = time.time(), time.perf_counter()
        route = self.route(scope)
        status, sent = 500, 0  # what an exception that escapes the app becomes

        async def observed_send(message):
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, observed_send)
        finally:
            self.metrics.in_progress.dec()
            seconds = time.perf_counter() - started
            self.metrics.observe(route, status, seconds)
            if self.stats:
                self.stats.incr(f"responses.{statsd_route(route)}.{status}")
                self.stats.timing(f"latency.{statsd_route(route)}", seconds * 1000)
            if self.access_log:
                self.access_log.log(scope, status, sent, arrived, seconds)


def _replay(messages: list[dict], receive):
    """An ASGI receive that hands over messages already read, then what `receive` gives."""
    pending = list(messages)

    async def replay():
        return pending.pop(0) if pending else await receive()

    return replay


def create_app(
    model,
    limits: Limits,
    default_mode: str = DEFAULT_MODE,
    default_threshold: float | None = None,
    statsd: str | None = None,
    access_log: str | None = None,
) -> FastAPI:
    app = FastAPI(
        title="webops cluster",
        description="Groups sentences with similar meaning (English: the model is all-MiniLM-L6-v2).",
        docs_url=None,
        redoc_url=None,
    )
    stats = StatsdClient(statsd, "webops.cluster") if statsd else None
    # Hooks for what runs the model (the scheduler): it feeds metrics.queue_depth (a gauge, summed
    # over the workers) and metrics.model_seconds, and sets app.state.queue_full to a callable that
    # says when this worker takes no more requests (then /ready answers 503).
    metrics = Metrics()
    app.state.metrics = metrics
    app.state.queue_full = lambda: False
    app.state.retry_after = lambda: 1
    max_pieces = int(getattr(model, "max_seq_length", 256))
    # One batch at a time uses the model in a worker (the tokenizer keeps per-call settings that
    # concurrent calls from FastAPI's thread pool would mix up; the worker's torch threads are its
    # parallelism), and requests take turns a batch each: a small request never waits for a whole
    # large one (scheduler.py). Past `max_queue` word pieces queued, a 503 with Retry-After.
    scheduler = Scheduler(limits.max_queue, on_depth=metrics.queue_depth.set)
    # Word pieces are counted (for the limits and the queue) with a copy of the tokenizer, so a
    # request is checked and admitted without waiting for the batch the model is computing.
    counter: Any = copy.deepcopy(model.tokenizer) if hasattr(model, "tokenizer") else None
    count_lock = threading.Lock()
    app.state.scheduler = scheduler
    # Ready: a request of the largest allowed size (--max-tokens) would be admitted now, as /cluster
    # admits (an empty worker takes any); else /ready's 503 says the Retry-After a 503 of /cluster
    # says (the queued work over the measured rate).
    app.state.queue_full = lambda: not scheduler.admits(limits.max_tokens)
    app.state.retry_after = scheduler.retry_after

    class ClusterRequest(BaseModel):
        # A misspelt field ("treshold") is a 422, not a silent default.
        model_config = ConfigDict(extra="forbid")
        # Strict types: a number is not a sentence, and true / "0.5" are not numbers.
        sentences: Annotated[
            list[StrictStr],
            Field(
                examples=[EXAMPLE],
                json_schema_extra={
                    "maxItems": limits.max_sentences,
                    "items": {"type": "string", "maxLength": limits.max_chars},
                },
            ),
        ]
        mode: Literal["topic", "paraphrase"] = Field(
            default_mode,  # type: ignore[arg-type]
            description="topic: group by subject; paraphrase: only rewordings of each other",
        )
        threshold: StrictFloat | None = Field(
            default_threshold,
            gt=0,
            le=2,
            allow_inf_nan=False,
            description="cosine distance at which clusters stop merging (overrides mode)",
        )
        k: StrictInt | None = Field(
            None,
            ge=1,
            le=limits.max_sentences,
            description="the number of clusters wanted (fewer when there are fewer sentences); "
            "instead of mode and threshold",
        )

        @model_validator(mode="after")
        def k_or_a_distance(self):
            given = [name for name in ("mode", "threshold") if name in self.model_fields_set]
            if self.k is not None and given:
                raise ValueError(
                    f"k (a number of clusters) and {' and '.join(given)} (a distance): give one or the other"
                )
            return self

        @field_validator("sentences")
        @classmethod
        def within_limits(cls, v: list[str]) -> list[str]:
            if len(v) > limits.max_sentences:
                raise ValueError(f"at most {limits.max_sentences} sentences, got {len(v)}")
            for i, s in enumerate(v):
                if len(s) > limits.max_chars:
                    raise ValueError(
                        f"sentence {i} has {len(s)} characters, at most {limits.max_chars} allowed"
                    )
                try:
                    s.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(f"sentence {i} is not valid text (a lone surrogate)") from None
            return v

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """What is wrong and where, never the input itself (a 9 MB body must not come back)."""
        errors = exc.errors()
        shown = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in errors[:MAX_ERRORS]]
        if len(errors) > MAX_ERRORS:
            shown.append({"msg": f"and {len(errors) - MAX_ERRORS} more errors"})
        return JSONResponse({"detail": jsonable_encoder(shown)}, status_code=422)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse({"detail": "internal error"}, status_code=500)

    errors: dict[int | str, dict] = {
        400: {"model": Error, "description": "the body is not JSON text (not UTF-8)"},
        413: {
            "model": Error,
            "description": f"over a limit: the body ({limits.max_body} bytes) or the word pieces "
            f"of the request ({limits.max_tokens})",
        },
        422: {
            "model": ValidationErrors,
            "description": "not a valid request: the JSON, a type, a bound (sentences, characters, "
            "word pieces per sentence), or k with mode or threshold",
        },
        503: {"model": Error, "description": "busy: the queue is full, retry later"},
    }

    @app.post("/cluster", response_model=ClusterResponse, responses=errors)
    def cluster_sentences(req: ClusterRequest, response: Response) -> ClusterResponse:
        embeddings, encoding = embed(req.sentences)  # encoding: seconds in the model, not waiting
        threshold = req.threshold if req.threshold is not None else PRESETS[req.mode]
        started = time.perf_counter()
        clusters = cluster(req.sentences, embeddings, threshold, k=req.k)
        metrics.model_seconds.observe(encoding + time.perf_counter() - started)
        result = ClusterResponse(clusters=clusters)
        response.headers["X-Worker-Pid"] = str(os.getpid())
        if stats:
            stats.incr("requests")
            stats.incr("sentences", len(req.sentences))
        return result

    def embed(sentences: list[str]):
        """Embeddings of sentences within the word-piece limits (else a 4xx naming the bound),
        and the seconds spent in the model computing them."""
        if not sentences:
            return None, 0.0
        with count_lock:
            encoded = counter(sentences, add_special_tokens=True)["input_ids"]
        pieces = [len(ids) for ids in encoded]
        too_long = [i for i, n in enumerate(pieces) if n > max_pieces]
        if too_long:
            i = too_long[0]
            raise HTTPException(
                422, f"sentence {i} has {pieces[i]} word pieces, the model reads at most {max_pieces}"
            )
        if sum(pieces) > limits.max_tokens:
            raise HTTPException(
                413, f"{sum(pieces)} word pieces in all, at most {limits.max_tokens} a request"
            )
        batches = split(pieces)
        busy = [0.0]

        def encode(batch: list[int]):
            def run():
                started = time.perf_counter()
                try:
                    return model.encode(
                        [sentences[i] for i in batch], batch_size=len(batch), normalize_embeddings=True
                    )
                finally:
                    busy[0] += time.perf_counter() - started

            return run

        try:
            parts = scheduler.run([(sum(pieces[i] for i in b), encode(b)) for b in batches])
        except Busy as e:
            raise HTTPException(
                503,
                f"busy: {e.queued} word pieces queued in this worker, retry after {e.retry_after} s",
                headers={"Retry-After": str(e.retry_after)},
            ) from None
        embeddings = numpy.empty((len(sentences), parts[0].shape[1]), dtype=parts[0].dtype)
        for batch, part in zip(batches, parts, strict=True):
            embeddings[batch] = part
        return embeddings, busy[0]

    @app.get("/health")
    def health() -> dict:
        """Liveness: the worker answers."""
        return {"status": "ok", "pid": os.getpid()}

    class Readiness(BaseModel):
        status: Literal["ready", "not ready"]
        reasons: list[str] = []
        pid: int

    @app.get(
        "/ready",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "not ready: the reasons say why"}},
    )
    def ready():
        """Readiness: the model is loaded and this worker would admit a request of the largest
        allowed size (--max-tokens word pieces) now; else a 503 with the reasons and the
        Retry-After /cluster's 503 would say."""
        reasons = []
        if model is None:
            reasons.append("the model is not loaded")
        if app.state.queue_full():
            reasons.append("the queue is full")
        body = Readiness(status="not ready" if reasons else "ready", reasons=reasons, pid=os.getpid())
        if reasons:
            headers = {"Retry-After": str(app.state.retry_after())}
            return JSONResponse(body.model_dump(), status_code=503, headers=headers)
        return body

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    def prometheus_metrics() -> Response:
        """Prometheus metrics of all the workers: responses and latency by route and status, requests
        in progress, queue depth, time in the model."""
        text, content_type = metrics.exposition()
        return Response(text, media_type=content_type)

    _offline_docs(app)
    app.add_middleware(BodyLimit, max_body=limits.max_body)
    log_to = AccessLog(access_log) if access_log else None
    app.add_middleware(Observe, router=app.router, metrics=metrics, stats=stats, access_log=log_to)

    def unparsed(client, status: int, sent: int, arrived: float, seconds: float) -> None:
        """A request the HTTP parser rejected (the worker answers it, the app never sees it):
        counted under the route `unparsed`, and access-logged with `-` for its request line."""
        metrics.observe(UNPARSED, status, seconds)
        if stats:
            stats.incr(f"responses.{UNPARSED}.{status}")
            stats.timing(f"latency.{UNPARSED}", seconds * 1000)
        if log_to:
            log_to.log({"type": "http", "client": client, "unparsed": True}, status, sent, arrived, seconds)

    app.state.unparsed = unparsed  # worker.py calls it
    return app


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI from the swagger-ui-bundle package, not a CDN: /docs works offline."""
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="webops cluster",
            swagger_js_url="/docs-static/swagger-ui-bundle.js",
            swagger_css_url="/docs-static/swagger-ui.css",
            swagger_favicon_url="/docs-static/favicon-32x32.png",
        )
