"""How `POST /v1/rank` groups single rank requests (no Redis: the ranking step is replaced by a recorder)."""

from __future__ import annotations

import asyncio
import time

from serving.coalescer import Coalescer
from serving.schemas import RankRequest

LINGER = 0.05


class RecordingCoalescer(Coalescer):
    """Answers each request with its own user id and remembers the groups it was asked to rank."""

    def __init__(self) -> None:
        # Longer than the server's linger: the event loop's timers have millisecond resolution.
        super().__init__(state=None, linger=LINGER)  # type: ignore[arg-type]
        self.seen: list[list[str]] = []

    def _rank(self, requests) -> list[str]:
        self.seen.append([request.user_id for request in requests])
        return [request.user_id for request in requests]


def request(user: str) -> RankRequest:
    return RankRequest(user_id=user)


async def staggered(coalescer: Coalescer, users: list[str], gap: float) -> list[str]:
    async def one(position: int, user: str) -> str:
        await asyncio.sleep(position * gap)
        return await coalescer.rank(request(user))

    return await asyncio.gather(*(one(position, user) for position, user in enumerate(users)))


def test_a_lone_request_is_ranked_at_once() -> None:
    async def scenario() -> list[float]:
        coalescer = RecordingCoalescer()
        waits = []
        for user in ["a", "b", "c"]:
            started = asyncio.get_running_loop().time()
            assert await coalescer.rank(request(user)) == user
            waits.append(asyncio.get_running_loop().time() - started)
        return coalescer.seen, waits

    seen, waits = asyncio.run(scenario())
    assert seen == [["a"], ["b"], ["c"]]
    assert max(waits) < LINGER


def test_requests_arriving_apart_are_grouped_once_concurrency_was_seen() -> None:
    async def scenario() -> RecordingCoalescer:
        coalescer = RecordingCoalescer()
        # Arriving together: one group of three, which makes three the expected group size.
        assert await asyncio.gather(*(coalescer.rank(request(u)) for u in "abc")) == list("abc")
        # Arriving a fifth of the linger time apart: still one group, ranked when the third came.
        assert await staggered(coalescer, list("def"), LINGER / 5) == list("def")
        # Only two of three come: the group is ranked when the linger time is up.
        started = asyncio.get_running_loop().time()
        assert await staggered(coalescer, list("gh"), LINGER / 5) == list("gh")
        coalescer.waited = asyncio.get_running_loop().time() - started
        return coalescer

    coalescer = asyncio.run(scenario())
    assert coalescer.seen == [list("abc"), list("def"), list("gh")]
    assert coalescer.waited >= 0.9 * LINGER  # timers may fire a clock tick early


def test_a_cardholder_asked_for_twice_is_ranked_in_a_later_group() -> None:
    async def scenario() -> list[list[str]]:
        coalescer = RecordingCoalescer()
        assert await asyncio.gather(*(coalescer.rank(request(u)) for u in "abac")) == list("abac")
        return coalescer.seen

    assert asyncio.run(scenario()) == [list("abc"), ["a"]]


class SlowCoalescer(RecordingCoalescer):
    def _rank(self, requests) -> list[str]:
        time.sleep(0.3)  # a slow Redis or a large group, blocking the thread that ranks
        return super()._rank(requests)


def test_ranking_never_blocks_the_event_loop() -> None:
    async def scenario() -> float:
        coalescer = SlowCoalescer()
        started = asyncio.get_running_loop().time()
        ranking = asyncio.ensure_future(coalescer.rank(request("a")))
        await asyncio.sleep(0.01)  # the loop's other work while the group is being ranked
        waited = asyncio.get_running_loop().time() - started
        assert await ranking == "a"
        return waited

    assert asyncio.run(scenario()) < 0.1
