"""Dependencies shared by the routers."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Annotated

from fastapi import Depends, Request

from serving.coalescer import Coalescer
from serving.state import ServingState


async def serving_state(request: Request) -> ServingState:
    # async on purpose: FastAPI runs plain `def` dependencies in a thread pool, a hop per request.
    return request.app.state.serving


State = Annotated[ServingState, Depends(serving_state)]


async def coalescer(request: Request) -> Coalescer:
    return request.app.state.coalescer


async def rank_executor(request: Request) -> Executor:
    return request.app.state.rank_executor


Coalescing = Annotated[Coalescer, Depends(coalescer)]
RankExecutor = Annotated[Executor, Depends(rank_executor)]
