"""The HTTP API. Endpoints are plain `def`: FastAPI runs them in its thread pool, so a request
computing embeddings never blocks the worker's event loop (with a preloaded model, `async def`
endpoints can hang workers: gunicorn #2478, pytorch #49555).

No `from __future__ import annotations` here: FastAPI reads the request model from the endpoint's
annotation, and that model is a class local to create_app (it carries the configured limits).
"""

import os
import time
from dataclasses import dataclass

from fastapi import FastAPI, Response
from pydantic import BaseModel, Field, field_validator

from ..common.statsd_client import StatsdClient
from . import EXAMPLE
from .clustering import DEFAULT_THRESHOLD, cluster


@dataclass
class Limits:
    max_sentences: int = 1000
    max_chars: int = 2000


class ClusterRequest(BaseModel):
    sentences: list[str] = Field(examples=[EXAMPLE])
    threshold: float = Field(
        DEFAULT_THRESHOLD, gt=0, le=2, description="cosine distance at which clusters stop merging"
    )


class ClusterResponse(BaseModel):
    clusters: list[list[str]]


def create_app(
    model, limits: Limits, default_threshold: float = DEFAULT_THRESHOLD, statsd: str | None = None
) -> FastAPI:
    app = FastAPI(title="webops cluster", description="Groups sentences with similar meaning.")
    stats = StatsdClient(statsd, "webops.cluster") if statsd else None

    class Request(ClusterRequest):
        threshold: float = Field(default_threshold, gt=0, le=2)

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
            return v

    @app.post("/cluster", response_model=ClusterResponse)
    def cluster_sentences(req: Request, response: Response) -> ClusterResponse:
        started = time.perf_counter()
        embeddings = model.encode(req.sentences, normalize_embeddings=True) if req.sentences else None
        result = ClusterResponse(clusters=cluster(req.sentences, embeddings, req.threshold))
        response.headers["X-Worker-Pid"] = str(os.getpid())
        if stats:
            stats.incr("requests")
            stats.incr("sentences", len(req.sentences))
            stats.timing("latency", (time.perf_counter() - started) * 1000)
        return result

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "pid": os.getpid()}

    return app
