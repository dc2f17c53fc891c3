"""A seeded, hand-made push log whose answers are known: who opens at which hour, and who tires of pushes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

AS_OF = pd.Timestamp("2025-05-01T00:00:00Z")
DAYS = 120
HOURS = (9, 12, 15, 20)  # local send hours (Asia/Shanghai, UTC+8)


def make_tables(seed: int = 0) -> dict[str, pd.DataFrame]:
    """60 classic and 30 gold cardholders, 12 promotions, one reminder, pushes every ~3 days at 4 hours.

    - `owl`: classic, opens every push sent at 20:00 and nothing else;
    - gold cardholders open morning (09:00) pushes at 40%, others at 2%; `new_gold` has no pushes;
    - classic cardholders are pushed in bursts (20-day phases of daily and of rare pushes) and open at
      every hour with `0.2 * exp(-0.1 * (recent - 1))`, `recent` = pushes in the trailing 30 days, this
      one included: fatigue.
    """
    rng = np.random.default_rng(seed)
    classic = [f"c{i:02d}" for i in range(60)]
    gold = [f"g{i:02d}" for i in range(30)]
    users = ["owl", *classic, *gold, "new_gold"]
    tiers = ["classic"] * (1 + len(classic)) + ["gold"] * (len(gold) + 1)
    cardholders = pd.DataFrame({
        "user_id": users, "birth_year": 1985, "gender": "F", "city_tier": 2, "card_tier": tiers,
        "credit_limit": 30000.0, "opened_at": "2020-01-01", "timezone": "Asia/Shanghai",
        "push_opt_in": "true",
    })
    content = pd.DataFrame({
        "content_id": [f"p{i:02d}" for i in range(12)] + ["bill"],
        "title": [f"Promotion {i}" for i in range(12)] + ["Bill due"],
        "kind": ["promotion"] * 12 + ["reminder"],
        "tags": "", "valid_from": "", "valid_to": "", "card_tiers": "",
        "transactional": [""] * 12 + ["true"],
    })
    rows = []
    start = AS_OF - pd.Timedelta(days=DAYS)
    for user in users:
        if user == "new_gold":
            continue
        if user.startswith("c"):
            busy = (np.arange(DAYS) // 20 + hash_user(user)) % 2 == 0
            days = np.flatnonzero(rng.random(DAYS) < np.where(busy, 0.8, 0.1))
        else:
            days = np.arange(0, DAYS, 1 if user == "owl" else 3)
        for n, day in enumerate(days):
            hour = HOURS[(n + hash_user(user)) % len(HOURS)]
            sent = start + pd.Timedelta(days=int(day), hours=hour - 8, minutes=int(rng.integers(0, 50)))
            item = f"p{int(rng.integers(0, 12)):02d}"
            if user == "owl":
                p = 1.0 if hour == 20 else 0.0
            elif user.startswith("g"):
                p = 0.4 if hour == 9 else 0.02
            else:
                recent = int(((days > day - 30) & (days <= day)).sum())
                p = 0.2 * np.exp(-0.1 * (recent - 1))
            rows.append((user, item, sent, bool(rng.random() < p)))
        rows.append((user, "bill", start + pd.Timedelta(days=5, hours=2), True))
    log = pd.DataFrame(rows, columns=["user_id", "content_id", "sent_ts", "opened"])
    log = log.sort_values("sent_ts", kind="stable").reset_index(drop=True)
    push_log = pd.DataFrame({
        "push_id": [f"x{i:06d}" for i in range(len(log))],
        "user_id": log["user_id"], "content_id": log["content_id"],
        "sent_ts": log["sent_ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "opened_ts": np.where(log["opened"], (log["sent_ts"] + pd.Timedelta(minutes=5))
                              .dt.strftime("%Y-%m-%dT%H:%M:%SZ"), ""),
        "muted": "false",
    })
    return {"cardholders": cardholders, "content": content, "push_log": push_log}


def hash_user(user: str) -> int:
    return sum(map(ord, user))


def write_tables(root: Path, tables: dict[str, pd.DataFrame]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(root / f"{name}.csv", index=False)
    return root
