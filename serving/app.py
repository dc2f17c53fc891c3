"""The FastAPI application: `create_app(settings)` builds one; `app` is what `recsys serve` runs.

Routers are included from the explicit `ROUTERS` list (module paths, each exposing `router`);
add a resource by adding its module there.
"""

from __future__ import annotations

import gc
import importlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from recsys.config import Settings, get_settings
from serving import errors
from serving.coalescer import Coalescer
from serving.limits import BodyLimitMiddleware
from serving.metrics import MetricsMiddleware
from serving.state import ServingState

logger = logging.getLogger(__name__)

# Threads ranking requests off the event loop. Ranking holds the GIL most of the time, so a second
# thread mainly lets one group's Redis round trip overlap another's ranking; more would only queue.
RANK_THREADS = 2
# Young objects allowed before the cyclic collector runs (Python's default is 700). A 1k batch holds
# about 20,000 containers (answers, decisions) until it is answered, all of which die by reference
# counting; at 700 the collector ran ~30 young and ~3 middle collections per batch, re-scanning them
# for 3.7 ms of its ~46 ms of CPU. At 10,000 it still ran twice per batch, each scan larger (README, Load).
YOUNG_GC_THRESHOLD = 50_000

ROUTERS: tuple[str, ...] = (
    "serving.routers.health",
    "serving.routers.rank",
    "serving.routers.events",
    "serving.routers.users",
    "serving.routers.policy",
    "serving.routers.admin",
    "serving.studio.router",
)

DESCRIPTION = """Ranking API of the Qianmian push engine.

The push scheduler asks what each cardholder should get now: personal (LightFM hybrid scores),
eligible (validity, card tier, not already seen) and within the anti-disturbance caps.
Authenticate with `Authorization: Bearer <token>` (scheduler or admin token).
"""


def create_app(settings: Settings | None = None, routers: tuple[str, ...] = ROUTERS,
               freeze_gc: bool = False) -> FastAPI:
    """The app; `freeze_gc` is for a server process: see `app_from_environment`."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state.serving
        state.start()
        if freeze_gc:
            # Startup objects (libraries, the live model) never become garbage; frozen, the cyclic
            # collector stops re-scanning them, which was a pause of tens of ms inside large batches.
            gc.collect()
            gc.freeze()
            gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        try:
            yield
        finally:
            app.state.rank_executor.shutdown(wait=True)
            studio = getattr(app.state, "studio", None)
            if studio is not None:
                studio.close()
            state.close()

    # A bank's network reaches no CDN: the docs pages load Swagger UI / ReDoc from the package.
    app = FastAPIOffline(title="Qianmian ranking API", version="1", description=DESCRIPTION,
                         lifespan=lifespan)
    app.state.serving = ServingState(settings)
    app.state.rank_executor = ThreadPoolExecutor(RANK_THREADS, thread_name_prefix="rank")
    app.state.coalescer = Coalescer(app.state.serving, executor=app.state.rank_executor)
    errors.install(app)
    for name in routers:
        app.include_router(importlib.import_module(name).router)
    app.add_middleware(MetricsMiddleware, metrics=app.state.serving.metrics)
    # Outermost: an oversized body is refused before any other layer reads it.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    return app


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory serving.app:app_from_environment` (settings from RECSYS_*).

    Each worker process builds its app here; requests multiply small matrices, so BLAS runs
    single-threaded instead of fighting the other workers for the cores. The objects alive after
    startup are frozen out of the cyclic garbage collector.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    return create_app(get_settings(), freeze_gc=True)
