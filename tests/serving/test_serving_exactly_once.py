"""`/v1/events` applies each event once: late sends count, retries finish what a failure left."""

from __future__ import annotations

import pandas as pd
import pytest
from serving_support import SCHEDULER_HEADERS

from serving.event_log import EventLog

pytestmark = pytest.mark.redis


def post(api, *events):
    response = api.post("/v1/events", json={"events": list(events)}, headers=SCHEDULER_HEADERS)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def reserve(api, user: str, now: str) -> dict:
    body = api.post("/v1/rank", json={"user_id": user, "now": now, "reserve": True},
                    headers=SCHEDULER_HEADERS).json()
    assert body["push_id"], body
    return body


def caps(api, user: str, now: str) -> dict:
    return api.get(f"/v1/users/{user}/caps", params={"now": now}, headers=SCHEDULER_HEADERS).json()


def users(dataset, start: int, n: int) -> list[str]:
    return dataset.cardholders["user_id"].astype(str).iloc[start:start + n].tolist()


def test_a_sent_after_the_reservation_ttl_still_counts(api, published, dataset, daytime) -> None:
    (user,) = users(dataset, 5, 1)
    earlier = (pd.Timestamp(daytime) - pd.Timedelta(minutes=30)).isoformat()
    ranked = reserve(api, user, earlier)
    assert caps(api, user, daytime)["pending_reservations"] == 0  # the 10-minute TTL has passed
    result = post(api, {"event_id": "late-1", "type": "sent", "user_id": user, "push_id": ranked["push_id"],
                        "ts": daytime})[0]
    assert result["status"] == "recorded" and result["event_id"] == "late-1"
    assert "never issued by /v1/rank, or its reservation expired" in result["detail"]
    assert result["detail"].endswith("counted as a send at the event's ts")
    state = caps(api, user, daytime)
    assert state["sent_total"] == 1 and state["unopened_streak"] == 1
    again = api.post("/v1/rank", json={"user_id": user, "now": daytime, "reserve": True},
                     headers=SCHEDULER_HEADERS).json()
    assert again["push_id"] is None and not again["caps"]["allowed"]
    logged = list(EventLog(api.app.state.serving.settings.event_log_path).read())
    assert [(line["event_id"], line["content_id"]) for line in logged] == [
        ("late-1", ranked["items"][0]["content_id"])]


def test_an_open_of_an_unknown_push_leaves_the_fatigue_streak(api, published, dataset, daytime) -> None:
    (user,) = users(dataset, 6, 1)
    ranked = reserve(api, user, daytime)
    post(api, {"event_id": "s", "type": "sent", "user_id": user, "push_id": ranked["push_id"], "ts": daytime})
    result = post(api, {"event_id": "o1", "type": "opened", "user_id": user, "push_id": "someone-elses",
                        "ts": daytime})[0]
    assert result["detail"] == "push id unknown for this cardholder: fatigue streak unchanged"
    assert result["status"] == "unchanged"
    assert caps(api, user, daytime)["unopened_streak"] == 1
    post(api, {"event_id": "o2", "type": "opened", "user_id": user, "push_id": ranked["push_id"],
               "ts": daytime})
    assert caps(api, user, daytime)["unopened_streak"] == 0


def test_a_retry_applies_what_a_failure_left_and_reports_only_applied_ones_duplicate(
        api, published, dataset, daytime) -> None:
    """A batch half applied before a failure (as a crash between two applies leaves it)."""
    holders = users(dataset, 20, 6)
    pushes = {user: reserve(api, user, daytime)["push_id"] for user in holders}
    batch = [{"event_id": f"s-{user}", "type": "sent", "user_id": user, "push_id": pushes[user],
              "ts": daytime} for user in holders]
    engine = api.app.state.serving.engine
    when = pd.Timestamp(daytime).to_pydatetime()
    for user in holders[:3]:
        engine.confirm(user, pushes[user], now=when, event_id=f"s-{user}")
    results = post(api, *batch, batch[4])
    assert [r["status"] for r in results] == ["duplicate"] * 3 + ["applied"] * 3 + ["duplicate"]
    for user in holders:
        state = caps(api, user, daytime)
        assert state["sent_total"] == 1 and state["pending_reservations"] == 0
    # only events not yet applied were logged, each once
    logged = [line["event_id"] for line in EventLog(api.app.state.serving.settings.event_log_path).read()]
    assert logged == [f"s-{user}" for user in holders[3:]]
