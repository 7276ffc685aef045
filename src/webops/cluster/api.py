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

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from ..common.statsd_client import StatsdClient
from . import DEFAULT_MODE, EXAMPLE, PRESETS
from .clustering import cluster

log = logging.getLogger("webops.cluster")
MAX_ERRORS = 20  # validation errors a 422 lists (a body of 19,000 bad items gets 20 and a count)


@dataclass
class Limits:
    max_sentences: int = 1000
    max_chars: int = 2000
    max_tokens: int = 50_000  # word pieces per request: ~16 s of one core (3,100 word pieces/s)
    max_body: int = 1 << 20  # bytes

    def check(self, timeout: float) -> None:
        """Refuse limits the worker timeout cannot hold: a request of `max_tokens` word pieces must
        end within the timeout even on a machine 3x slower than the one measured."""
        for name in ("max_sentences", "max_chars", "max_tokens", "max_body"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_tokens / 1000 > timeout:
            raise ValueError(
                f"--max-tokens {self.max_tokens} cannot be encoded within --timeout {timeout:g} s "
                f"(about 1,000 word pieces/s on a slow core): lower it or raise the timeout"
            )


class ClusterResponse(BaseModel):
    clusters: list[list[str]]


class BodyLimit:
    """ASGI middleware: a body over `max_body` bytes is a 413, checked against Content-Length and
    as it streams in (it is read whole before the app sees it: at most max_body bytes held); and
    every response is counted in statsd with the whole time spent on it
    (reading and validating the body included)."""

    def __init__(self, app, max_body: int, stats: StatsdClient | None) -> None:
        self.app, self.max_body, self.stats = app, max_body, stats

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}
        too_large = JSONResponse({"detail": f"request body over {self.max_body} bytes"}, status_code=413)
        length = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_body:
            await too_large(scope, receive, send)
            return self._count(413, started)
        body, more = [], True
        size = 0
        while more:  # read it all first (at most max_body + one chunk): a 413 before any work
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message], receive), send)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await too_large(scope, receive, send)
                return self._count(413, started)
            body.append(chunk)
            more = message.get("more_body", False)

        async def counted_send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        whole = {"type": "http.request", "body": b"".join(body), "more_body": False}
        await self.app(scope, _replay([whole], receive), counted_send)
        self._count(status["code"], started)

    def _count(self, code: int, started: float) -> None:
        if self.stats:
            self.stats.incr(f"responses.{code}")
            self.stats.timing("latency", (time.perf_counter() - started) * 1000)


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
) -> FastAPI:
    app = FastAPI(
        title="webops cluster",
        description="Groups sentences with similar meaning (English: the model is all-MiniLM-L6-v2).",
        docs_url=None,
        redoc_url=None,
    )
    stats = StatsdClient(statsd, "webops.cluster") if statsd else None
    max_pieces = int(getattr(model, "max_seq_length", 256))
    # One request at a time uses the model in a worker: the tokenizer keeps per-call settings
    # (padding, truncation) that concurrent calls from FastAPI's thread pool would mix up, and the
    # worker's torch threads are the parallelism anyway (workers are the concurrency).
    model_lock = threading.Lock()

    class ClusterRequest(BaseModel):
        sentences: Annotated[
            list[str],
            Field(
                examples=[EXAMPLE],
                json_schema_extra={
                    "maxItems": limits.max_sentences,
                    "items": {"maxLength": limits.max_chars},
                },
            ),
        ]
        mode: Literal["topic", "paraphrase"] = Field(
            default_mode,  # type: ignore[arg-type]
            description="topic: group by subject; paraphrase: only rewordings of each other",
        )
        threshold: float | None = Field(
            default_threshold,
            gt=0,
            le=2,
            allow_inf_nan=False,
            description="cosine distance at which clusters stop merging (overrides mode)",
        )

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

    @app.post("/cluster", response_model=ClusterResponse)
    def cluster_sentences(req: ClusterRequest, response: Response) -> ClusterResponse:
        with model_lock:
            embeddings = embed(req.sentences)
        threshold = req.threshold if req.threshold is not None else PRESETS[req.mode]
        result = ClusterResponse(clusters=cluster(req.sentences, embeddings, threshold))
        response.headers["X-Worker-Pid"] = str(os.getpid())
        if stats:
            stats.incr("requests")
            stats.incr("sentences", len(req.sentences))
        return result

    def embed(sentences: list[str]):
        """Embeddings of sentences within the word-piece limits (else a 4xx naming the bound)."""
        if not sentences:
            return None
        encoded = model.tokenizer(sentences, add_special_tokens=True)["input_ids"]
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
        return model.encode(sentences, normalize_embeddings=True)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "pid": os.getpid()}

    _offline_docs(app)
    app.add_middleware(BodyLimit, max_body=limits.max_body, stats=stats)
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
