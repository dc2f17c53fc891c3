"""The decide command the Redis engine writes from pre-encoded pieces is byte for byte the command a
Redis packer writes for the same arguments (hiredis's and redis-py's own)."""

from __future__ import annotations

from datetime import UTC, datetime

import hiredis
import pytest
import redis
from redis.connection import Connection

from recsys.caps import rules
from recsys.caps.decisions import Candidate, CapRequest, to_ms
from recsys.caps.policy import default_policy, parse_policy
from recsys.caps.redis_engine import RedisCapEngine, _calendar_arguments

CANDIDATES = (
    Candidate("art-1", "article", ("travel", "dining")),
    Candidate("promo-7", "promotion", (), campaign="spring"),
    Candidate("bill-due", "reminder", (), transactional=True),
    Candidate("内容-9", "activity", ("积分",), campaign="autumn"),
)


def throttled_policy():
    document = default_policy().to_dict()
    document["campaign_throttle"] = {"max": 2, "per": "1m"}
    return parse_policy(document)


@pytest.mark.parametrize("policy", [default_policy(), throttled_policy()], ids=["default", "throttled"])
@pytest.mark.parametrize("reserve", [True, False])
@pytest.mark.parametrize("exhausted", [{}, {"spring": (1, 2, 2)}], ids=["open", "spring-full"])
@pytest.mark.parametrize("timezone", ["Asia/Shanghai", "America/New_York"])
@pytest.mark.parametrize("hour", [3, 12])  # inside and outside the default quiet hours (local)
def test_decide_command_is_the_packed_call(policy, reserve, exhausted, timezone, hour) -> None:
    engine = RedisCapEngine(redis.Redis(), policy, prefix="enc")  # never connects: nothing is sent
    compiled = engine._compiled
    for width in (1, 3, len(CANDIDATES)):
        request = CapRequest("holder-42" if width != 3 else "持卡人-7", CANDIDATES[:width], timezone, reserve)
        codes = [engine._candidate_code(compiled, c, 0, p) for p, c in enumerate(request.candidates)]
        cal = rules.calendar(policy, timezone, to_ms(datetime(2026, 11, 25, hour, 5, tzinfo=UTC)))
        arguments, encoded = _calendar_arguments(cal)
        push_id = "0f1e2d3c4b5a69788796a5b4c3d2e1f0" if reserve else ""
        call = engine._decide_call(compiled, request, arguments, push_id, exhausted, codes)
        command = engine._decide_command(compiled, request, encoded, push_id, exhausted, codes)
        assert command == hiredis.pack_command(call)
        assert command == b"".join(Connection().pack_command(*call))
