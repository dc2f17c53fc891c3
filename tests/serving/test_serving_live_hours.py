"""Hours learned from the API's own events: `sent` and `opened` move a cardholder's daily wave when ranked."""

from __future__ import annotations

import pandas as pd
import pytest
from serving_support import SCHEDULER_HEADERS

from tests.serving.test_serving_decision import rank


@pytest.fixture
def decided(response_bundle, dataset, store):
    from publishing.publish import publish

    return publish(response_bundle, dataset, store, model_uri="with-response")


def post(api, events: list[dict]) -> list[str]:
    response = api.post("/v1/events", json={"events": events}, headers=SCHEDULER_HEADERS)
    assert response.status_code == 200, response.text
    return [result["status"] for result in response.json()["results"]]


@pytest.mark.redis
def test_sends_and_opens_reported_after_the_fit_move_best_hours_once_per_event(
        api, decided, dataset, server_time, key_prefix, redis_client) -> None:
    holders = dataset.cardholders
    opt = holders["push_opt_in"].astype("boolean").fillna(True)
    zone = holders["timezone"].astype("string").fillna("Asia/Shanghai").replace("", "Asia/Shanghai")
    user = holders.loc[opt & (zone == "Asia/Shanghai"), "user_id"].astype(str).iloc[0]
    now = server_time  # 09:00 in Shanghai, the day after the as-of day: after the fit
    before = rank(api, user_id=user, k=1, now=now.isoformat())
    content = before["items"][0]["content_id"]
    # three pushes the scheduler sent between 08:05 and 08:25 this morning, reported sent
    sent_at = [now - pd.Timedelta(minutes=minutes) for minutes in (55, 45, 35)]
    push_ids = [f"live-{n}" for n in range(3)]
    sent = [{"event_id": f"{pid}-s", "type": "sent", "user_id": user, "push_id": pid,
             "content_id": f"{content}-{n}", "ts": moment.isoformat()}
            for n, (pid, moment) in enumerate(zip(push_ids, sent_at, strict=True))]
    assert post(api, sent) == ["recorded"] * 3
    unopened = rank(api, user_id=user, k=1, now=now.isoformat())
    # then opened, each five minutes after it was sent
    opened = [{"event_id": f"{pid}-o", "type": "opened", "user_id": user, "push_id": pid,
               "ts": (moment + pd.Timedelta(minutes=5)).isoformat()}
              for pid, moment in zip(push_ids, sent_at, strict=True)]
    assert post(api, opened) == ["applied"] * 3
    kept = redis_client.hget(f"{{{key_prefix}:caps:u:{user}}}", "S").decode()
    assert [entry.split("\x1f")[::2] for entry in kept.split("\x1e")[1:]] == [[pid, "1"] for pid in push_ids]
    after = rank(api, user_id=user, k=1, now=now.isoformat())
    # the caps now block the cardholder for the day, but the answer still names their better hours: the
    # unopened sends pushed the wave away from 08:00, the opens pull it back toward the morning
    assert unopened["best_hours"] != before["best_hours"]
    assert after["best_hours"][0] <= unopened["best_hours"][0]
    assert sum(after["best_hours"]) < sum(unopened["best_hours"])
    # a retried batch changes nothing
    assert post(api, opened) == ["duplicate"] * 3 and post(api, sent) == ["duplicate"] * 3
    assert redis_client.hget(f"{{{key_prefix}:caps:u:{user}}}", "S").decode() == kept
    assert rank(api, user_id=user, k=1, now=now.isoformat())["best_hours"] == after["best_hours"]
