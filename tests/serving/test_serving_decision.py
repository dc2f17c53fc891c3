"""Push response models published with the ranking model, and the send or hold decision in rank answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from serving_support import ADMIN_HEADERS, SCHEDULER_HEADERS

from serving.pipeline import LiveModel


def test_the_response_model_is_published_with_the_ranking_model(response_bundle, dataset, store) -> None:
    from publishing.publish import publish

    report = publish(response_bundle, dataset, store, model_uri="with-response")
    published = store.load(report.version)
    assert published.manifest["response_model"] is True
    live = LiveModel(published)
    assert live.response is not None
    expected = response_bundle.response
    users = expected.user_rows(expected.user_ids[:5])
    items = expected.item_rows(expected.content_ids[:5])
    hours, recent = np.array([9, 12, 19, 21, 8]), np.array([1, 2, 3, 4, 5])
    assert np.allclose(live.response.open_probability(live.response.user_rows(expected.user_ids[:5]),
                                                      live.response.item_rows(expected.content_ids[:5]),
                                                      hours, recent),
                       expected.open_probability(users, items, hours, recent))


def test_a_publication_without_response_models_still_loads(published, store) -> None:
    live = LiveModel(store.load(published.version))
    assert live.response is None and store.load(published.version).manifest["response_model"] is False


# ---------------------------------------------------------------------- the decision in rank answers

@pytest.fixture
def decided(response_bundle, dataset, store):
    from publishing.publish import publish

    return publish(response_bundle, dataset, store, model_uri="with-response")


def set_decision(api, **settings) -> None:
    document = api.get("/v1/policy", headers=SCHEDULER_HEADERS).json()["policy"]
    document["version"] = f"decision-{len(str(settings))}-{sorted(settings)}"[:100]
    document["decision"] = {**document["decision"], **settings}
    response = api.put("/v1/policy", json=document, headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text


def rank(api, **body):
    response = api.post("/v1/rank", json=body, headers=SCHEDULER_HEADERS)
    assert response.status_code == 200, response.text
    return response.json()


def known_user(dataset) -> str:
    opt = dataset.cardholders["push_opt_in"].astype("boolean").fillna(True)
    return dataset.cardholders.loc[opt, "user_id"].astype(str).iloc[0]


@pytest.mark.redis
def test_every_item_carries_p_open_and_p_mute_and_the_answer_a_decision(api, decided, dataset,
                                                                        daytime) -> None:
    body = rank(api, user_id=known_user(dataset), k=3, now=daytime)
    assert body["items"] and all(0.0 < item["p_open"] < 1.0 and 0.0 < item["p_mute"] < 1.0
                                 for item in body["items"])
    assert body["decision"] in ("send", "hold") and body["reason"]
    assert len(body["best_hours"]) == 3 and all(0 <= hour <= 23 for hour in body["best_hours"])


@pytest.mark.redis
def test_hold_below_the_threshold_reserves_nothing(api, decided, dataset, daytime) -> None:
    set_decision(api, min_value=1.0)
    user = known_user(dataset)
    body = rank(api, user_id=user, k=2, now=daytime, reserve=True)
    assert body["decision"] == "hold" and "below threshold" in body["reason"]
    assert body["push_id"] is None and body["send_at"] is None
    state = api.get(f"/v1/users/{user}/caps", params={"now": daytime}, headers=SCHEDULER_HEADERS).json()
    assert state["pending_reservations"] == 0


@pytest.mark.redis
def test_send_reserves_now_or_at_a_better_hour_later_today(api, decided, response_bundle, dataset,
                                                                 daytime) -> None:
    user = known_user(dataset)
    set_decision(api, min_value=-1.0, hour_margin=10.0, pacing=None)
    sent = rank(api, user_id=user, k=2, now=daytime, reserve=True)
    assert sent["decision"] == "send" and sent["push_id"]
    assert pd.Timestamp(sent["send_at"]) == pd.Timestamp(daytime)
    # a zero margin, a scheduler that follows `send_at`: any later hour of the day worth more than now is
    # preferred
    set_decision(api, min_value=-1.0, hour_margin=0.0, pacing=None, scheduler_follows_send_at=True)
    model = response_bundle.response
    early = (pd.Timestamp(daytime).normalize() + pd.Timedelta(hours=8)).isoformat()
    at = np.array([int(pd.Timestamp(early).timestamp())])
    # a cardholder the push log pushed in the last 30 days: the caps state does not know those pushes
    ids = dataset.cardholders["user_id"].astype(str)
    history = np.array([model.history_counts(model.user_rows([u]), at)[0] for u in ids])
    other = ids.iloc[int(np.flatnonzero((history > 0) & (ids != user).to_numpy())[0])]
    recent = 1 + int(history[ids.tolist().index(other)])
    body = rank(api, user_id=other, k=1, now=early, reserve=True)
    # the expected verdict from the published model itself: the top item at 08:00..21:00, `recent` counting
    # the push log's pushes of the last 30 days and this one
    hours = np.arange(8, 22)
    top = body["items"][0]["content_id"]
    query = (model.user_rows([other] * len(hours)), model.item_rows([top] * len(hours)), hours,
             np.full(len(hours), recent))
    value = model.open_probability(*query) - 10.0 * model.mute_probability(*query)
    assert body["items"][0]["p_open"] == pytest.approx(model.open_probability(*query)[0])
    assert body["items"][0]["p_mute"] == pytest.approx(model.mute_probability(*query)[0])
    assert body["decision"] == "send" and body["push_id"]
    if value[1:].max() > value[0]:
        # send at the better hour: reserved now, delivered then
        assert "better hour later" in body["reason"]
        best = pd.Timestamp(early) + pd.Timedelta(hours=int(value[1:].argmax()) + 1)
        assert pd.Timestamp(body["send_at"]) == best
    else:
        assert pd.Timestamp(body["send_at"]) == pd.Timestamp(early)


@pytest.mark.redis
def test_without_response_models_or_with_decisions_off_every_answer_says_send(api, published, dataset,
                                                                             daytime) -> None:
    body = rank(api, user_id=known_user(dataset), k=1, now=daytime, reserve=True)
    assert body["decision"] == "send" and body["reason"] == "no response model" and body["push_id"]
    assert "p_open" not in body["items"][0] or body["items"][0]["p_open"] is None


@pytest.mark.redis
def test_decisions_off_in_the_policy_send_whatever_the_caps_allow(api, decided, dataset, daytime) -> None:
    set_decision(api, enabled=False, min_value=1.0)
    body = rank(api, user_id=known_user(dataset), k=1, now=daytime, reserve=True)
    assert body["decision"] == "send" and body["reason"] == "decisions disabled by the policy"
    assert body["push_id"]


@pytest.mark.redis
def test_the_control_share_is_sent_whatever_the_value_and_the_rest_is_decided(api, decided, dataset,
                                                                             daytime) -> None:
    """With every push below the threshold, the cardholders of the control share (a fixed hash of the
    id) are sent and reserved now, with their P(open) and P(mute); the others are held, in one batch as
    one by one."""
    from recsys.control import CONTROL_REASON, in_control

    set_decision(api, min_value=1.0, control_share=0.5)
    opt = dataset.cardholders["push_opt_in"].astype("boolean").fillna(True)
    users = dataset.cardholders.loc[opt, "user_id"].astype(str).tolist()[:24]
    control = in_control(users, 0.5)
    assert 0 < control.sum() < len(users)
    batch = api.post("/v1/rank/batch", json={"requests": [{"user_id": u, "k": 2, "now": daytime,
                                                           "reserve": True} for u in users]},
                     headers=SCHEDULER_HEADERS)
    assert batch.status_code == 200, batch.text
    for result, chosen in zip(batch.json()["results"], control.tolist(), strict=True):
        if not result["items"]:
            continue
        assert all(item["p_open"] is not None for item in result["items"])
        if chosen:
            assert (result["decision"], result["reason"]) == ("send", CONTROL_REASON)
            assert result["push_id"] and result["send_at"] is not None
            assert pd.Timestamp(result["send_at"]) == pd.Timestamp(daytime)
        else:
            assert result["decision"] == "hold" and "below threshold" in result["reason"]
            assert result["push_id"] is None
    outside = users[int(np.flatnonzero(~control)[0])]
    assert rank(api, user_id=outside, k=1, now=daytime)["decision"] == "hold"


@pytest.mark.redis
def test_pacing_holds_while_last_months_pushes_are_still_leaving_the_window(api, decided, response_bundle,
                                                                           dataset, daytime) -> None:
    """At 10:00 on the 1st, a cardholder the push log pushed early last month is worth more later this
    month (those pushes leave the 30-day window, the recent count and p_mute fall); one never pushed is
    worth the same every day, so pacing does not hold them."""
    model = response_bundle.response
    assert model.recent_logit("mute", 5) > model.recent_logit("mute", 1)  # mutes rise with frequency
    set_decision(api, mute_weight=1000.0, min_value=-1.0, hour_margin=10.0, pacing={"margin": 0.0})
    ids = dataset.cardholders["user_id"].astype(str)
    opted = dataset.cardholders["push_opt_in"].astype("boolean").fillna(True).to_numpy(dtype=bool)
    rows = model.user_rows(ids)
    start = int(pd.Timestamp(daytime).timestamp())
    counts = model.history_counts(rows, start + 86_400 * np.arange(30)[None, :].repeat(len(ids), axis=0))
    # the count now, and whether it has fallen by the 25th day (at least four later days are better)
    leaving = opted & (counts[:, 0] > 0) & (counts[:, 24] < counts[:, 0])
    never = opted & (counts[:, 0] == 0)
    assert leaving.sum() >= 5 and never.sum() >= 3
    held = [rank(api, user_id=user, k=1, now=daytime, reserve=True) for user in ids[leaving].iloc[:5]]
    # the pacing verdict: "slots worth more later", or "better content later" when an item that becomes
    # valid this month is what the later days are worth more with (which one depends on the fitted model)
    assert any(body["decision"] == "hold" and body["reason"].startswith(
        ("slots worth more later", "better content later")) and "slot(s) left" in body["reason"]
        for body in held), [body["reason"] for body in held]
    assert all(body["push_id"] is None for body in held if body["decision"] == "hold")
    for user in ids[never].iloc[:3]:
        body = rank(api, user_id=user, k=1, now=daytime)
        assert not body["reason"].startswith("slots worth more later"), body["reason"]


@pytest.mark.redis
def test_a_batch_decides_each_cardholder_as_one_request_would(api, decided, dataset, daytime) -> None:
    """Send or hold, P(open), P(mute), best hours and pacing, with the decision times of a batch
    written in two offsets and at two instants: each answer is that request's alone."""
    opt = dataset.cardholders["push_opt_in"].astype("boolean").fillna(True)
    users = dataset.cardholders.loc[opt, "user_id"].astype(str).tolist()[:24]
    in_utc = pd.Timestamp(daytime).tz_convert("UTC").isoformat()
    evening = (pd.Timestamp(daytime) + pd.Timedelta(hours=9)).isoformat()
    requests = [{"user_id": u, "k": 1 + i % 3, "now": (daytime, in_utc, evening)[i % 3]}
                for i, u in enumerate(users)]
    batch = api.post("/v1/rank/batch", json={"requests": requests}, headers=SCHEDULER_HEADERS)
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert results == [rank(api, **request) for request in requests]
    assert all(item["p_open"] is not None for result in results for item in result["items"])
    assert len({result["send_at"] for result in results}) > 1


@pytest.mark.redis
def test_a_better_hour_at_a_slot_the_scheduler_asks_at_is_a_hold_until_that_slot(api, decided, dataset,
                                                                                 daytime) -> None:
    """Learned from the batch calls of earlier days, then fixed or switched off by the policy (a scheduler
    that follows `send_at`: with neither habit nor slots known a better hour would be a hold, below)."""
    set_decision(api, min_value=-1.0, hour_margin=0.0, pacing=None, scheduler_follows_send_at=True)
    holders = dataset.cardholders
    opt = holders["push_opt_in"].astype("boolean").fillna(True)
    zone = holders["timezone"].astype("string").fillna("Asia/Shanghai").replace("", "Asia/Shanghai")
    users = holders.loc[opt & (zone == "Asia/Shanghai"), "user_id"].astype(str).tolist()[:30]
    day = pd.Timestamp(daytime).normalize()  # midnight in Shanghai
    early = (day + pd.Timedelta(hours=8)).isoformat()
    before = [rank(api, user_id=u, k=1, now=early) for u in users]
    later = [(user, body) for user, body in zip(users, before, strict=True)
             if body["reason"].startswith("better hour later")]
    assert later and all(b["decision"] == "send" and "send at" in b["reason"] for _, b in later)
    # the scheduler asked at every hour from 09:00 to 21:00 on the two days before
    for back in (2, 1):
        for hour in range(9, 22):
            moment = (day - pd.Timedelta(days=back) + pd.Timedelta(hours=hour)).isoformat()
            response = api.post("/v1/rank/batch", json={"requests": [{"user_id": users[0], "now": moment}]},
                                headers=SCHEDULER_HEADERS)
            assert response.status_code == 200, response.text
    for user, was in later:
        body = rank(api, user_id=user, k=1, now=early, reserve=True)
        # the better hour is itself a slot: ask again then, nothing reserved now
        assert body["decision"] == "hold" and body["push_id"] is None, body["reason"]
        assert body["reason"].startswith("better hour later: ask again at")
        assert body["send_at"] == was["send_at"] and body["caps"]["allowed"]
    state = api.get(f"/v1/users/{later[0][0]}/caps", params={"now": early}, headers=SCHEDULER_HEADERS).json()
    assert state["pending_reservations"] == 0
    # the policy's slots win over the learned ones; an empty list never holds for a slot
    set_decision(api, min_value=-1.0, hour_margin=0.0, pacing=None, scheduler_slots=[])
    user, was = later[0]
    assert rank(api, user_id=user, k=1, now=early)["send_at"] == was["send_at"]
    assert rank(api, user_id=user, k=1, now=early)["decision"] == "send"
    slot = pd.Timestamp(was["send_at"]).tz_convert("Asia/Shanghai")
    set_decision(api, min_value=-1.0, hour_margin=0.0, pacing=None,
                 scheduler_slots=[f"{slot.hour:02d}:00", "23:30"])
    held = rank(api, user_id=user, k=1, now=early)
    assert held["decision"] == "hold" and held["send_at"] == was["send_at"]
    document = api.get("/v1/policy", headers=SCHEDULER_HEADERS).json()["policy"]
    assert document["decision"]["scheduler_slots"] == [f"{slot.hour:02d}:00", "23:30"]
    document["decision"]["scheduler_slots"] = ["7pm"]
    document["version"] = "bad-slots"
    refused = api.put("/v1/policy", json=document, headers=ADMIN_HEADERS)
    assert refused.status_code in (400, 422) and "scheduler_slots" in refused.text


@pytest.mark.redis
def test_a_scheduler_known_to_send_at_once_is_answered_at_its_slots_from_its_second_day(
        api, decided, dataset, daytime) -> None:
    """With one earlier day of batch calls the slots are not a habit yet, so a scheduler not known to
    ignore `send_at` is answered as on its first day; one known to send at once gets that day's times of
    asking, else its answers for a later hour would go out now."""
    from serving.send_at_following import rechecked

    set_decision(api, min_value=-1.0, hour_margin=0.0, pacing=None)
    holders = dataset.cardholders
    opt = holders["push_opt_in"].astype("boolean").fillna(True)
    zone = holders["timezone"].astype("string").fillna("Asia/Shanghai").replace("", "Asia/Shanghai")
    users = holders.loc[opt & (zone == "Asia/Shanghai"), "user_id"].astype(str).tolist()[:60]
    today = pd.Timestamp(daytime)  # 10:00 in Shanghai
    yesterday = today - pd.Timedelta(days=1)

    def batch(moment: pd.Timestamp) -> list[dict]:
        requests = [{"user_id": u, "k": 1, "now": moment.isoformat()} for u in users]
        response = api.post("/v1/rank/batch", json={"requests": requests}, headers=SCHEDULER_HEADERS)
        assert response.status_code == 200, response.text
        return response.json()["results"]

    batch(yesterday)  # the scheduler's first day: 10:00 and 19:30
    batch(yesterday + pd.Timedelta(hours=9, minutes=30))
    unknown = batch(today)
    # one day of calls is no slot yet, and the habit is not known either: a better hour later today is a
    # hold until it, but for the day's re-checked share, answered `send` at it
    later = [r for r in unknown if r["reason"].startswith("better hour later")]
    assert later, "no answer for a later hour: the test needs one"
    learning = {r["user_id"] for r in later if rechecked(r["user_id"], today.date())}
    assert all(pd.Timestamp(r["send_at"]) > today for r in later)
    assert all(r["decision"] == "send" and "send at" in r["reason"]
               for r in later if r["user_id"] in learning)
    held = [r for r in later if r["user_id"] not in learning]
    assert held and all(r["decision"] == "hold" and r["push_id"] is None
                        and r["reason"].startswith("better hour later: ask again at or after") for r in held)
    set_decision(api, min_value=-1.0, hour_margin=0.0, pacing=None, scheduler_follows_send_at=False)
    ignoring = {r["user_id"]: r for r in batch(today)}
    assert all(r["decision"] != "send" or pd.Timestamp(r["send_at"]) == today for r in ignoring.values())
    evening = (yesterday + pd.Timedelta(hours=33, minutes=30)).tz_convert("UTC")  # 19:30 today
    waits = [ignoring[r["user_id"]] for r in later if ignoring[r["user_id"]]["decision"] == "hold"]
    assert waits and all(r["reason"].startswith("better hour later: ask again at 19:30 local")
                         and pd.Timestamp(r["send_at"]) == evening for r in waits)


@pytest.mark.redis
def test_a_scheduler_that_sends_at_once_is_learned_from_its_sent_events(api, decided, dataset,
                                                                        daytime) -> None:
    """Sends answered for a later hour and reported sent when asked teach that the scheduler ignores
    `send_at`; then `send` means now and a hold names the slot to ask again at."""
    from serving.send_at_following import MIN_SENDS, rechecked, suggested_send_at

    set_decision(api, min_value=-1.0, hour_margin=0.0, pacing=None, scheduler_slots=["10:00", "19:30"])
    holders = dataset.cardholders
    opt = holders["push_opt_in"].astype("boolean").fillna(True)
    zone = holders["timezone"].astype("string").fillna("Asia/Shanghai").replace("", "Asia/Shanghai")
    users = holders.loc[opt & (zone == "Asia/Shanghai"), "user_id"].astype(str).tolist()[:150]
    day = pd.Timestamp(daytime)  # 10:00 in Shanghai, a slot

    def batch(moment: pd.Timestamp, who: list[str], reserve: bool) -> list[dict]:
        requests = [{"user_id": u, "k": 1, "now": moment.isoformat(), "reserve": reserve} for u in who]
        response = api.post("/v1/rank/batch", json={"requests": requests}, headers=SCHEDULER_HEADERS)
        assert response.status_code == 200, response.text
        return response.json()["results"]

    later_sends = 0
    for back, who in zip((3, 2, 1), (users[:50], users[50:100], users[100:]), strict=True):
        asked = day - pd.Timedelta(days=back)
        results = [r for r in batch(asked, who, reserve=True) if r["decision"] == "send" and r["push_id"]]
        for result in results:
            # a send for a later hour carries that hour in its push id; others keep a plain id
            later = pd.Timestamp(result["send_at"]) - asked > pd.Timedelta(minutes=30)
            carried = suggested_send_at(result["push_id"])
            assert (carried == pd.Timestamp(result["send_at"])) if later else carried is None
            later_sends += later
        # the scheduler sends every push when it asked, whatever send_at said
        events = [{"event_id": f"{r['push_id']}-s", "type": "sent", "user_id": r["user_id"],
                   "push_id": r["push_id"], "ts": asked.isoformat()} for r in results]
        posted = api.post("/v1/events", json={"events": events}, headers=SCHEDULER_HEADERS)
        assert posted.status_code == 200 and all(
            r["status"] == "applied" for r in posted.json()["results"]), posted.text
    assert later_sends >= MIN_SENDS
    # learned: no send for a later hour (but for the day's re-checked cardholders); a hold for a better
    # hour names one of the scheduler's slots
    ignoring = batch(day, users, reserve=False)
    checked = {u for u in users if rechecked(u, day.date())}
    assert 0 < len(checked) < len(users) // 8
    sends = [r for r in ignoring if r["decision"] == "send" and r["user_id"] not in checked]
    assert sends and all(pd.Timestamp(r["send_at"]) == day for r in sends)
    slot_holds = [r for r in ignoring if r["reason"].startswith(("better hour later: ask again",
                                                                 "better hour tomorrow: ask again"))]
    assert slot_holds and all(pd.Timestamp(r["send_at"]).tz_convert("Asia/Shanghai").strftime("%H:%M")
                              in ("10:00", "19:30") for r in slot_holds)
    # fixed by the policy: true answers as for a scheduler that follows send_at, false as learned
    set_decision(api, min_value=-1.0, hour_margin=0.0, pacing=None, scheduler_slots=["10:00", "19:30"],
                 scheduler_follows_send_at=True)
    following = batch(day, users, reserve=False)
    assert any(r["decision"] == "send" and pd.Timestamp(r["send_at"]) > day for r in following)
    set_decision(api, min_value=-1.0, hour_margin=0.0, pacing=None, scheduler_slots=["10:00", "19:30"],
                 scheduler_follows_send_at=False)
    # (fixed, nobody is re-checked)
    fixed = batch(day, users, reserve=False)
    assert all(r["decision"] != "send" or pd.Timestamp(r["send_at"]) == day for r in fixed)
    verdicts = [(r["decision"], r["reason"], r["send_at"]) for r in fixed if r["user_id"] not in checked]
    assert verdicts == [(r["decision"], r["reason"], r["send_at"]) for r in ignoring
                        if r["user_id"] not in checked]
    document = api.get("/v1/policy", headers=SCHEDULER_HEADERS).json()["policy"]
    assert document["decision"]["scheduler_follows_send_at"] is False
    document["decision"]["scheduler_follows_send_at"] = "yes"
    document["version"] = "bad-follows"
    refused = api.put("/v1/policy", json=document, headers=ADMIN_HEADERS)
    assert refused.status_code in (400, 422) and "scheduler_follows_send_at" in refused.text
    assert "true, false or null" in refused.text
