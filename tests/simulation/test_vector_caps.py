"""The vectorised cap engine decides exactly as the reference engine, rule by rule."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from recsys.caps.decisions import Candidate
from recsys.caps.policy import default_policy, parse_policy
from recsys.caps.reference import ReferenceCapEngine
from simulation.local_calendar import ZoneClock
from simulation.vector_caps import Items, VectorCapEngine, rule_names

ZONES = [None, "Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata"]
KINDS = ["article", "promotion", "activity", "reminder"]
TAGS = ["dining", "travel", "weekend"]
# Month ends, and daylight-saving changes in New York, London and Sydney.
STARTS = [
    datetime(2026, 1, 30, 10, tzinfo=UTC),
    datetime(2026, 3, 6, 20, tzinfo=UTC),
    datetime(2026, 3, 27, 12, tzinfo=UTC),
    datetime(2026, 10, 1, 9, tzinfo=UTC),
    datetime(2026, 10, 29, 15, tzinfo=UTC),
    datetime(2026, 12, 30, 18, tzinfo=UTC),
]
GAPS = np.array([60, 15 * 60, 2 * 3600, 7 * 3600, 11 * 3600, 86400, 3 * 86400], dtype=np.int64)


def duration(rng: np.random.Generator) -> str:
    return str(rng.choice(["45m", "3h", "12h", "1d", "2d", "7d", "10d"]))


def random_policy(rng: np.random.Generator):
    limits = []
    if rng.random() < 0.7:
        limits.append({"name": "daily", "window": "calendar_day", "max": int(rng.integers(1, 3))})
    if rng.random() < 0.7:
        limits.append({"name": "monthly", "window": "calendar_month", "max": int(rng.integers(2, 7))})
    if rng.random() < 0.6:
        limit = {"name": "rolling", "window": "rolling", "duration": duration(rng),
                 "max": int(rng.integers(1, 4))}
        if rng.random() < 0.5:
            limit["kinds"] = [str(rng.choice(KINDS))]
        if rng.random() < 0.4:
            limit["tags"] = [str(rng.choice(TAGS))]
        limits.append(limit)
    document = {"version": "test", "default_timezone": str(rng.choice(ZONES[1:])), "limits": limits}
    if rng.random() < 0.5:
        document["min_gap"] = duration(rng)
    if rng.random() < 0.7:
        start, end = rng.choice(24, size=2, replace=False)
        document["quiet_hours"] = {"start": f"{start:02d}:00", "end": f"{end:02d}:30"}
    if rng.random() < 0.7:
        document["no_repeat"] = {"window": "forever" if rng.random() < 0.5 else duration(rng)}
    if rng.random() < 0.6:
        document["fatigue"] = {"after_unopened": int(rng.integers(1, 4)), "pause": duration(rng)}
    document["mute"] = {"pause": "forever" if rng.random() < 0.5 else duration(rng)}
    document["transactional"] = {"counts_toward_limits": bool(rng.random() < 0.5)}
    return parse_policy(document, "random policy")


def replay(seed: int, n_users: int = 5, n_items: int = 6, n_events: int = 120) -> Counter[str]:
    """Run one random history through both engines; count decisions compared, allowed and blocked by rule."""
    rng = np.random.default_rng(seed)
    policy = random_policy(rng)
    zones = [ZONES[int(index)] for index in rng.integers(0, len(ZONES), n_users)]
    kinds = rng.choice(KINDS, n_items)
    tags = tuple(tuple(str(tag) for tag in TAGS if rng.random() < 0.4) for _ in range(n_items))
    transactional = rng.random(n_items) < 0.2
    items = Items(kinds=kinds.astype(object), tags=tags, transactional=transactional)
    orders = np.stack([rng.permutation(n_items) for _ in range(n_users)])
    clock = ZoneClock(np.array([zone or policy.default_timezone for zone in zones], dtype=object))
    vector = VectorCapEngine(policy, clock, items, orders)
    reference = ReferenceCapEngine(policy)
    candidates = [
        tuple(
            Candidate(f"c{item}", str(kinds[item]), tags[item], bool(transactional[item]))
            for item in orders[user]
        )
        for user in range(n_users)
    ]
    rules = rule_names(policy)
    now = STARTS[int(rng.integers(len(STARTS)))] + timedelta(minutes=int(rng.integers(0, 1440)))
    tally: Counter[str] = Counter()
    for _ in range(n_events):
        # Exact gaps often, so pushes land exactly on window edges; jitter otherwise.
        jitter = int(rng.integers(0, 600)) if rng.random() < 0.4 else 0
        now += timedelta(seconds=int(rng.choice(GAPS)) + jitter)
        user = int(rng.integers(n_users))
        user_id = f"u{user}"
        seconds = int(now.timestamp())
        event = rng.random()
        if event < 0.1:
            reference.record_open(user_id, now=now)
            vector.record_opens([user])
            continue
        if event < 0.14:
            reference.record_mute(user_id, now=now)
            vector.record_mutes([user], seconds)
            continue
        if event < 0.16:
            reference.record_unmute(user_id, now=now)
            vector.record_unmutes([user])
            continue
        if event < 0.18:
            reference.record_opt_out(user_id, now=now)
            vector.record_opt_outs([user])
            continue
        if event < 0.19:
            reference.record_opt_in(user_id, now=now)
            vector.record_opt_ins([user])
            continue
        expected = reference.decide(user_id, candidates[user], timezone=zones[user], now=now, reserve=True)
        got = vector.decide(np.array([user]), seconds)
        for position, decision in enumerate(expected.decisions):
            got_rules = tuple(rules[r] for r in np.flatnonzero(got.blocks[0, position]))
            context = f"seed {seed}, {now.isoformat()}, user {user} ({zones[user]}), candidate {position}"
            assert got_rules == decision.rules, context
            assert bool(got.allowed[0, position]) == decision.allowed, context
            tally["compared"] += 1
            tally["allowed"] += decision.allowed
            tally.update(rule.split(":")[0] for rule in decision.rules)
        first = int(got.first_allowed()[0])
        assert (first if first >= 0 else None) == expected.first_allowed
        if expected.reservation is not None:
            reference.confirm(user_id, expected.reservation.push_id, now=now)
            vector.record_pushes(np.array([user]), seconds, np.array([orders[user, first]]))
    return tally


@pytest.mark.slow
def test_vectorised_engine_decides_as_the_reference() -> None:
    total: Counter[str] = Counter()
    for seed in range(60):
        total += replay(seed)
    for seed in range(60, 100):  # few cardholders and contents: windows often end exactly at a decision
        total += replay(seed, n_users=2, n_items=3, n_events=150)
    # The agreement is only as good as its coverage: every rule must actually block, and pushes go out.
    for rule in ("opt_out", "muted", "quiet_hours", "limit", "min_gap", "fatigue", "no_repeat"):
        assert total[rule] > 20, (rule, total)
    assert total["allowed"] > 500, total
    assert total["compared"] > 20_000, total


def test_default_policy_rule_order_matches_engine_report_order() -> None:
    expected = ("opt_out", "muted", "quiet_hours", "limit:daily", "limit:monthly", "min_gap")
    assert rule_names(default_policy())[:6] == expected
