"""`/v1/events`: idempotent per event id, applied to the caps, logged durably, exported as push_log."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from serving_support import SCHEDULER_HEADERS

pytestmark = pytest.mark.redis


def post(api, *events):
    return api.post("/v1/events", json={"events": list(events)}, headers=SCHEDULER_HEADERS)


def reserve(api, user: str, now: str) -> dict:
    body = api.post("/v1/rank", json={"user_id": user, "now": now, "reserve": True},
                    headers=SCHEDULER_HEADERS).json()
    assert body["push_id"], body
    return body


def opted_in(dataset) -> list[str]:
    holders = dataset.cardholders
    return holders.loc[holders["push_opt_in"].astype("boolean").fillna(True), "user_id"].astype(str).tolist()


def caps(api, user: str, now: str) -> dict:
    return api.get(f"/v1/users/{user}/caps", params={"now": now}, headers=SCHEDULER_HEADERS).json()


def test_sent_confirms_once_and_repeats_are_ignored(api, published, dataset, daytime) -> None:
    user = dataset.cardholders["user_id"].astype(str).iloc[5]
    ranked = reserve(api, user, daytime)
    sent = {"event_id": "e-1", "type": "sent", "user_id": user, "push_id": ranked["push_id"], "ts": daytime}
    first = post(api, sent).json()["results"][0]
    assert first == {"event_id": "e-1", "status": "applied", "detail": "reservation confirmed"}
    again = post(api, sent, {**sent, "event_id": "e-1"}).json()["results"]
    assert [r["status"] for r in again] == ["duplicate", "duplicate"]
    state = caps(api, user, daytime)
    assert state["sent_total"] == 1 and state["pending_reservations"] == 0
    # A failure reported after the send does not give the slot back.
    late = post(api, {"event_id": "e-2", "type": "failed", "user_id": user, "push_id": ranked["push_id"],
                      "ts": daytime})
    assert late.json()["results"][0] == {
        "event_id": "e-2", "status": "unchanged",
        "detail": "push already confirmed as sent: a failure after the send gives no slot back"}
    assert caps(api, user, daytime)["sent_total"] == 1


def test_failed_releases_the_slot(api, published, dataset, daytime) -> None:
    user = dataset.cardholders["user_id"].astype(str).iloc[6]
    ranked = reserve(api, user, daytime)
    post(api, {"event_id": "f-1", "type": "failed", "user_id": user, "push_id": ranked["push_id"],
               "ts": daytime})
    assert caps(api, user, daytime)["pending_reservations"] == 0
    assert reserve(api, user, daytime)["push_id"] != ranked["push_id"]


def test_unsubscribed_blocks_marketing(api, published, dataset, daytime) -> None:
    user = dataset.cardholders["user_id"].astype(str).iloc[7]
    post(api, {"event_id": "o-1", "type": "unsubscribed", "user_id": user, "ts": daytime})
    body = api.post("/v1/rank", json={"user_id": user, "now": daytime}, headers=SCHEDULER_HEADERS).json()
    assert body["caps"]["allowed"] is False
    assert body["caps"]["blocks"][0]["rule"] == "opt_out"
    assert caps(api, user, daytime)["opted_out"] is True


def test_unsubscribed_then_subscribed_restores_marketing(api, published, dataset, daytime) -> None:
    user = opted_in(dataset)[9]
    post(api, {"event_id": "o-2", "type": "unsubscribed", "user_id": user, "ts": daytime})
    assert caps(api, user, daytime)["opted_out"] is True
    back = post(api, {"event_id": "i-2", "type": "subscribed", "user_id": user, "ts": daytime}).json()
    assert back["results"][0] == {"event_id": "i-2", "status": "applied",
                                  "detail": "opted in to marketing pushes again"}
    state = caps(api, user, daytime)
    assert state["opted_out"] is False and state["blocks"] == []
    assert reserve(api, user, daytime)["caps"]["allowed"] is True


def test_muted_then_unmuted_lifts_the_pause(api, published, dataset, daytime) -> None:
    user = opted_in(dataset)[10]
    post(api, {"event_id": "m-3", "type": "muted", "user_id": user, "ts": daytime})
    muted = api.post("/v1/rank", json={"user_id": user, "now": daytime}, headers=SCHEDULER_HEADERS).json()
    assert [block["rule"] for block in muted["caps"]["blocks"]] == ["muted"]
    back = post(api, {"event_id": "u-3", "type": "unmuted", "user_id": user, "ts": daytime}).json()
    assert back["results"][0]["detail"] == "mute lifted: marketing pushes resume"
    assert caps(api, user, daytime)["muted"] is False
    assert reserve(api, user, daytime)["caps"]["allowed"] is True


def test_event_validation(api, published) -> None:
    response = post(api, {"event_id": "x", "type": "sent", "user_id": "u1"})
    assert response.status_code == 422 and "a sent event needs push_id" in response.json()["message"]
    response = post(api, {"event_id": "x", "type": "opened", "user_id": "u1"})
    assert response.status_code == 422 and "an opened event needs push_id" in response.json()["message"]
    response = post(api, {"event_id": "x", "type": "exploded", "user_id": "u1"})
    assert response.status_code == 422 and "type" in response.json()["message"]


def test_log_exports_as_a_contract_push_log(api, published, dataset, world_dir, daytime, settings,
                                             tmp_path) -> None:
    from features.loader import load_dataset
    from serving.event_log import EventLog, export_push_log

    users = dataset.cardholders["user_id"].astype(str).iloc[20:24].tolist()
    pushes = {}
    for n, user in enumerate(users):
        ranked = reserve(api, user, daytime)
        pushes[user] = ranked
        post(api, {"event_id": f"s-{n}", "type": "sent", "user_id": user, "push_id": ranked["push_id"],
                   "ts": daytime})
    first_push = pushes[users[0]]["push_id"]
    post(api, {"event_id": "op-0", "type": "opened", "user_id": users[0], "push_id": first_push,
               "ts": daytime},
         {"event_id": "mu-1", "type": "muted", "user_id": users[1], "ts": daytime},
         {"event_id": "s-0", "type": "sent", "user_id": users[0], "push_id": "dup", "ts": daytime})
    log = EventLog(settings.event_log_path)
    assert len(log.files()) == 1
    assert sum(1 for _ in log.read()) == 6
    out = tmp_path / "data"
    shutil.copytree(world_dir, out)
    (out / "push_log.parquet").unlink()
    _, rows = export_push_log(log, out)
    assert rows == 4
    exported = load_dataset(out).push_log.set_index("user_id")
    assert exported.loc[users[0], "push_id"] == pushes[users[0]]["push_id"]
    assert exported.loc[users[0], "content_id"] == pushes[users[0]]["items"][0]["content_id"]
    assert pd.notna(exported.loc[users[0], "opened_ts"])
    assert bool(exported.loc[users[1], "muted"]) is True
    assert not exported.loc[users[2:], "muted"].any()


def test_unwritable_log_refuses_events_and_keeps_them_retryable(api, published, dataset, settings) -> None:
    user = dataset.cardholders["user_id"].astype(str).iloc[8]
    event = {"event_id": "disk-1", "type": "muted", "user_id": user}
    log_dir = settings.event_log_path.parent
    log_dir.parent.mkdir(parents=True, exist_ok=True)
    log_dir.write_text("a file where the log directory should be")
    response = post(api, event)
    assert response.status_code == 503
    assert "cannot append to the event log" in response.json()["message"]
    log_dir.unlink()
    retried = post(api, event).json()["results"][0]
    assert retried["status"] == "applied"


def test_each_event_says_whether_it_changed_anything(api, published, dataset, daytime) -> None:
    user = opted_in(dataset)[11]
    ranked = reserve(api, user, daytime)
    results = post(
        api,
        {"event_id": "n-1", "type": "sent", "user_id": user, "push_id": "never-issued", "ts": daytime},
        {"event_id": "n-2", "type": "failed", "user_id": user, "push_id": "also-never-issued", "ts": daytime},
        {"event_id": "n-3", "type": "failed", "user_id": user, "push_id": ranked["push_id"], "ts": daytime},
        {"event_id": "n-4", "type": "sent", "user_id": user, "push_id": ranked["push_id"], "ts": daytime},
        {"event_id": "n-5", "type": "failed", "user_id": user, "push_id": ranked["push_id"], "ts": daytime},
    ).json()["results"]
    assert [r["status"] for r in results] == ["recorded", "unchanged", "applied", "unchanged", "unchanged"]
    assert "never issued by /v1/rank, or its reservation expired" in results[0]["detail"]
    assert results[1]["detail"].endswith("nothing to release")
    assert results[3]["detail"] == "push already reported failed and its slot given back: nothing changed"
    assert results[4]["detail"] == "reservation already released: nothing changed"
    # Only the send under a push id never issued counted; the released reservation did not.
    state = caps(api, user, daytime)
    assert state["sent_total"] == 1 and state["pending_reservations"] == 0
    metrics = api.get("/metrics").text
    counts = (("sent", "recorded", 1), ("failed", "unchanged", 2), ("failed", "applied", 1),
              ("sent", "unchanged", 1))
    for type_, outcome, count in counts:
        assert f'qianmian_events_total{{outcome="{outcome}",type="{type_}"}} {count}.0' in metrics
