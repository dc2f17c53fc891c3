"""Property test: on random histories the Redis engine decides exactly as the reference engine.

Random sequences of decisions (single and batched, with and without reservation), confirms,
releases, opens, mutes and opt-outs, with the clock jumping by minutes to weeks from starting
points at month ends and daylight-saving changes, for cardholders in several time zones.
After every step the outcomes and the whole stored cardholder record must be identical.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys.caps import rules
from recsys.caps.decisions import Candidate, CapRequest, from_ms, to_ms
from recsys.caps.policy import Policy, default_policy, parse_policy
from recsys.caps.redis_engine import RedisCapEngine
from recsys.caps.reference import ReferenceCapEngine

pytestmark = pytest.mark.redis

ZONES = [
    "Asia/Shanghai",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Pacific/Chatham",
]
STARTS = [
    datetime(2026, 1, 31, 15, 0, tzinfo=UTC),  # month end in Asia
    datetime(2026, 2, 28, 23, 0, tzinfo=UTC),  # month end in the Americas, short month
    datetime(2026, 3, 8, 5, 0, tzinfo=UTC),  # US daylight saving starts
    datetime(2026, 3, 29, 0, 30, tzinfo=UTC),  # EU daylight saving starts
    datetime(2026, 10, 31, 20, 0, tzinfo=UTC),  # month end, US/EU clocks go back soon after
    datetime(2026, 12, 31, 13, 0, tzinfo=UTC),  # year end
]
# Steps equal to the policies' durations, so that window edges are hit to the millisecond.
STEPS_SECONDS = [
    0,
    1,
    30,
    600,
    1800,
    2 * 3600,
    3 * 3600,
    9 * 3600,
    12 * 3600,
    86_400,
    2 * 86_400,
    3 * 86_400,
    7 * 86_400,
    14 * 86_400,
    27 * 86_400,
]
POOL = [
    Candidate("a1"),
    Candidate("p1", kind="promotion", tags=("dining",), campaign="spring"),
    Candidate("p2", kind="promotion", tags=("weekend",)),
    Candidate("act1", kind="activity", tags=("dining", "travel"), campaign="autumn"),
    Candidate("bill", kind="reminder", transactional=True, campaign="service"),
    Candidate("a2", tags=("travel",), campaign="spring"),
]
USERS = ["u0", "u1", "u2"]

RICH = {
    "version": "rich-1",
    "reservation_ttl": "30m",
    "limits": [
        {"name": "daily", "window": "calendar_day", "max": 2},
        {"name": "monthly", "window": "calendar_month", "max": 5},
        {"name": "two_days", "window": "rolling", "duration": "2d", "max": 3},
        {"name": "promos", "window": "rolling", "duration": "7d", "max": 2, "kinds": ["promotion"]},
        {"name": "dining", "window": "rolling", "duration": "3d", "max": 1, "tags": ["dining"]},
        {
            "name": "promo_dining",
            "window": "calendar_day",
            "max": 1,
            "kinds": ["promotion"],
            "tags": ["dining"],
        },
    ],
    "min_gap": "2h",
    "quiet_hours": {"start": "21:30", "end": "07:15"},
    "no_repeat": {"window": "3d"},
    "fatigue": {"after_unopened": 2, "pause": "1d"},
    "mute": {"pause": "2d"},
    "transactional": {"counts_toward_limits": True},
    "campaign_throttle": {"max": 2, "per": "5m", "campaigns": {"spring": {"max": 1, "per": "1h"}}},
}
LEAN = {
    "version": "lean-1",
    "default_timezone": "Europe/London",
    "limits": [{"name": "monthly", "window": "calendar_month", "max": 4}],
    "quiet_hours": {"start": "08:00", "end": "20:00"},
}


def rule_durations(policy: Policy) -> list[int]:
    """Every duration in a policy (seconds), to move the clock exactly onto window edges."""
    spans = [policy.reservation_ttl, policy.min_gap, policy.mute.pause]
    spans += [limit.duration for limit in policy.limits]
    if policy.no_repeat is not None:
        spans.append(policy.no_repeat.window)
    if policy.fatigue is not None:
        spans.append(policy.fatigue.pause)
    return sorted({span for span in spans if span})


def _default_with_throttle() -> Policy:
    document = default_policy().to_dict()
    document["campaign_throttle"] = {"max": 1, "per": "10m"}
    return parse_policy(document)


POLICIES = [_default_with_throttle(), parse_policy(RICH), parse_policy(LEAN)]

user = st.sampled_from(USERS)
candidates = st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique=True)
push_ref = st.integers(min_value=0, max_value=30)
decide = st.tuples(st.just("decide"), user, candidates, st.booleans(), push_ref)
confirm = st.tuples(st.just("confirm"), user, push_ref)
operation = st.one_of(
    st.tuples(st.just("advance"), st.sampled_from(STEPS_SECONDS)),
    st.tuples(st.just("advance_by_rule"), st.integers(min_value=0, max_value=20)),
    st.tuples(st.just("jump"), user, st.sampled_from(["day", "month", "quiet"])),
    st.tuples(st.just("push"), user, candidates),
    st.tuples(st.just("push"), user, candidates),
    st.tuples(st.just("push_failed"), user, candidates),
    decide,
    decide,
    confirm,
    confirm,
    st.tuples(
        st.just("batch"), st.permutations(USERS), st.lists(candidates, min_size=3, max_size=3), st.booleans()
    ),
    st.tuples(st.just("confirm"), user, push_ref),
    st.tuples(st.just("release"), user, push_ref),
    st.tuples(st.sampled_from(["open", "mute", "unmute", "opt_out", "opt_in"]), user),
    st.tuples(st.just("state"), user),
)


scenario = st.fixed_dictionaries(
    {
        "policy_index": st.integers(min_value=0, max_value=len(POLICIES) - 1),
        "zones": st.lists(st.sampled_from(ZONES + [None]), min_size=3, max_size=3),
        "start": st.sampled_from(STARTS),
        "offset_minutes": st.integers(min_value=-600, max_value=600),
        "operations": st.lists(operation, min_size=15, max_size=60),
    }
)
SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "derandomize": True,
}


@settings(max_examples=400, **SETTINGS)
@given(case=scenario)
def test_redis_engine_decides_exactly_as_the_reference(
    redis_url: str, key_prefix: str, redis_client, case
) -> None:
    policy = POLICIES[case["policy_index"]]
    engine = RedisCapEngine.from_url(redis_url, policy, prefix=f"{key_prefix}-{uuid.uuid4().hex[:8]}")
    compare(engine, policy, **{k: v for k, v in case.items() if k != "policy_index"})


@pytest.mark.cluster
@settings(max_examples=60, **SETTINGS)
@given(case=scenario)
def test_redis_cluster_engine_decides_exactly_as_the_reference(cluster_url: str, case) -> None:
    policy = POLICIES[case["policy_index"]]
    engine = RedisCapEngine.from_url(cluster_url, policy, prefix=f"prop-{uuid.uuid4().hex[:8]}", cluster=True)
    compare(engine, policy, **{k: v for k, v in case.items() if k != "policy_index"})


def compare(
    redis_engine: RedisCapEngine,
    policy: Policy,
    zones: list[str | None],
    start: datetime,
    offset_minutes: int,
    operations: list[tuple],
) -> None:
    """Apply the operations to the reference and to `redis_engine`; every outcome must be equal."""
    reference = ReferenceCapEngine(policy)
    zone_of = dict(zip(USERS, zones, strict=True))
    now = start + timedelta(minutes=offset_minutes)
    issued: dict[str, list[str]] = {who: [] for who in USERS}
    try:
        for step, op in enumerate(operations):
            kind = op[0]
            if kind == "advance":
                now += timedelta(seconds=op[1])
                continue
            if kind == "advance_by_rule":
                spans = rule_durations(policy)
                now += timedelta(seconds=spans[op[1] % len(spans)])
                continue
            if kind == "jump":
                cal = rules.calendar(policy, zone_of[op[1]] or policy.default_timezone, to_ms(now))
                target = {"day": cal.day_end, "month": cal.month_end, "quiet": cal.quiet_until}[op[2]]
                now = from_ms(target) if target else now
                continue
            if kind in ("push", "push_failed"):
                _, who, cands = op
                push_id = f"push-{step}"
                outcomes = [
                    engine.decide(who, cands, timezone=zone_of[who], now=now, reserve=True, push_id=push_id)
                    for engine in (reference, redis_engine)
                ]
                assert outcomes[1] == outcomes[0], f"step {step} {op} at {now.isoformat()}"
                if outcomes[0].reservation is not None:
                    issued[who].append(push_id)
                    finish = "confirm" if kind == "push" else "release"
                    outcomes = [
                        getattr(engine, finish)(who, push_id, now=now) for engine in (reference, redis_engine)
                    ]
            elif kind == "decide":
                _, who, cands, reserve, ref = op
                mine = issued[who]
                push_id = mine[ref % len(mine)] if mine and ref % 3 == 0 else f"push-{step}"
                outcomes = [
                    engine.decide(
                        who, cands, timezone=zone_of[who], now=now, reserve=reserve, push_id=push_id
                    )
                    for engine in (reference, redis_engine)
                ]
                if outcomes[0].reservation is not None:
                    issued[who].append(outcomes[0].reservation.push_id)
            elif kind == "batch":
                _, order, lists, reserve = op
                requests = [
                    CapRequest(who, tuple(cands), zone_of[who], reserve, f"push-{step}-{who}")
                    for who, cands in zip(order, lists, strict=True)
                ]
                outcomes = [engine.decide_batch(requests, now=now) for engine in (reference, redis_engine)]
                for decision in outcomes[0]:
                    if decision.reservation is not None:
                        issued[decision.user_id].append(decision.reservation.push_id)
            elif kind in ("confirm", "release"):
                _, who, ref = op
                mine = issued[who]
                push_id = mine[-1 - ref % len(mine)] if mine and ref < 25 else "unknown"
                outcomes = [
                    getattr(engine, kind)(who, push_id, now=now) for engine in (reference, redis_engine)
                ]
            elif kind == "state":
                outcomes = [
                    engine.state(op[1], timezone=zone_of[op[1]], now=now)
                    for engine in (reference, redis_engine)
                ]
            else:
                for engine in (reference, redis_engine):
                    getattr(engine, f"record_{kind}")(op[1], now=now)
                outcomes = [None, None]
            assert outcomes[1] == outcomes[0], f"step {step} {op} at {now.isoformat()}"
            for who in USERS:
                assert redis_engine.load_record(who) == reference.load_record(who), (
                    f"record of {who} after {op}"
                )
    finally:
        redis_engine.close()
