"""A cardholder's second month through `/v1/rank/batch` (k=1, as a scheduler asks): the monthly cap counts
the local calendar month and resets on the 1st, and content pushed since the publication leaves the
ranking, so the caps' k + 3 window never fills with pushes the no-repeat rule refuses."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from serving_support import SCHEDULER_HEADERS

from recsys.caps.policy import NoRepeat, default_policy
from recsys.caps.rules import RESERVED, CardholderRecord, PushRecord, repeat_blocked
from serving.ranker import CAPS_SPARE

pytestmark = pytest.mark.redis

SHANGHAI = "Asia/Shanghai"


@pytest.fixture
def server_time(as_of: pd.Timestamp) -> pd.Timestamp:
    """09:00 Shanghai on the 2nd of the second month after the as-of month (the replayed days are past)."""
    first = as_of.tz_convert(SHANGHAI).normalize().replace(day=1)
    return (first + pd.DateOffset(months=2)).replace(day=2, hour=9)


@pytest.fixture
def settings(settings, server_time: pd.Timestamp):
    return settings.model_copy(update={"clock_past_seconds": 70 * 86400})


def ask(api, users: list[str], now: pd.Timestamp) -> list[dict]:
    response = api.post("/v1/rank/batch", headers=SCHEDULER_HEADERS, json={"requests": [
        {"user_id": user, "k": 1, "reserve": True, "now": now.isoformat()} for user in users]})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_the_monthly_count_resets_and_pushed_content_leaves_the_ranking(api, published, dataset,
                                                                       server_time) -> None:
    frame = dataset.cardholders
    opted_in = frame["push_opt_in"].astype("boolean").fillna(True).to_numpy()
    shanghai = frame["timezone"].astype("string").fillna(SHANGHAI).eq(SHANGHAI).to_numpy()
    users = frame.loc[opted_in & shanghai, "user_id"].astype(str).tolist()[:30]
    first_of_month = server_time.replace(day=1, hour=10)  # the second month's 1st, 10:00 local
    pushed: dict[str, list[str]] = {user: [] for user in users}
    # a push a day on the first month's last four days (opened, so no fatigue pause): its cap of 4 used
    for back in (5, 4, 3, 2):
        now = first_of_month - pd.Timedelta(days=back)
        events = []
        for body in ask(api, users, now):
            assert body["push_id"], body["caps"]
            pushed[body["user_id"]].append(body["items"][0]["content_id"])
            events += [{"event_id": f"{body['push_id']}-s", "type": "sent", "user_id": body["user_id"],
                        "push_id": body["push_id"], "ts": now.isoformat()},
                       {"event_id": f"{body['push_id']}-o", "type": "opened", "user_id": body["user_id"],
                        "push_id": body["push_id"], "ts": (now + timedelta(minutes=20)).isoformat()}]
        assert api.post("/v1/events", headers=SCHEDULER_HEADERS, json={"events": events}).status_code == 200
    assert all(len(set(items)) == CAPS_SPARE + 1 for items in pushed.values())
    # the month's last day: the monthly limit blocks everyone
    for body in ask(api, users, first_of_month - pd.Timedelta(days=1)):
        assert not body["caps"]["allowed"] and not body["push_id"]
        assert "limit:monthly" in {block["rule"] for block in body["caps"]["blocks"]}
    # the 1st: a fresh month, and an item none of the four pushed ones (they were the first
    # k + CAPS_SPARE candidates the caps look at; without leaving the ranking nothing would be answered)
    for body in ask(api, users, first_of_month):
        assert body["caps"]["allowed"] and body["push_id"], body["caps"]
        assert body["items"][0]["content_id"] not in pushed[body["user_id"]]


def test_repeat_blocked_names_what_the_no_repeat_rule_refuses() -> None:
    now = 100 * 86_400_000
    record = CardholderRecord(sent_contents={"old": now - 10 * 86_400_000, "new": now - 86_400_000})
    record.pushes["p1"] = PushRecord("p1", RESERVED, now - 60_000, now + 60_000, "held", "article", (), False,
                                     None)
    record.pushes["p2"] = PushRecord("p2", RESERVED, now - 60_000, now - 1, "expired", "article", (), False,
                                     None)
    record.pushes["p3"] = PushRecord("p3", RESERVED, now - 60_000, now + 60_000, "bill", "reminder", (),
                                     True, None)
    forever = default_policy()
    assert forever.no_repeat is not None and forever.no_repeat.window is None
    assert sorted(repeat_blocked(forever, record, now)) == ["held", "new", "old"]
    week = forever.model_copy(update={"no_repeat": NoRepeat(window=7 * 86400)})
    assert sorted(repeat_blocked(week, record, now)) == ["held", "new"]
    assert repeat_blocked(forever.model_copy(update={"no_repeat": None}), record, now) == []


@pytest.mark.parametrize("window", [None, 7 * 86400])
def test_repeat_blocked_is_what_the_caps_refuse_by_no_repeat(window: int | None) -> None:
    """On random records: the ids `repeat_blocked` names are those the caps' own evaluation blocks by
    the no-repeat rule (marketing candidates)."""
    from recsys.caps.decisions import Candidate
    from recsys.caps.rules import CONFIRMED, calendar, evaluate

    policy = default_policy().model_copy(update={"no_repeat": NoRepeat(window=window)})
    rng = np.random.default_rng(7)
    now = 400 * 86_400_000
    names = [f"c{i}" for i in range(8)]
    for _ in range(200):
        record = CardholderRecord()
        for content_id in rng.choice(names, rng.integers(0, 5), replace=False).tolist():
            record.sent_contents[content_id] = now - int(rng.integers(0, 20 * 86_400_000))
        for k in range(int(rng.integers(0, 4))):
            status = [RESERVED, CONFIRMED][int(rng.integers(0, 2))]
            record.pushes[f"p{k}"] = PushRecord(
                f"p{k}", status, now - int(rng.integers(0, 9e6)), now + int(rng.integers(-9e6, 9e6)),
                str(rng.choice(names)), "article", (), bool(rng.random() < 0.2), None)
        blocks = evaluate(policy, record, [Candidate(c) for c in names], calendar(policy, SHANGHAI, now))
        refused = {c for c, found in zip(names, blocks, strict=True)
                   if any(block[0] == "no_repeat" for block in found)}
        assert set(repeat_blocked(policy, record, now)) == refused
