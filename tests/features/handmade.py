"""A small hand-made contract directory whose feature values are known by hand (shared by test folders)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

AS_OF = pd.Timestamp("2024-06-30T00:00:00Z")


def write_contract_tables(root: Path, tables: dict[str, pd.DataFrame]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(root / f"{name}.csv", index=False)
    return root


def make_hand_made_tables() -> dict[str, pd.DataFrame]:
    """Three cardholders: u1 dines and reads dining, u2 travels and never reads, u3 does nothing."""
    cardholders = pd.DataFrame({
        "user_id": ["u1", "u2", "u3"],
        "birth_year": [1990, 1975, None],
        "gender": ["F", "M", None],
        "city_tier": [1, 3, None],
        "card_tier": ["gold", "platinum", "classic"],
        "credit_limit": [20000.0, 80000.0, None],
        "opened_at": ["2020-01-15", "2024-03-01", None],
        "timezone": ["Asia/Shanghai", "", ""],
        "push_opt_in": ["true", "", "false"],
    })
    transactions = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u1", "u2", "u2"],
        "ts": ["2024-06-25T12:00:00Z", "2024-06-10T12:00:00Z", "2024-05-01T12:00:00Z",
               "2024-06-26T12:00:00Z", "2024-06-20T08:00:00Z", "2024-04-15T08:00:00Z"],
        "amount": [300.0, 100.0, 400.0, -100.0, 2000.0, 1000.0],
        "mcc": ["5812", "5411", "5812", "5812", "4511", "7011"],
        "channel": ["offline", "online", "offline", "offline", "online", "online"],
        "overseas": ["false", "false", "false", "false", "true", "true"],
    })
    menu_clicks = pd.DataFrame({
        "user_id": ["u1", "u1", "u2"],
        "ts": ["2024-06-28T09:00:00Z", "2024-05-15T09:00:00Z", "2024-01-01T09:00:00Z"],
        "menu_key": ["bill_query", "bill_query", "repayment"],
    })
    content = pd.DataFrame({
        "content_id": ["c_dine", "c_travel", "c_plat", "c_old", "c_bill", "c_dine2"],
        "title": ["Dining deals", "Fly more", "Platinum lounge", "Expired", "Bill due", "Weekend dining"],
        "kind": ["promotion", "promotion", "activity", "article", "reminder", "article"],
        "tags": ["dining|weekend", "travel", "travel|lounge", "dining", "", "dining"],
        "valid_from": ["2024-01-01T00:00:00Z", "", "", "2024-01-01T00:00:00Z", "", ""],
        "valid_to": ["2024-12-31T00:00:00Z", "", "", "2024-03-01T00:00:00Z", "", ""],
        "card_tiers": ["", "", "platinum|diamond", "", "", ""],
        "transactional": ["", "", "", "", "true", ""],
    })
    article_reads = pd.DataFrame({
        "user_id": ["u1", "u1"],
        "ts": ["2024-06-20T20:00:00Z", "2024-02-01T20:00:00Z"],
        "content_id": ["c_dine2", "c_old"],
        "dwell_seconds": [120.0, 30.0],
    })
    push_log = pd.DataFrame({
        "push_id": ["p1", "p2", "p3"],
        "user_id": ["u1", "u2", "u2"],
        "content_id": ["c_dine", "c_travel", "c_dine"],
        "sent_ts": ["2024-06-01T10:00:00Z", "2024-06-10T10:00:00Z", "2024-06-29T10:00:00Z"],
        "opened_ts": ["2024-06-01T11:00:00Z", "", ""],
        "muted": ["", "", ""],
    })
    return {"cardholders": cardholders, "transactions": transactions, "menu_clicks": menu_clicks,
            "content": content, "article_reads": article_reads, "push_log": push_log}




def with_pushes(dataset, pushes: list[tuple[str, str, str, str, str]]):
    """`dataset` with (push_id, user_id, content_id, sent_ts, opened_ts) rows added to its push log."""
    push_log = dataset.push_log
    extra = pd.DataFrame(pushes, columns=["push_id", "user_id", "content_id", "sent_ts", "opened_ts"])
    extra["sent_ts"] = pd.to_datetime(extra["sent_ts"], utc=True)
    extra["opened_ts"] = pd.to_datetime(extra["opened_ts"], utc=True)
    extra = extra.astype(push_log.dtypes[extra.columns].to_dict())
    return dataclasses.replace(dataset, push_log=pd.concat([push_log, extra], ignore_index=True))
