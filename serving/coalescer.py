"""Single `POST /v1/rank` requests that arrive together are ranked in one `rank_many` call."""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import Executor
from typing import Any

from serving.ranker import rank_many
from serving.schemas import RankRequest
from serving.state import ServingState

MAX_COALESCED = 64
# Under load, a group waits up to this long for the requests the worker has recently been
# answering together; a lone request (no recent concurrency) never waits.
LINGER_SECONDS = 0.002  # 1 ms left one group in eight short of its requests under load
RECENT_GROUPS = 32  # groups whose sizes set how many requests a group waits for


class Coalescer:
    """Single rank requests that arrive together are ranked in one `rank_many` call.

    Ranking runs in `executor` (a bounded thread pool), never on the event loop, so a slow Redis
    or a large group never stalls the worker's other requests (`/healthz` among them). Requests that
    arrive while a group is being ranked wait in the loop and form the next group, whose caps are
    decided in one pipelined round trip (and any records the worker does not hold read in one MGET).
    Every request still gets exactly its own answer; a cardholder asked for twice goes into a later
    group of the same flush, ranked after the first, so the second request sees the first one's
    reservation.

    Requests arrive a few hundred microseconds apart even when the clients send them at once, so
    ranking as soon as the loop is free made groups of one or two. A group therefore waits, at most
    `linger` seconds, until it has as many requests as the largest of the last `RECENT_GROUPS`
    groups; while groups are of one request (a single client, light load) nothing waits.
    """

    def __init__(self, state: ServingState, linger: float = LINGER_SECONDS,
                 executor: Executor | None = None) -> None:
        self.state = state
        self.linger = linger
        self.executor = executor  # None: the event loop's default executor
        self.pending: list[tuple[RankRequest, asyncio.Future[Any]]] = []
        self.requests = 0  # requests ranked and `rank_many` calls made: how much was coalesced
        self.groups = 0
        self.recent: deque[int] = deque([1], maxlen=RECENT_GROUPS)
        self.expected = 1
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def rank(self, request: RankRequest) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((request, future))
        waiting = len(self.pending)
        if waiting == 1:
            if self.expected > 1:
                self._timer = loop.call_later(self.linger, self.flush)
            else:
                # After the requests already in the ready queue have joined.
                loop.call_soon(self.flush)
        elif waiting == self.expected and self._timer is not None:
            self._timer.cancel()
            self._timer = None
            loop.call_soon(self.flush)
        return await future

    def flush(self) -> None:
        self._timer = None
        pending, self.pending = self.pending, []
        if not pending:
            return
        self.recent.append(len(pending))
        self.expected = max(self.recent)
        groups = []
        while pending:
            group, later, users = [], [], set()
            for item in pending:
                if item[0].user_id in users or len(group) >= MAX_COALESCED:
                    later.append(item)
                else:
                    users.add(item[0].user_id)
                    group.append(item)
            groups.append(group)
            pending = later
        task = asyncio.get_running_loop().create_task(self._run(groups))
        self._flushes.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._flushes.discard)

    async def _run(self, groups: list[list[tuple[RankRequest, asyncio.Future[Any]]]]) -> None:
        loop = asyncio.get_running_loop()
        for group in groups:
            self.requests += len(group)
            self.groups += 1
            try:
                requests = [request for request, _ in group]
                bodies = await loop.run_in_executor(self.executor, self._rank, requests)
            except Exception as error:  # noqa: BLE001 - each request's task maps or re-raises it
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), body in zip(group, bodies, strict=True):
                if not future.done():
                    future.set_result(body)

    def _rank(self, requests: list[RankRequest]) -> list[dict[str, Any]]:
        """One group's answers (runs in the executor)."""
        return rank_many(self.state, requests)[1]
