"""Input the API refuses: card-number-like ids, times far from the server clock, oversized bodies."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from serving_support import SCHEDULER_HEADERS

pytestmark = pytest.mark.redis

CARD = "4111111111111111"


def test_card_number_like_ids_are_refused_everywhere(api, published, redis_client, key_prefix,
                                                     daytime, settings) -> None:
    ranked = api.post("/v1/rank", json={"user_id": CARD, "now": daytime}, headers=SCHEDULER_HEADERS)
    assert ranked.status_code == 422 and "looks like a card number" in ranked.json()["message"]
    spaced = api.post("/v1/rank", json={"user_id": "u1", "now": daytime,
                                        "candidates": ["4111-1111-1111-1111"]}, headers=SCHEDULER_HEADERS)
    assert spaced.status_code == 422
    event = {"event_id": "m1", "type": "muted", "user_id": CARD}
    posted = api.post("/v1/events", json={"events": [event]}, headers=SCHEDULER_HEADERS)
    assert posted.status_code == 422 and "events.0.user_id" in posted.json()["message"]
    caps = api.get(f"/v1/users/{CARD}/caps", headers=SCHEDULER_HEADERS)
    assert caps.status_code == 422
    assert not list(redis_client.scan_iter(match=f"*{key_prefix}*{CARD}*"))
    assert not settings.event_log_path.parent.exists() or CARD not in "".join(
        p.read_text() for p in settings.event_log_path.parent.glob("*"))


def test_times_far_from_the_server_clock_are_refused(api, published, dataset, server_time) -> None:
    user = dataset.cardholders["user_id"].astype(str).iloc[3]
    far = "2099-12-31T10:00:00+08:00"
    ranked = api.post("/v1/rank", json={"user_id": user, "now": far, "reserve": True},
                      headers=SCHEDULER_HEADERS)
    assert ranked.status_code == 422 and "outside 604800s before to 300s after" in ranked.json()["message"]
    ahead = (server_time + pd.Timedelta(hours=1)).isoformat()
    event = {"event_id": "m1", "type": "muted", "user_id": user, "ts": ahead}
    posted = api.post("/v1/events", json={"events": [event]}, headers=SCHEDULER_HEADERS)
    assert posted.status_code == 422 and "events[0].ts" in posted.json()["message"]
    old = (server_time - pd.Timedelta(days=8)).isoformat()
    ranked = api.post("/v1/rank", json={"user_id": user, "now": old}, headers=SCHEDULER_HEADERS)
    assert ranked.status_code == 422
    soon = (server_time + pd.Timedelta(minutes=4)).isoformat()
    allowed = api.post("/v1/rank", json={"user_id": user, "now": soon}, headers=SCHEDULER_HEADERS)
    assert allowed.status_code == 200
    caps = api.get(f"/v1/users/{user}/caps", params={"now": far}, headers=SCHEDULER_HEADERS)
    assert caps.status_code == 422
    assert not api.get(f"/v1/users/{user}/caps", headers=SCHEDULER_HEADERS).json()["muted"]


def test_a_batch_names_its_first_request_outside_the_window(api, published, dataset, server_time) -> None:
    """Each distinct time of a batch is checked once; the error names the first request, in request
    order, whose time is outside the window (not the first distinct time), and a batch mixing the server
    clock with given times inside the window is ranked."""
    users = dataset.cardholders["user_id"].astype(str).iloc[10:15].tolist()
    soon = (server_time + pd.Timedelta(minutes=4)).isoformat()
    old = (server_time - pd.Timedelta(days=8)).isoformat()
    far = "2099-12-31T10:00:00+08:00"
    times = [None, soon, far, soon, old]
    body = {"requests": [{"user_id": user} if now is None else {"user_id": user, "now": now}
                         for user, now in zip(users, times, strict=True)]}
    refused = api.post("/v1/rank/batch", json=body, headers=SCHEDULER_HEADERS)
    assert refused.status_code == 422 and refused.json()["message"].startswith("requests[2].now 2099-12-31")
    body["requests"][2]["now"] = old
    refused = api.post("/v1/rank/batch", json=body, headers=SCHEDULER_HEADERS)
    assert refused.status_code == 422 and refused.json()["message"].startswith("requests[2].now ")
    body["requests"] = body["requests"][:2] + body["requests"][3:4]
    ranked = api.post("/v1/rank/batch", json=body, headers=SCHEDULER_HEADERS)
    assert ranked.status_code == 200
    assert [answer["user_id"] for answer in ranked.json()["results"]] == [users[0], users[1], users[3]]


def test_oversized_bodies_are_refused_before_authentication(settings, redis_client) -> None:
    from serving.app import create_app

    small = settings.model_copy(update={"max_request_bytes": 4096})
    body = b'{"events": [' + b" " * 8000 + b"]}"
    with TestClient(create_app(small)) as client:
        declared = client.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and "4096 bytes" in declared.json()["message"]

        def chunks():
            for _ in range(10):
                yield b" " * 1000

        streamed = client.post("/v1/events", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        ranked = client.post("/v1/rank", content=chunks(), headers={**SCHEDULER_HEADERS,
                                                                    "Content-Type": "application/json"})
        assert ranked.status_code == 413
        assert client.post("/v1/events", json={"events": []}).status_code == 401
