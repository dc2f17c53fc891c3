"""How many ranked candidates the caps look at: k where every rule blocks a cardholder's ranked items
alike, k + CAPS_SPARE where a limit on kinds or tags (or a request naming its items) may block one."""

from __future__ import annotations

import pandas as pd
import pytest
from serving_support import ADMIN_HEADERS, SCHEDULER_HEADERS

from recsys.caps.policy import Limit, default_policy
from serving.ranker import CAPS_SPARE, decide_widths
from serving.schemas import RankRequest


def test_the_default_policy_decides_k_candidates_of_a_ranked_request() -> None:
    policy = default_policy()
    ranked, named = RankRequest(user_id="u1", k=2), RankRequest(user_id="u2", k=1, candidates=["a", "b"])
    assert decide_widths(policy, [ranked, named]) == [2, 1 + CAPS_SPARE]
    by_kind = policy.model_copy(update={"limits": [*policy.limits, Limit(
        name="offers", window="calendar_day", max=1, kinds=["offer"])]})
    assert decide_widths(by_kind, [ranked, named]) == [2 + CAPS_SPARE, 1 + CAPS_SPARE]


@pytest.mark.redis
def test_a_kind_limit_blocks_one_item_and_the_next_kind_is_answered(api, published, dataset, daytime) -> None:
    """With a limit on one kind, the cardholder's next ranked item of that kind is refused and the caps
    look further (the spare candidates) to an item of another kind: the answer is not left short."""
    users = dataset.cardholders.loc[dataset.cardholders["push_opt_in"].astype("boolean").fillna(True),
                                    "user_id"].astype(str).tolist()[:60]
    lists = api.post("/v1/rank/batch", headers=SCHEDULER_HEADERS, json={"requests": [
        {"user_id": user, "k": 1 + CAPS_SPARE, "now": daytime} for user in users]}).json()["results"]
    # a cardholder whose first two items share a kind and whose next ones hold another
    chosen = next(body for body in lists if len(body["items"]) == 1 + CAPS_SPARE
                  and body["items"][0]["kind"] == body["items"][1]["kind"]
                  and any(item["kind"] != body["items"][0]["kind"] for item in body["items"][2:]))
    user, kind = chosen["user_id"], chosen["items"][0]["kind"]
    document = api.get("/v1/policy", headers=SCHEDULER_HEADERS).json()["policy"]
    document.update(version="two-a-day-one-per-kind", min_gap=None)
    document["limits"] = [{**limit, "max": 2} if limit["name"] == "daily" else limit
                          for limit in document["limits"]]
    document["limits"].append({"name": "one_a_kind", "window": "calendar_day", "max": 1, "kinds": [kind]})
    assert api.put("/v1/policy", json=document, headers=ADMIN_HEADERS).status_code == 200

    ask = {"user_id": user, "k": 1, "reserve": True, "now": daytime}
    first = api.post("/v1/rank", headers=SCHEDULER_HEADERS, json=ask).json()
    assert first["push_id"] and first["items"][0]["content_id"] == chosen["items"][0]["content_id"]
    sent = {"event_id": f"{first['push_id']}-s", "type": "sent", "user_id": user, "push_id": first["push_id"],
            "ts": pd.Timestamp(daytime).isoformat()}
    assert api.post("/v1/events", headers=SCHEDULER_HEADERS, json={"events": [sent]}).status_code == 200

    second = api.post("/v1/rank", headers=SCHEDULER_HEADERS, json=ask).json()
    assert second["caps"]["allowed"] and second["push_id"], second["caps"]
    assert second["items"][0]["kind"] != kind
    assert second["items"][0]["content_id"] in {item["content_id"] for item in chosen["items"][2:]}
