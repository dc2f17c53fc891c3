"""Pacing on content that becomes valid later in the month, through the rank API."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr
from serving_support import ADMIN, ADMIN_HEADERS, SCHEDULER, SCHEDULER_HEADERS

from recsys.config import Settings


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path, server_time: pd.Timestamp) -> Settings:
    """The API's clock as usual, but accepting request times 40 days back (a month replayed)."""
    return Settings(
        redis_url=redis_url, redis_prefix=key_prefix, home=tmp_path / "home",
        scheduler_token=SecretStr(SCHEDULER), admin_token=SecretStr(ADMIN), reload_interval_seconds=0.0,
        server_time=server_time.to_pydatetime(), clock_past_seconds=40 * 86_400,
    )


@pytest.mark.redis
def test_a_push_waits_for_better_content_starting_later_this_month(api, response_bundle, dataset, store,
                                                                   as_of) -> None:
    from publishing.publish import publish

    publish(response_bundle, dataset, store, model_uri="with-response")
    document = api.get("/v1/policy", headers=SCHEDULER_HEADERS).json()["policy"]
    document["version"] = "upcoming-test"
    document["decision"] = {**document["decision"], "min_value": -1.0, "hour_margin": 10.0,
                            "pacing": {"margin": 0.0}}
    assert api.put("/v1/policy", json=document, headers=ADMIN_HEADERS).status_code == 200
    # 10:00 Shanghai on the 10th of the log's last month: content starting between now and the month's end
    now = pd.Timestamp(as_of.year, as_of.month, 10, 10, tz="Asia/Shanghai")
    month_end = pd.Timestamp(as_of.year, as_of.month, 1, tz="Asia/Shanghai") + pd.offsets.MonthBegin(1)
    content = dataset.content.set_index("content_id")
    starts = pd.to_datetime(content["valid_from"], utc=True, errors="coerce")
    later = starts[(starts > now) & (starts < month_end)]
    assert len(later) >= 3, "the world should have content starting later this month"
    opted = dataset.cardholders["push_opt_in"].astype("boolean").fillna(True).to_numpy(dtype=bool)
    users = dataset.cardholders.loc[opted, "user_id"].astype(str).tolist()[:300]
    body = {"requests": [{"user_id": u, "k": 1, "now": now.isoformat()} for u in users]}
    response = api.post("/v1/rank/batch", json=body, headers=SCHEDULER_HEADERS)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    held = [r for r in results if r.get("reason", "").startswith("better content later: ")]
    assert held, sorted({r.get("reason", "").split(":")[0] for r in results})
    for result in held:
        assert result["decision"] == "hold" and result["push_id"] is None
        named = result["reason"].removeprefix("better content later: ").split(" on day ")[0]
        assert named in later.index, named  # content valid later this month, not now
        send_at = pd.Timestamp(result["send_at"])
        assert starts[named] <= send_at < month_end
        assert 8 <= send_at.tz_convert("Asia/Shanghai").hour < 22  # outside the default quiet hours
        assert named != result["items"][0]["content_id"]  # the answer still ranks what is valid now
