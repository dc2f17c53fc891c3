"""`/v1/rank` and `/v1/rank/batch` through HTTP with the real Redis caps engine."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from serving_support import SCHEDULER_HEADERS

from features.bundle_inputs import feature_builder

pytestmark = pytest.mark.redis


def holders(dataset, opted_in: bool = True) -> list[str]:
    frame = dataset.cardholders
    opt = frame["push_opt_in"].astype("boolean").fillna(True)
    return frame.loc[opt == opted_in, "user_id"].astype(str).tolist()


def rank(api, **body):
    return api.post("/v1/rank", json=body, headers=SCHEDULER_HEADERS)


def test_rank_known_cardholder(api, published, dataset, daytime) -> None:
    user = holders(dataset)[0]
    response = rank(api, user_id=user, k=3, now=daytime)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == published.version
    assert body["fallback"] is False and body["fallback_source"] is None
    assert len(body["items"]) == 3
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(item["reason"] and item["title"] for item in body["items"])
    assert body["caps"]["allowed"] is True and body["caps"]["blocks"] == []
    assert body["push_id"] is None


def test_reserve_takes_the_daily_slot_then_caps_block(api, published, dataset, daytime) -> None:
    user = holders(dataset)[1]
    first = rank(api, user_id=user, k=2, now=daytime, reserve=True).json()
    assert first["push_id"] and first["caps"]["allowed"]
    assert len(first["items"]) == 2 and first["caps"]["short"] is False
    state = api.get(f"/v1/users/{user}/caps", params={"now": daytime}, headers=SCHEDULER_HEADERS).json()
    assert state["pending_reservations"] == 1
    second = rank(api, user_id=user, k=2, now=daytime, reserve=True).json()
    assert second["push_id"] is None
    assert second["items"] == []
    caps = second["caps"]
    assert caps["allowed"] is False
    # blocked while eligible candidates beyond the k + 3 the caps looked at were never checked
    assert caps["short"] is True
    assert "limit:daily" in [block["rule"] for block in caps["blocks"]]
    assert pd.Timestamp(caps["next_eligible_at"]) > pd.Timestamp(daytime)
    state = api.get(f"/v1/users/{user}/caps", params={"now": daytime}, headers=SCHEDULER_HEADERS).json()
    assert state["pending_reservations"] == 1
    assert {limit["name"]: limit["count"] for limit in state["limits"]}["daily"] == 1
    metrics = api.get("/metrics").text
    assert 'qianmian_caps_decisions_total{rule="limit:daily"} 1.0' in metrics
    assert 'qianmian_caps_decisions_total{rule="allowed"} 1.0' in metrics
    assert f'qianmian_model_version_info{{version="{published.version}"}} 1.0' in metrics


def test_quiet_hours_block_at_night(api, published, dataset, as_of) -> None:
    night = (as_of.tz_convert("Asia/Shanghai").normalize() + pd.Timedelta(hours=23)).isoformat()
    body = rank(api, user_id=holders(dataset)[2], now=night).json()
    assert body["caps"]["allowed"] is False
    assert [block["rule"] for block in body["caps"]["blocks"]] == ["quiet_hours"]


def test_requested_candidates_unknown_and_transactional(api, published, dataset, daytime) -> None:
    content = dataset.content
    transactional = content.loc[content["transactional"].fillna(False).astype(bool), "content_id"].astype(str)
    user = holders(dataset)[3]
    default = rank(api, user_id=user, k=50, now=daytime).json()
    default_ids = {item["content_id"] for item in default["items"]}
    assert not default_ids & set(transactional), "transactional notices only when requested"
    wanted = [*list(transactional[:1]), "no-such-content", *sorted(default_ids)[:2]]
    body = rank(api, user_id=user, k=5, now=daytime, candidates=wanted).json()
    returned = [item["content_id"] for item in body["items"]]
    assert set(returned) <= set(wanted)
    (unknown,) = [s for s in body["skipped"] if s["content_id"] == "no-such-content"]
    assert unknown["reason"].startswith("content id unknown to the published catalogue: check the id")
    if len(transactional):
        assert transactional.iloc[0] in returned + [s["content_id"] for s in body["skipped"]]


def test_a_transactional_notice_repeats_next_month(api, published, dataset, daytime, monkeypatch) -> None:
    """A bill reminder received before is sent again (and next month too); marketing never repeats."""
    content = dataset.content.set_index(dataset.content["content_id"].astype(str))
    pushes = dataset.push_log.assign(user_id=dataset.push_log["user_id"].astype(str),
                                     content_id=dataset.push_log["content_id"].astype(str))
    reminded = pushes[pushes["content_id"].map(content["transactional"]).fillna(False).astype(bool)]
    open_ended = content["valid_to"].isna() & ~content["transactional"].fillna(False).astype(bool)
    marketing = pushes[pushes["content_id"].map(open_ended).fillna(False).astype(bool)]
    both = sorted(set(reminded["user_id"]) & set(marketing["user_id"]) & set(holders(dataset)))
    assert both, "the seeded world has opted-in cardholders who got a reminder and a marketing push"
    user = both[0]
    reminder = reminded.loc[reminded["user_id"] == user, "content_id"].iloc[0]
    old_promotion = marketing.loc[marketing["user_id"] == user, "content_id"].iloc[0]
    next_month = (pd.Timestamp(daytime) + pd.DateOffset(months=1)).isoformat()
    serving = api.app.state.serving
    for n, now in enumerate((daytime, next_month)):
        # the API's fixed clock moves with the story: `now` must lie within its window
        monkeypatch.setattr(serving, "settings",
                            serving.settings.model_copy(update={"server_time": pd.Timestamp(now)}))
        body = rank(api, user_id=user, k=2, now=now, reserve=True,
                    candidates=[reminder, old_promotion]).json()
        assert [item["content_id"] for item in body["items"]] == [reminder], body
        assert body["skipped"] == [{"content_id": old_promotion,
                                    "reason": "already read or pushed to this cardholder"}]
        assert body["push_id"], body
        sent = api.post("/v1/events", headers=SCHEDULER_HEADERS, json={"events": [
            {"event_id": f"reminder-{n}", "type": "sent", "user_id": user, "push_id": body["push_id"],
             "ts": now}]}).json()
        assert sent["results"][0]["detail"] == "reservation confirmed"


def test_opted_out_cardholder_gets_no_marketing(api, published, dataset, daytime) -> None:
    opted_out = holders(dataset, opted_in=False)
    assert opted_out, "the seeded world has opted-out cardholders"
    body = rank(api, user_id=opted_out[0], now=daytime).json()
    assert body["caps"]["allowed"] is False
    assert body["items"] == []
    assert body["caps"]["blocks"][0]["rule"] == "opt_out"


def test_unknown_cardholder_fallbacks(api, published, bundle, dataset, daytime) -> None:
    rows = feature_builder(bundle).transform_users(dataset, bundle.as_of, dataset.cardholders["user_id"][:1])
    features = feature_builder(bundle).user_feature_dicts(rows)[0]
    with_features = rank(api, user_id="new-holder-1", now=daytime, features=features).json()
    assert with_features["fallback"] is True and with_features["fallback_source"] == "features"
    assert with_features["items"]
    tier = next(name for name in features if name.startswith("card_tier="))
    refused = rank(api, user_id="new-holder-2", now=daytime,
                   features={"unknown-feature": 1.0, tier[:-1]: 1.0})
    assert refused.status_code == 422
    message = refused.json()["message"]
    assert message.startswith("features: 2 feature name(s) unknown to the published model: 'unknown-feature'")
    assert f"{tier[:-1]!r} (did you mean {tier!r}?)" in message
    batch = api.post("/v1/rank/batch", headers=SCHEDULER_HEADERS, json={"requests": [
        {"user_id": "new-holder-4", "now": daytime},
        {"user_id": "new-holder-5", "now": daytime, "features": {"nope": 1.0}}]})
    assert batch.status_code == 422 and batch.json()["message"].startswith("requests[1].features: 1 feature")
    plain = rank(api, user_id="new-holder-3", now=daytime).json()
    assert plain["fallback_source"] == "popularity"
    assert plain["items"][0]["reason"] == "popular with cardholders"


def test_tier_restricted_content_only_reaches_its_tiers(api, published, dataset, daytime) -> None:
    content = dataset.content
    restricted = content.loc[content["card_tiers"].notna(), ["content_id", "card_tiers"]]
    frame = dataset.cardholders
    classic = frame.loc[frame["card_tier"] == "classic", "user_id"].astype(str).tolist()[:5]
    diamond = frame.loc[frame["card_tier"] == "diamond", "user_id"].astype(str).tolist()[:5]
    wanted = restricted["content_id"].astype(str).tolist()
    for user in classic:
        body = rank(api, user_id=user, k=10, now=daytime, candidates=wanted).json()
        assert body["items"] == []
        assert {s["reason"] for s in body["skipped"]} <= {
            "not offered to this cardholder's card tier", "outside its validity window at this time"}
    reached = set()
    for user in diamond:
        body = rank(api, user_id=user, k=10, now=daytime, candidates=wanted).json()
        reached |= {item["content_id"] for item in body["items"]}
    assert reached, "diamond cardholders can be offered diamond content"


def test_batch_matches_single_requests(api, published, dataset, daytime) -> None:
    users = holders(dataset)[10:30]
    batch = api.post("/v1/rank/batch", headers=SCHEDULER_HEADERS,
                     json={"requests": [{"user_id": u, "k": 3, "now": daytime} for u in users]})
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["user_id"] for r in results] == users
    for user, result in zip(users[:5], results[:5], strict=True):
        single = rank(api, user_id=user, k=3, now=daytime).json()
        assert [i["content_id"] for i in single["items"]] == [i["content_id"] for i in result["items"]]


def test_batches_ranked_at_once_in_one_worker_are_counted(api, published, dataset, daytime,
                                                          monkeypatch) -> None:
    """`qianmian_rank_batches_total{beside}`: a batch call that begins while the worker ranks another
    counts as beside it (what the wave benchmark reads to tell how evenly batches reach the workers)."""
    import serving.routers.rank as routes

    both_ranking = threading.Barrier(2, timeout=30)  # released only while both batches are being ranked
    ranked = routes.rank_many

    def rank_many(*args, **kwargs):
        both_ranking.wait()
        return ranked(*args, **kwargs)

    monkeypatch.setattr(routes, "rank_many", rank_many)
    users = holders(dataset)[30:34]
    bodies = [{"requests": [{"user_id": u, "k": 3, "now": daytime} for u in part]}
              for part in (users[:2], users[2:])]

    def post(body: dict):
        return api.post("/v1/rank/batch", json=body, headers=SCHEDULER_HEADERS)

    with ThreadPoolExecutor(2) as callers:
        answers = list(callers.map(post, bodies))
    assert [answer.status_code for answer in answers] == [200, 200]
    monkeypatch.setattr(routes, "rank_many", ranked)
    alone = post({"requests": bodies[0]["requests"][:1]})
    assert alone.status_code == 200, alone.text
    metrics = api.get("/metrics").text
    assert 'qianmian_rank_batches_total{beside="true"} 1.0' in metrics
    assert 'qianmian_rank_batches_total{beside="false"} 2.0' in metrics


def mixed_requests(dataset, bundle, daytime: str, users: list[str], k: int = 3) -> list[dict]:
    """Requests of every kind one batch may hold: known cardholders at one instant written in two
    offsets and at a later one, k of 1 to 4, requested candidates (one unknown), an opted-out
    cardholder, an unknown one described by features and an unknown one without."""
    later = (pd.Timestamp(daytime) + pd.Timedelta(hours=3)).isoformat()
    in_utc = pd.Timestamp(daytime).tz_convert("UTC").isoformat()
    rows = feature_builder(bundle).transform_users(dataset, bundle.as_of, dataset.cardholders["user_id"][:1])
    features = feature_builder(bundle).user_feature_dicts(rows)[0]
    items = dataset.content["content_id"].astype(str).tolist()
    requests = [{"user_id": u, "k": 1 + i % 4, "now": (daytime, in_utc, later)[i % 3]}
                for i, u in enumerate(users)]
    requests[1]["candidates"] = [*items[:5], "no-such-content"]
    return requests + [
        {"user_id": holders(dataset, opted_in=False)[0], "k": k, "now": daytime},
        {"user_id": "new-holder-batch-1", "k": k, "now": daytime, "features": features},
        {"user_id": "new-holder-batch-2", "k": k, "now": in_utc},
    ]


def test_a_batch_answers_each_cardholder_as_one_request_would(api, published, bundle, dataset,
                                                              daytime) -> None:
    """Whatever a batch shares between its requests (decision times, caps decisions, outlooks,
    reasons), every field of every answer is what that cardholder's request alone gets; also once
    the caps block (the same cardholders again after their daily slot is reserved)."""
    users = holders(dataset)[100:130]
    requests = mixed_requests(dataset, bundle, daytime, users)
    for reserve_first in (False, True):
        if reserve_first:
            taken = api.post("/v1/rank/batch", headers=SCHEDULER_HEADERS,
                             json={"requests": [{**r, "reserve": True} for r in requests[::2]]})
            assert taken.status_code == 200, taken.text
        batch = api.post("/v1/rank/batch", headers=SCHEDULER_HEADERS, json={"requests": requests})
        assert batch.status_code == 200, batch.text
        results = batch.json()["results"]
        alone = [rank(api, **request) for request in requests]
        assert all(response.status_code == 200 for response in alone)
        assert results == [response.json() for response in alone]
    rules = {block["rule"] for result in results for block in result["caps"]["blocks"]}
    assert {"limit:daily", "opt_out"} <= rules, rules
    assert {r["fallback_source"] for r in results} >= {None, "features", "popularity"}
    assert any(r["skipped"] for r in results) and len({len(r["items"]) for r in results}) > 2


def test_answers_validate_against_the_declared_schema(api, published, dataset, daytime) -> None:
    """The hot routes write their bodies directly: what they write must be what /openapi.json declares."""
    from serving.schemas import BatchRankResponse, RankResponse

    users = holders(dataset)[40:60] + ["not-published-7"]
    requests = [{"user_id": u, "k": 3, "reserve": True, "now": daytime} for u in users]
    bodies = []
    for _ in range(2):  # the second round is blocked by the daily cap: blocks and eligible times too
        response = api.post("/v1/rank/batch", headers=SCHEDULER_HEADERS, json={"requests": requests})
        assert response.status_code == 200, response.text
        parsed = BatchRankResponse.model_validate_json(response.content, strict=False)
        bodies += response.json()["results"]
        assert len(parsed.results) == len(users)
    single = rank(api, user_id=users[0], k=2, now=daytime, candidates=["no-such-content"])
    RankResponse.model_validate_json(single.content)
    bodies.append(single.json())
    declared = set(RankResponse.model_fields)
    assert all(set(body) <= declared for body in bodies), "a field the schema does not declare"
    assert any(body["push_id"] for body in bodies) and any(body["caps"]["blocks"] for body in bodies)
    schema = api.get("/openapi.json").json()
    for path, model in (("/v1/rank/batch", "BatchRankResponse"), ("/v1/rank", "RankResponse")):
        declared_ref = schema["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
        assert declared_ref["schema"]["$ref"].endswith(f"/{model}")


def test_batch_limits_and_duplicates(api, published) -> None:
    too_many = {"requests": [{"user_id": f"u{i}"} for i in range(1001)]}
    response = api.post("/v1/rank/batch", json=too_many, headers=SCHEDULER_HEADERS)
    assert response.status_code == 422
    assert "at most 1000" in response.json()["message"]
    twice = {"requests": [{"user_id": "u1"}, {"user_id": "u1"}]}
    response = api.post("/v1/rank/batch", json=twice, headers=SCHEDULER_HEADERS)
    assert response.status_code == 422 and "appears twice" in response.json()["message"]


def test_invalid_requests_name_the_field(api, published) -> None:
    response = rank(api, user_id="u1", k=0)
    assert response.status_code == 422
    assert response.json()["message"].startswith("invalid request: k:")
    response = rank(api, user_id="u1", now="2026-01-01T10:00:00")
    assert response.status_code == 422 and "time zone" in response.json()["message"]


def test_rank_without_publication_is_503(api) -> None:
    response = rank(api, user_id="u1")
    assert response.status_code == 503
    assert "recsys publish" in response.json()["message"]
