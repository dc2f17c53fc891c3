"""Push records written in the earlier JSON layout (format 1) are read as such and rewritten in
format 2 by the cardholder's next write: nothing recorded before is lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from recsys.caps.decisions import Candidate, to_ms
from recsys.caps.policy import default_policy, parse_policy
from recsys.caps.redis_engine import RedisCapEngine
from recsys.caps.reference import ReferenceCapEngine

pytestmark = pytest.mark.redis

NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai: outside quiet hours
EARLIER = NOW - timedelta(days=2)
DINING = Candidate("c1", kind="promotion", tags=("dining", "weekend"))
PENDING = Candidate("c2", kind="article", campaign="double11")
OTHERS = [
    Candidate("c3", kind="activity", tags=("dining",)),
    Candidate("c4", kind="article", tags=("travel",)),
    Candidate("c5", kind="reminder", transactional=True),
]


def _policy():
    document = default_policy().to_dict()
    document["version"] = "format-test"
    document["limits"] = document["limits"] + [
        {"name": "dining", "window": "rolling", "duration": "3d", "max": 1, "tags": ["dining"]},
    ]
    return parse_policy(document)


def _legacy_hash(pending_at: datetime) -> dict[str, str]:
    """What the format-1 script stored after: c1 reserved and confirmed 2 days ago, c2 reserved now."""
    sent, pending = to_ms(EARLIER), to_ms(pending_at)
    ttl = 600_000
    records = [
        ["p1", "c", sent, sent + ttl, "0", "c1", "promotion", ["dining", "weekend"], ""],
        ["p2", "r", pending, pending + ttl, "0", "c2", "article", {}, "double11"],
    ]
    return {"u": "1", "l": str(sent), "c:c1": str(sent), "P": json.dumps(records, separators=(",", ":"))}


def test_format_1_records_are_read_and_migrated_on_the_next_write(
    redis_url: str, key_prefix: str, redis_client
) -> None:
    policy = _policy()
    reference = ReferenceCapEngine(policy)
    reference.decide("u1", [DINING], now=EARLIER, reserve=True, push_id="p1")
    reference.confirm("u1", "p1", now=EARLIER)
    pending_at = NOW - timedelta(minutes=1)
    reference.decide("u1", [PENDING], now=pending_at, reserve=True, push_id="p2")

    engine = RedisCapEngine.from_url(redis_url, policy, prefix=key_prefix)
    key = engine.user_key("u1")
    redis_client.hset(key, mapping=_legacy_hash(pending_at))
    try:
        assert engine.load_record("u1") == reference.load_record("u1")
        candidates = [DINING, PENDING, *OTHERS]
        decided = engine.decide("u1", candidates, now=NOW)
        assert decided == reference.decide("u1", candidates, now=NOW)
        # known answer: c1 and c2 never again; the dining limit is full; only the notice may go
        assert [d.allowed for d in decided.decisions] == [False, False, False, False, True]
        assert "limit:dining" in decided.decisions[2].rules
        assert redis_client.hget(key, "P").startswith(b"[")  # a decision alone writes nothing

        assert engine.confirm("u1", "p2", now=NOW) == reference.confirm("u1", "p2", now=NOW)
        stored = redis_client.hget(key, "P")
        assert stored.startswith(b"\x1e") and b"[" not in stored
        assert engine.load_record("u1") == reference.load_record("u1")
        later = NOW + timedelta(days=1, hours=2)
        assert engine.decide("u1", candidates, now=later) == reference.decide("u1", candidates, now=later)
    finally:
        engine.close()


def test_format_1_reserve_rewrites_and_appends(redis_url: str, key_prefix: str, redis_client) -> None:
    policy = _policy()
    engine = RedisCapEngine.from_url(redis_url, policy, prefix=key_prefix)
    key = engine.user_key("u1")
    redis_client.hset(key, mapping=_legacy_hash(NOW - timedelta(minutes=1)))
    try:
        assert engine.release("u1", "p2", now=NOW) == "released"
        assert redis_client.hget(key, "P").startswith(b"\x1e")
        released = engine.load_record("u1").pushes["p2"]
        assert released.status == "released" and released.campaign == "double11" and released.tags == ()
        later = NOW + timedelta(hours=23)  # c1 two days before still fills the 3-day dining limit
        decision = engine.decide("u1", [DINING, *OTHERS], now=later, reserve=True, push_id="p3")
        assert decision.reservation is not None and decision.reservation.content_id == "c4"
        pushes = engine.load_record("u1").pushes
        assert sorted(pushes) == ["p1", "p3"]  # the released p2 expired and was purged
        assert pushes["p1"].tags == ("dining", "weekend") and pushes["p1"].status == "confirmed"
        assert pushes["p3"].tags == ("travel",) and pushes["p3"].campaign is None
        assert redis_client.hget(key, "P").count(b"\x1e") == 2
    finally:
        engine.close()
