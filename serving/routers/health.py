"""Liveness, readiness and Prometheus metrics (no authentication: for orchestrators and scrapers).

`/healthz` touches nothing but the process, so it answers while Redis is down or stalled; every
route that calls Redis is a plain `def` (run in the thread pool), so none holds the event loop.
"""

from __future__ import annotations

import redis
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from serving.deps import State
from serving.ranker import registry_of
from serving.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, summary="Redis answers and a model version is live",
            responses={503: {"model": Readiness,
                             "description": "Not ready: Redis down or nothing published"}})
def readyz(state: State) -> JSONResponse:
    body = {"status": "not_ready", "redis": False, "model_version": None, "registry_model": None,
            "registry_version": None, "policy_revision": None, "detail": ""}
    try:
        state.client.ping()
        body["redis"] = True
        state.refresh(force=True)
    except redis.RedisError as error:
        body["detail"] = f"Redis unreachable ({type(error).__name__}): check RECSYS_REDIS_URL"
        return JSONResponse(body, status_code=503)
    body["model_version"] = state.model.version if state.model else None
    body.update(registry_of(state.model))
    body["policy_revision"] = state.policy.revision if state.policy else None
    if state.model is None:
        body["detail"] = state.last_error or "no model version is live: run `recsys publish`"
        return JSONResponse(body, status_code=503)
    body["status"] = "ready"
    # Serving a verified version while the live pointer names one that cannot be loaded.
    body["detail"] = state.last_error or "ok"
    return JSONResponse(body)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(state: State) -> Response:
    payload, content_type = state.metrics.exposition()
    return Response(payload, media_type=content_type)
