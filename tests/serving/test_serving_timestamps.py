"""Every time the API returns is ISO 8601 in UTC with `Z`, whatever zone it was computed or sent in."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from serving_support import SCHEDULER_HEADERS

from recsys.times import iso_utc

pytestmark = pytest.mark.redis

TIME_KEYS = {"eligible_at", "next_eligible_at", "reservation_expires_at", "window_start", "window_end",
             "as_of", "last_sent_at", "at"}
UTC_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")


def times(body: object, key: str = "") -> list[str]:
    if isinstance(body, dict):
        return [t for k, v in body.items() for t in times(v, k)]
    if isinstance(body, list):
        return [t for v in body for t in times(v, key)]
    return [body] if key in TIME_KEYS and body is not None else []


def test_iso_utc_writes_z_for_every_zone() -> None:
    shanghai = timezone(timedelta(hours=8))
    assert iso_utc(datetime(2026, 11, 25, 9, 0, tzinfo=shanghai)) == "2026-11-25T01:00:00Z"
    assert iso_utc(datetime(2026, 11, 25, 1, 0, 0, 250000)) == "2026-11-25T01:00:00.250000Z"


def test_rank_caps_and_policy_times_are_utc_with_z(api, published, dataset, daytime) -> None:
    assert daytime.endswith("+08:00")  # sent in Shanghai time
    user = dataset.cardholders["user_id"].astype(str).iloc[30]
    reserved = api.post("/v1/rank", json={"user_id": user, "now": daytime, "reserve": True},
                        headers=SCHEDULER_HEADERS).json()
    api.post("/v1/events", headers=SCHEDULER_HEADERS, json={"events": [
        {"event_id": "t-1", "type": "sent", "user_id": user, "push_id": reserved["push_id"], "ts": daytime}]})
    blocked = api.post("/v1/rank", json={"user_id": user, "now": daytime}, headers=SCHEDULER_HEADERS).json()
    assert blocked["caps"]["blocks"], blocked  # the minimum gap gives eligible_at times
    batch = api.post("/v1/rank/batch", json={"requests": [{"user_id": user, "now": daytime}]},
                     headers=SCHEDULER_HEADERS).json()
    caps = api.get(f"/v1/users/{user}/caps", params={"now": daytime}, headers=SCHEDULER_HEADERS).json()
    policy = api.get("/v1/policy", headers=SCHEDULER_HEADERS).json()
    versions = api.get("/v1/policy/versions", headers=SCHEDULER_HEADERS).json()
    found = times([reserved, blocked, batch, caps, policy, versions])
    assert reserved["reservation_expires_at"] in found and caps["as_of"] in found and policy["at"] in found
    assert caps["last_sent_at"] and blocked["caps"]["next_eligible_at"]
    assert len(found) >= 8
    assert [t for t in found if not UTC_Z.fullmatch(t)] == []
    assert caps["as_of"] == iso_utc(datetime.fromisoformat(daytime))


@pytest.mark.parametrize(("stamp", "accepted"), [
    ("2000-01-01T00:00:00Z", True), ("2000-01-01T07:59:59+08:00", False), ("2000-01-01T08:00:00+08:00", True),
    ("1999-12-31T20:00:00-04:00", True), ("1999-12-31T19:59:59-04:00", False),
    ("2099-12-31T23:59:59-00:30", False), ("2099-12-31T23:59:59+00:30", True), ("2100-01-01T00:00:00Z", True),
    ("2100-01-01T00:00:01Z", False), ("2050-06-01T12:00:00+14:00", True),
])
def test_the_time_bounds_hold_to_the_second_in_any_offset(stamp: str, accepted: bool) -> None:
    from pydantic import ValidationError

    from serving.schemas import RankRequest

    if accepted:
        RankRequest.model_validate({"user_id": "u1", "now": stamp})
    else:
        with pytest.raises(ValidationError, match="outside 2000-01-01..2100-01-01"):
            RankRequest.model_validate({"user_id": "u1", "now": stamp})
