"""The demo's helpers: the moment its example calls use, and deleting its Redis keys."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from scripts.demo_keys import delete_prefix
from scripts.demo_moment import first_morning_after

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(("as_of", "expected"), [
    # the default world's end: 07:59:59 on 1 November in Shanghai -> 10:00 that day
    (datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC), datetime(2026, 11, 1, 10, 0, tzinfo=SHANGHAI)),
    # already past 10:00 locally (15:30 UTC is 23:30 in Shanghai) -> the next morning
    (datetime(2027, 12, 5, 15, 30, tzinfo=UTC), datetime(2027, 12, 6, 10, 0, tzinfo=SHANGHAI)),
    # exactly 10:00 locally is not after it -> the next morning
    (datetime(2026, 11, 1, 2, 0, tzinfo=UTC), datetime(2026, 11, 2, 10, 0, tzinfo=SHANGHAI)),
])
def test_the_demo_moment_is_the_next_local_morning(as_of: datetime, expected: datetime) -> None:
    assert first_morning_after(as_of, SHANGHAI) == expected


def test_the_demo_moment_follows_the_cardholder_zone() -> None:
    new_york = ZoneInfo("America/New_York")
    moment = first_morning_after(datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC), new_york)
    assert moment == datetime(2026, 11, 1, 10, 0, tzinfo=new_york)  # after the DST change that night
    assert moment.utcoffset().total_seconds() == -5 * 3600


@pytest.mark.redis
def test_deleting_a_demo_prefix_keeps_every_other_key(redis_client, key_prefix) -> None:
    run, other = f"{key_prefix}-demo-1", f"{key_prefix}-demo"
    redis_client.set(f"{run}:pub:live", "v1")
    redis_client.hset(f"{{{run}:caps:u:u1}}", "o", "1")
    redis_client.set(f"{run}:events:seen:e1", "1")
    redis_client.set(f"{other}:pub:live", "keep")
    assert delete_prefix(redis_client, f"{key_prefix}-demo-*") == 3
    assert redis_client.get(f"{other}:pub:live") == b"keep"
