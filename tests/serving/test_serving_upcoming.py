"""Pacing on content that becomes valid later in the month, through the rank API.

The test world's content starting later in the month ranks far below every cardholder's top push, so the
tests move one well-ranked item's start a few days later in the published content: the cardholders whose
top push it was now have an upcoming item ranked above what they would get now, those who ranked it second
one ranked below.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import SecretStr
from serving_support import ADMIN, ADMIN_HEADERS, SCHEDULER, SCHEDULER_HEADERS

from recsys.config import Settings

BETTER_CONTENT = "better content later: "


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path, server_time: pd.Timestamp) -> Settings:
    """The API's clock as usual, but accepting request times 40 days back (a month replayed)."""
    return Settings(
        redis_url=redis_url, redis_prefix=key_prefix, home=tmp_path / "home",
        scheduler_token=SecretStr(SCHEDULER), admin_token=SecretStr(ADMIN), reload_interval_seconds=0.0,
        server_time=server_time.to_pydatetime(), clock_past_seconds=40 * 86_400,
    )


@dataclass(frozen=True)
class Moved:
    """One item's start moved later in the month, and the batch's answers before and after."""

    content_id: str
    start: pd.Timestamp
    month_end: pd.Timestamp
    before: dict[str, dict[str, Any]]  # by user id: k=2, the item still valid now
    after: dict[str, dict[str, Any]]  # k=1, the item valid from `start`


def rank(api, users: list[str], now: pd.Timestamp, k: int) -> dict[str, dict[str, Any]]:
    body = {"requests": [{"user_id": u, "k": k, "now": now.isoformat()} for u in users]}
    response = api.post("/v1/rank/batch", json=body, headers=SCHEDULER_HEADERS)
    assert response.status_code == 200, response.text
    return {result["user_id"]: result for result in response.json()["results"]}


@pytest.fixture
def moved(api, response_bundle, dataset, store, as_of) -> Moved:
    """10:00 Shanghai on the 10th of the log's last month, pacing with no margin: the item that is some
    cardholders' top push and others' second (the most of both) becomes valid three days later."""
    from publishing.publish import publish

    publish(response_bundle, dataset, store, model_uri="with-response")
    document = api.get("/v1/policy", headers=SCHEDULER_HEADERS).json()["policy"]
    document["version"] = "upcoming-test"
    document["decision"] = {**document["decision"], "min_value": -1.0, "hour_margin": 10.0,
                            "pacing": {"margin": 0.0}}
    assert api.put("/v1/policy", json=document, headers=ADMIN_HEADERS).status_code == 200
    now = pd.Timestamp(as_of.year, as_of.month, 10, 10, tz="Asia/Shanghai")
    month_end = pd.Timestamp(as_of.year, as_of.month, 1, tz="Asia/Shanghai") + pd.offsets.MonthBegin(1)
    start = now + pd.Timedelta(days=3)
    opted = dataset.cardholders["push_opt_in"].astype("boolean").fillna(True).to_numpy(dtype=bool)
    users = dataset.cardholders.loc[opted, "user_id"].astype(str).tolist()[:300]
    before = rank(api, users, now, k=2)
    ranked = [[item["content_id"] for item in result["items"]] for result in before.values()]
    first = Counter(ids[0] for ids in ranked if ids)
    second = Counter(ids[1] for ids in ranked if len(ids) > 1)
    ends = pd.to_datetime(dataset.content.set_index("content_id")["valid_to"], utc=True, errors="coerce")
    both = {c: min(first[c], second[c]) for c in first
            if second[c] and (pd.isna(ends[c]) or ends[c] > month_end)}
    assert both, "some item should be one cardholder's top push and another's second"
    content_id = max(both, key=lambda c: (both[c], c))
    content = dataset.content.copy()
    content.loc[content["content_id"].astype(str) == content_id, "valid_from"] = start.tz_convert("UTC")
    publish(response_bundle, replace(dataset, content=content), store, model_uri="moved")
    return Moved(content_id, start, month_end, before, rank(api, users, now, k=1))


@pytest.mark.redis
def test_a_push_waits_for_upcoming_content_ranked_above_it(moved: Moved) -> None:
    was_top = {user for user, result in moved.before.items()
               if result["items"] and result["items"][0]["content_id"] == moved.content_id}
    held = {user: result for user, result in moved.after.items()
            if result["reason"].startswith(BETTER_CONTENT)}
    # most whose top push it was wait for it; no one else waits for content
    assert len(held) >= len(was_top) // 2, (len(held), len(was_top))
    assert set(held) <= was_top
    for user, result in held.items():
        assert result["decision"] == "hold" and result["push_id"] is None
        named = result["reason"].removeprefix(BETTER_CONTENT).split(" on day ")[0]
        assert named == moved.content_id
        # what it would push now ranks below the upcoming item (its score when it was valid)
        assert result["items"][0]["score"] <= moved.before[user]["items"][0]["score"]
        assert result["items"][0]["content_id"] != named
        send_at = pd.Timestamp(result["send_at"])
        assert moved.start <= send_at < moved.month_end
        assert 8 <= send_at.tz_convert("Asia/Shanghai").hour < 22  # outside the default quiet hours


@pytest.mark.redis
def test_upcoming_content_ranked_below_the_top_push_is_not_waited_for(moved: Moved) -> None:
    below = {user for user, result in moved.before.items()
             if len(result["items"]) > 1 and result["items"][1]["content_id"] == moved.content_id}
    assert below
    for user in below:
        result, earlier = moved.after[user], moved.before[user]["items"]
        # the same top push, ranked above the item that now starts later this month
        assert result["items"][0]["content_id"] == earlier[0]["content_id"]
        assert earlier[0]["score"] >= earlier[1]["score"]
        assert not result["reason"].startswith(BETTER_CONTENT), result["reason"]
