"""`POST /v1/rank` and `POST /v1/rank/batch`: ranked, eligible, capped content for cardholders."""

from __future__ import annotations

import asyncio
from functools import partial

from fastapi import APIRouter, Response

from serving.auth import RankAccess
from serving.deps import Coalescing, RankExecutor, State
from serving.ranker import rank_many, registry_of
from serving.responses import json_response
from serving.schemas import BatchRankRequest, BatchRankResponse, RankRequest, RankResponse

router = APIRouter(prefix="/v1", tags=["ranking"])

ERRORS = {
    401: {"description": "Missing or invalid bearer token"},
    503: {"description": "No model version is live, or the caps store is unavailable (nothing allowed)"},
}


@router.post("/rank", response_model=RankResponse, responses=ERRORS,
             summary="Rank content for one cardholder, within the caps")
async def rank(body: RankRequest, coalescer: Coalescing, principal: RankAccess) -> Response:
    """Scores every eligible candidate with the published model, applies the caps over the ordered
    list and returns the best `k` allowed items; with `reserve`, the top one holds a cap slot under
    `push_id` until a `sent` or `failed` event (or the policy's reservation TTL)."""
    answer = await coalescer.rank(body)
    return json_response(answer)


@router.post("/rank/batch", response_model=BatchRankResponse, responses=ERRORS,
             summary="Rank up to 1,000 cardholders in one call")
async def rank_batch(body: BatchRankRequest, state: State, executor: RankExecutor,
                     principal: RankAccess) -> Response:
    loop = asyncio.get_running_loop()
    # Counted by whether this worker was ranking another batch already: the share of such batches says how
    # evenly new connections reach the workers (README, "Load").
    state.metrics.batches.labels("true" if state.batches_running else "false").inc()
    state.batches_running += 1
    try:
        # a batch call is the scheduler at one of its slots: its time of day is recorded (`scheduler_slots`)
        snapshot, bodies = await loop.run_in_executor(executor, partial(rank_many, state, body.requests,
                                                                        record_slots=True))
    finally:
        state.batches_running -= 1
    response = json_response({"results": bodies, "model_version": snapshot.model.version,
                              **registry_of(snapshot.model)})
    # Workers share the listening socket and a kept-alive connection stays with the worker that
    # accepted it: two schedulers' connections on one worker had their batches wait for each other
    # while the other worker idled. A new connection per batch (a handshake against ~100 ms of work)
    # goes to whichever worker accepts it first, which spread the batches evenly (README, "Load").
    response.headers["connection"] = "close"
    return response
