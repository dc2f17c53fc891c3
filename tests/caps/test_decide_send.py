"""`decide_send` then `collect` decides as `decide_batch` does, with work and other batches in between."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from recsys.caps.decisions import Candidate, CapRequest, UserDecision
from recsys.caps.policy import parse_policy
from recsys.caps.redis_engine import RedisCapEngine
from recsys.caps.reference import ReferenceCapEngine

pytestmark = pytest.mark.redis

POLICY = parse_policy({
    "version": "send-collect-1",
    "limits": [{"name": "daily", "window": "calendar_day", "max": 1}],
    "no_repeat": {"window": "forever"},
    "quiet_hours": {"start": "22:00", "end": "08:00"},
    "campaign_throttle": {"max": 1000, "per": "1h", "campaigns": {"blitz": {"max": 7, "per": "1h"}}},
})
CONTENTS = [Candidate(f"c{i}", kind="article" if i % 2 else "promotion",
                      campaign="blitz" if i % 3 == 0 else None) for i in range(8)]
T0 = datetime(2026, 5, 20, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
ZONES = ["Asia/Shanghai", "Europe/London", None, "America/New_York"]


def requests_for(users: list[str], reserve: bool, tag: str) -> list[CapRequest]:
    """Requests with explicit push ids (so two stores can be compared) and candidate orders that vary."""
    return [CapRequest(user, tuple(CONTENTS[(n + j) % len(CONTENTS)] for j in range(5)), ZONES[n % 4],
                       reserve and n % 5 != 4, f"{tag}-{user}" if reserve and n % 5 != 4 else None)
            for n, user in enumerate(users)]


def engine(redis_url: str, key_prefix: str) -> RedisCapEngine:
    return RedisCapEngine.from_url(redis_url, POLICY, prefix=f"{key_prefix}-{uuid.uuid4().hex[:6]}")


def history(store, users: list[str]) -> None:
    """Yesterday's sent pushes for some cardholders: today's no-repeat blocks follow from them."""
    for n, user in enumerate(users[::3]):
        decision = store.decide(user, [CONTENTS[n % len(CONTENTS)]], now=T0 - timedelta(days=1), reserve=True,
                                push_id=f"old-{user}")
        assert decision.reservation is not None
        store.confirm(user, decision.reservation.push_id, now=T0 - timedelta(days=1))


def shown(decisions: list[UserDecision]) -> list[tuple]:
    return [(d.user_id, d.decisions, None if d.reservation is None else
             (d.reservation.push_id, d.reservation.content_id, d.reservation.status)) for d in decisions]


def test_send_then_collect_decides_as_decide_batch(redis_url: str, key_prefix: str, redis_client) -> None:
    users = [f"u{n}" for n in range(40)]
    one_shot, split = engine(redis_url, key_prefix), engine(redis_url, key_prefix)
    reference = ReferenceCapEngine(POLICY)
    for store in (one_shot, split, reference):
        history(store, users)
    # the blitz campaign (7 an hour) fills up inside the batch: a later round decides the rest again
    batch = requests_for(users, reserve=True, tag="p")
    expected = one_shot.decide_batch(batch, now=T0)
    flight = split.decide_send(batch, now=T0)
    unrelated = split.decide_batch(requests_for(["other-1", "other-2"], reserve=False, tag="x"), now=T0)
    got = flight.collect()
    assert shown(got) == shown(expected) == shown(reference.decide_batch(batch, now=T0))
    assert sum(d.reservation is not None and d.reservation.content_id in {"c0", "c3", "c6"} for d in got) == 7
    assert [d.user_id for d in unrelated] == ["other-1", "other-2"]
    with pytest.raises(RuntimeError, match="already collected"):
        flight.collect()


def test_batches_in_flight_together_decide_as_one_after_the_other(redis_url: str, key_prefix: str,
                                                                   redis_client) -> None:
    """Two batches sent before either is collected share the campaign throttle exactly."""
    first_users, second_users = [f"a{n}" for n in range(12)], [f"b{n}" for n in range(12)]
    overlapped, sequential = engine(redis_url, key_prefix), engine(redis_url, key_prefix)
    first, second = requests_for(first_users, True, "p"), requests_for(second_users, True, "p")
    expected = sequential.decide_batch(first, now=T0) + sequential.decide_batch(second, now=T0)
    first_flight = overlapped.decide_send(first, now=T0)
    second_flight = overlapped.decide_send(second, now=T0)
    got = first_flight.collect() + second_flight.collect()
    assert shown(got) == shown(expected)


def test_racing_clients_never_both_take_the_last_slot(redis_url: str, key_prefix: str, redis_client) -> None:
    """Two schedulers (own connections) send reserving batches for the same cardholders before reading."""
    prefix = f"{key_prefix}-race"
    users = [f"r{n}" for n in range(60)]
    left = RedisCapEngine.from_url(redis_url, POLICY, prefix=prefix)
    right = RedisCapEngine.from_url(redis_url, POLICY, prefix=prefix)
    left_flight = left.decide_send(requests_for(users, True, "left"), now=T0)
    right_flight = right.decide_send(requests_for(users, True, "right"), now=T0)
    got = right_flight.collect() + left_flight.collect()
    reserved = [d.user_id for d in got if d.reservation is not None]
    alone = ReferenceCapEngine(POLICY).decide_batch(requests_for(users, True, "left"), now=T0)
    wanted = [d.user_id for d in alone if d.reservation is not None]
    # the daily cap of 1: each cardholder one scheduler alone would reserve (not in quiet hours) is
    # reserved by exactly one of the two; a full blitz campaign only moves it to a later candidate
    assert sorted(reserved) == sorted(wanted)
    for user in users:
        state = left.state(user, now=T0)
        assert len(state.pending) == (user in reserved) <= 1


def test_discarded_decisions_leave_the_engine_usable(redis_url: str, key_prefix: str, redis_client) -> None:
    """Replies never read (their connection is dropped) never reach a later call."""
    store = engine(redis_url, key_prefix)
    flight = store.decide_send(requests_for([f"d{n}" for n in range(300)], True, "p"), now=T0)
    flight.discard()
    flight.discard()
    with pytest.raises(RuntimeError, match="discarded"):
        flight.collect()
    fresh = [f"e{n}" for n in range(10)]
    again = store.decide_batch([CapRequest(user, (CONTENTS[1], CONTENTS[2]), None, True, f"q-{user}")
                                for user in fresh], now=T0)
    assert [(d.reservation.push_id, d.reservation.content_id) for d in again] == [
        (f"q-{user}", "c1") for user in fresh]


def test_reference_engine_sends_and_collects_too() -> None:
    reference = ReferenceCapEngine(POLICY)
    batch = requests_for([f"f{n}" for n in range(6)], True, "p")
    assert shown(reference.decide_send(batch, now=T0).collect()) == shown(
        ReferenceCapEngine(POLICY).decide_batch(batch, now=T0))


@pytest.mark.cluster
def test_send_then_collect_on_a_cluster(cluster_url: str) -> None:
    """Several nodes: one connection each, all written before any reply is read."""
    users = [f"k{n}" for n in range(50)]
    prefix = f"sc-{uuid.uuid4().hex[:8]}"
    one_shot = RedisCapEngine.from_url(cluster_url, POLICY, prefix=f"{prefix}-a", cluster=True)
    split = RedisCapEngine.from_url(cluster_url, POLICY, prefix=f"{prefix}-b", cluster=True)
    batch = requests_for(users, True, "p")
    expected = one_shot.decide_batch(batch, now=T0)
    assert shown(split.decide_send(batch, now=T0).collect()) == shown(expected)
