"""The scheduler's times of asking, learned from batch calls in Redis (`serving.scheduler_slots`)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from serving.scheduler_slots import KEEP_DAYS, SchedulerSlots, learned_slots

SHANGHAI = ZoneInfo("Asia/Shanghai")
ZONE = "Asia/Shanghai"
MORNING, EVENING = 10 * 60, 19 * 60 + 30


def test_a_slot_is_a_minute_asked_at_on_most_days() -> None:
    assert learned_slots([]) == ()
    assert learned_slots([[MORNING, EVENING]]) == ()  # one day is not a habit yet
    assert learned_slots([[MORNING, EVENING], [MORNING, EVENING], [MORNING]]) == (MORNING, EVENING)
    assert learned_slots([[MORNING, EVENING], [MORNING], [MORNING]]) == (MORNING,)
    # a batch run spilling into the next minutes, and a scheduler a few minutes late, is one slot
    assert learned_slots([[MORNING, MORNING + 1, MORNING + 2], [MORNING + 4], []]) == (MORNING,)
    # an irregular scheduler (a different time every day) has no slots
    assert learned_slots([[480], [600], [720], [840]]) == ()


def test_one_day_is_enough_when_the_caller_asks_for_it() -> None:
    # for a scheduler known to send at once (the second day of a deployment)
    assert learned_slots([[MORNING, EVENING]], min_days=1) == (MORNING, EVENING)
    assert learned_slots([[], [MORNING, EVENING], []], min_days=1) == (MORNING, EVENING)
    assert learned_slots([], min_days=1) == ()
    # from two days on the habit is the same whatever the caller asked for
    days = [[MORNING, EVENING], [MORNING], [MORNING]]
    assert learned_slots(days, min_days=1) == learned_slots(days) == (MORNING,)


def at(day: int, minute: int) -> datetime:
    return datetime(2026, 11, day, minute // 60, minute % 60, tzinfo=SHANGHAI)


@pytest.mark.redis
def test_batch_calls_teach_the_slots_through_redis(redis_client, key_prefix) -> None:
    first = SchedulerSlots(redis_client, key_prefix)
    assert first.slots([at(1, MORNING)], ZONE, record=True) == ()  # a new deployment knows none
    assert first.slots([at(1, EVENING).astimezone(UTC)], ZONE, record=True) == ()
    other = SchedulerSlots(redis_client, key_prefix)  # another worker: the calls are shared
    assert other.slots([at(2, MORNING + 1)], ZONE, record=True) == ()  # only one earlier day
    assert other.slots([at(2, EVENING)], ZONE, record=True) == ()
    assert first.slots([at(2, MORNING)], ZONE, record=False, min_days=1) == (MORNING, EVENING)
    assert first.slots([at(2, MORNING)], ZONE, record=False) == ()  # two days still needed by default
    assert first.slots([at(3, MORNING)], ZONE, record=False) == (MORNING, EVENING)
    key = first.days.key(at(1, 0).date())
    assert sorted(int(f) for f in redis_client.hkeys(key)) == [MORNING, EVENING]
    assert 0 < redis_client.ttl(key) <= KEEP_DAYS * 86_400
    # one write per new minute and worker: the same minute again does not touch Redis
    before = redis_client.hget(first.days.key(at(3, 0).date()), str(MORNING))
    first.slots([at(3, MORNING)], ZONE, record=True)
    first.slots([at(3, MORNING)], ZONE, record=True)
    assert int(redis_client.hget(first.days.key(at(3, 0).date()), str(MORNING))) == int(before or 0) + 1
    # a scheduler that moves its evening slot: the old one fades once most recent days lack it
    for day in range(4, 9):
        other.slots([at(day, MORNING), at(day, 21 * 60)], ZONE, record=True)
    assert other.slots([at(9, MORNING)], ZONE, record=False) == (MORNING, 21 * 60)
    assert redis_client.keys(f"{key_prefix}:slots:*") and all(
        0 < redis_client.ttl(k) for k in redis_client.keys(f"{key_prefix}:slots:*"))
