"""The `/studio` page and its simulation endpoint.

The page and its assets are served openly (they hold no data); every call the page makes for data
or actions carries the admin token: `GET /v1/policy`, `PUT /v1/policy` (apply: the API's own
validated, versioned, audited update), `GET /v1/policy/versions`, `POST /v1/policy/rollback`, and
`POST /v1/studio/simulate` here, which replays the configured world under the live policy and a
draft (same cardholders, same random draws) and returns the comparison with PNG charts.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from recsys.caps.policy import parse_policy
from serving.auth import AdminAccess
from serving.deps import State
from serving.studio.service import (
    MAX_STUDIO_DAYS,
    MAX_STUDIO_USERS,
    StudioBusyError,
    StudioNotConfiguredError,
    StudioService,
)
from simulation.vector_caps import SimulationError

router = APIRouter(tags=["studio"])

ASSETS = {"studio.css": "text/css; charset=utf-8", "studio.js": "text/javascript; charset=utf-8"}
# Everything comes from this server: no CDN, works offline; charts arrive as data: URIs.
CSP = ("default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_service_lock = threading.Lock()


@lru_cache(maxsize=len(ASSETS) + 1)  # the page and its assets: a fixed set, read once
def asset(name: str) -> str:
    return resources.files("serving.studio").joinpath("static", name).read_text(encoding="utf-8")


def studio_service(request: Request) -> StudioService:
    with _service_lock:
        service = getattr(request.app.state, "studio", None)
        if service is None:
            service = request.app.state.studio = StudioService(request.app.state.serving.settings)
        return service


@router.get("/studio", response_class=HTMLResponse, include_in_schema=False)
async def studio_page() -> HTMLResponse:
    return HTMLResponse(asset("studio.html"), headers={"Content-Security-Policy": CSP,
                                                      "Cache-Control": "no-cache"})


@router.get("/studio/assets/{name}", include_in_schema=False)
async def studio_asset(name: str) -> Response:
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail=f"no studio asset {name!r}")
    return Response(asset(name), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


class StudioWorld(BaseModel):
    data_dir: str
    truth_path: str | None
    model_uri: str | None
    sample: int = Field(description="Cardholders sampled from the world for each simulation.")
    days: int = Field(description="Days simulated unless the request says otherwise.")


class SimulateRequest(BaseModel):
    draft: dict[str, Any] = Field(description="The draft policy document (the policy YAML format as JSON).")
    days: int | None = Field(None, ge=1, le=MAX_STUDIO_DAYS,
                             description="Days to replay (default: configured).")
    users: int | None = Field(None, ge=10, le=MAX_STUDIO_USERS,
                              description="Cardholders to sample (at most the configured sample).")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random seed; the same seed gives the same result.")
    charts: bool = Field(True, description="Render the PNG charts (about a second); false: numbers only.")


class SimulateResponse(BaseModel):
    live_revision: int
    report: dict[str, Any] = Field(description="Per policy: totals, blocks by rule, segments, daily series.")
    charts: dict[str, str] = Field(description="PNG charts as data: URIs, by name.")
    seconds: float


def _info(service: StudioService):
    try:
        return service.info()
    except StudioNotConfiguredError as error:
        raise HTTPException(status_code=503, detail=str(error)) from error


@router.get("/v1/studio/world", response_model=StudioWorld, summary="The world the studio simulates on")
def studio_world(request: Request, principal: AdminAccess) -> dict:
    service = studio_service(request)
    info = _info(service)
    service.warm()
    return info.__dict__


@router.post("/v1/studio/simulate", response_model=SimulateResponse,
             summary="Simulate a draft policy against the live one (admin)",
             responses={422: {"description": "Invalid draft, with every offending field named"},
                        503: {"description": "No world configured for the studio, or the simulator is busy"}})
def studio_simulate(
    request: Request,
    state: State,
    principal: AdminAccess,
    body: Annotated[SimulateRequest, Body()],
) -> dict:
    """Replays the configured world under the live policy and the draft with the same cardholders and
    random draws; nothing is changed. Apply a draft with `PUT /v1/policy`."""
    draft = parse_policy(body.draft, "draft")
    live = state.snapshot(need_model=False).policy
    service = studio_service(request)
    _info(service)
    try:
        result = service.compare(live.policy, f"live (rev {live.revision})", draft, body.days, body.users,
                                 body.seed, charts=body.charts)
    except StudioNotConfiguredError as error:
        raise HTTPException(status_code=503, detail=str(error)) from error
    except SimulationError as error:
        raise HTTPException(status_code=422, detail=str(error)) from error
    except StudioBusyError as error:
        raise HTTPException(status_code=503, detail=str(error), headers={"Retry-After": "30"}) from error
    return {"live_revision": live.revision, **result}
