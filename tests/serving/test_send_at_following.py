"""Whether the scheduler sends at `send_at`, learned from its `sent` events in Redis
(`serving.send_at_following`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from recsys.caps.engine import new_push_id
from serving.send_at_following import (
    KEEP_DAYS,
    MIN_SENDS,
    RECHECK_SHARE,
    SendAtFollowing,
    honoured,
    is_later,
    learned_following,
    rechecked,
    suggested_send_at,
    tag_push_id,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
ZONE = "Asia/Shanghai"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


def test_a_push_id_carries_a_later_send_at_and_nothing_else() -> None:
    asked = at(1, 10)
    assert not is_later(asked, None) and not is_later(asked, asked)
    assert not is_later(asked, at(1, 10, 30)) and is_later(asked, at(1, 11))
    push_id = tag_push_id(new_push_id(), at(1, 13))
    assert len(push_id) == 43 and suggested_send_at(push_id) == at(1, 13).astimezone(UTC)
    # ids the API did not tag: a plain reservation's, or a scheduler's own
    for other in (new_push_id(), "p-1", "order-2026-11-01", "", None, f"{new_push_id()}-13h"):
        assert suggested_send_at(other) is None


def test_a_send_within_the_tolerance_of_send_at_honours_it() -> None:
    send_at = at(1, 13)
    assert honoured(send_at, send_at) and honoured(at(1, 12, 50), send_at) and honoured(at(1, 15), send_at)
    assert not honoured(at(1, 12, 40), send_at) and not honoured(at(1, 10), send_at)


def test_most_counted_sends_decide_given_enough_of_them() -> None:
    assert learned_following([]) is None
    assert learned_following([(MIN_SENDS - 1, 0)]) is None
    assert learned_following([(0, MIN_SENDS)]) is False
    assert learned_following([(8, 2), (2, 8), (0, 0)]) is True  # a tie follows: answers as before
    assert learned_following([(2, 12), (5, 1)]) is False


def test_a_scheduler_that_changes_its_habit_is_noticed_once_min_sends_of_the_new_one_count() -> None:
    # most recent day first: a week of ignoring, then a day of following...
    ignoring_week = [(0, 30)] * 6
    assert learned_following([(MIN_SENDS, 0), *ignoring_week]) is True
    assert learned_following([(0, MIN_SENDS), *[(30, 0)] * 6]) is False
    # ...but a day with fewer than MIN_SENDS counted is judged with the days before it
    assert learned_following([(MIN_SENDS // 2, 0), *ignoring_week]) is False
    assert learned_following([(MIN_SENDS // 2, 0), (MIN_SENDS // 2, 0), *ignoring_week]) is True


def test_a_share_of_cardholders_a_day_is_rechecked_and_a_different_one_each_day() -> None:
    users = [f"u{number:05d}" for number in range(8_000)]
    first = {u for u in users if rechecked(u, at(1, 10).date())}
    second = {u for u in users if rechecked(u, at(2, 10).date())}
    for day in (first, second):
        assert abs(len(day) - len(users) / RECHECK_SHARE) < 4 * (len(users) / RECHECK_SHARE) ** 0.5
    assert len(first & second) < len(first) / 4  # about one in RECHECK_SHARE of them again
    assert first == {u for u in users if rechecked(u, at(1, 23).date())}  # the same all day


@pytest.mark.redis
def test_sent_events_teach_whether_send_at_is_followed_through_redis(redis_client, key_prefix) -> None:
    prefix = f"fs:{key_prefix}"
    first = SendAtFollowing(redis_client, prefix)
    assert first.follows(at(1, 10), ZONE) is None  # a new deployment knows nothing
    # day 1: most pushes answered for 13:00 went out at 10:00, when the scheduler asked
    first.record([(at(1, 10), at(1, 13))] * 18 + [(at(1, 13, 2), at(1, 13))] * 4, ZONE)
    assert first.follows(at(1, 19, 30), ZONE) is None  # the day's own sends count from the next day
    other = SendAtFollowing(redis_client, prefix)  # another worker: the counts are shared
    assert other.follows(at(2, 10), ZONE) is False
    key = other.days.key(at(1, 0).date())
    counts = {field.decode(): int(count) for field, count in redis_client.hgetall(key).items()}
    assert counts == {"honoured": 4, "ignored": 18}
    assert 0 < redis_client.ttl(key) <= KEEP_DAYS * 86_400
    # a send's day is its local day in the policy's zone: 23:30 UTC on the 1st is the 2nd in Shanghai
    late = datetime(2026, 11, 1, 23, 30, tzinfo=UTC)
    other.record([(late + timedelta(hours=4), late + timedelta(hours=4))] * 30, ZONE)
    assert int(redis_client.hget(other.days.key(at(2, 0).date()), "honoured")) == 30
    assert other.follows(at(2, 19, 30), ZONE) is False  # read once a day
    assert first.follows(at(3, 10), ZONE) is True  # 34 honoured against 18 over the last seven days
    # a week later the first days have left the window: nothing counted, not known
    assert SendAtFollowing(redis_client, prefix).follows(at(10, 10), ZONE) is None
    assert redis_client.keys(f"{prefix}:follows:*")
