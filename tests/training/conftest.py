"""Fixtures for the training tests: the hand-made directory, a two-taste world, a small synthetic world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.loader import Dataset, load_dataset
from tests.features.handmade import make_hand_made_tables, write_contract_tables


@pytest.fixture
def hand_made_tables() -> dict[str, pd.DataFrame]:
    return make_hand_made_tables()


@pytest.fixture
def hand_made(tmp_path: Path) -> Dataset:
    return load_dataset(write_contract_tables(tmp_path / "data", make_hand_made_tables()))


def two_taste_tables(n_users: int = 400, seed: int = 3) -> dict[str, pd.DataFrame]:
    """Diners (MCC 5812) read dining articles, travellers (MCC 4511) read travel articles.

    A quarter of each group never reads: the model can only tell them apart by their card spend.
    """
    rng = np.random.default_rng(seed)
    users = [f"u{i:04d}" for i in range(n_users)]
    taste = np.where(np.arange(n_users) % 2 == 0, "dining", "travel")
    reader = (np.arange(n_users) // 2) % 4 != 0
    end = pd.Timestamp("2024-06-30T00:00:00Z")
    cardholders = pd.DataFrame({
        "user_id": users, "birth_year": 1985, "gender": "F", "city_tier": 2, "card_tier": "gold",
        "credit_limit": 30000.0, "opened_at": "2020-01-01", "timezone": "", "push_opt_in": "",
    })
    tx_rows = []
    for user, kind in zip(users, taste, strict=True):
        for day in rng.choice(90, size=12, replace=False):
            mcc = ("5812" if kind == "dining" else "4511") if rng.random() < 0.8 else "5411"
            when = end - pd.Timedelta(days=int(day), hours=3)
            tx_rows.append((user, when, float(rng.uniform(50, 500)), mcc, "offline", "false"))
    transactions = pd.DataFrame(tx_rows, columns=["user_id", "ts", "amount", "mcc", "channel", "overseas"])
    items = [f"dine{i}" for i in range(10)] + [f"trav{i}" for i in range(10)]
    content = pd.DataFrame({
        "content_id": items, "title": items, "kind": "article",
        "tags": ["dining"] * 10 + ["travel"] * 10, "valid_from": "", "valid_to": "", "card_tiers": "",
        "transactional": "",
    })
    read_rows = []
    for user, kind, reads in zip(users, taste, reader, strict=True):
        if not reads:
            continue
        pool = items[:10] if kind == "dining" else items[10:]
        for item in rng.choice(pool, size=4, replace=False):
            read_rows.append((user, end - pd.Timedelta(days=int(rng.integers(1, 60))), item, 90.0))
    reads = pd.DataFrame(read_rows, columns=["user_id", "ts", "content_id", "dwell_seconds"])
    return {"cardholders": cardholders, "transactions": transactions, "content": content,
            "article_reads": reads}


@pytest.fixture(scope="session")
def two_taste_dir(tmp_path_factory) -> Path:
    return write_contract_tables(tmp_path_factory.mktemp("two-taste") / "data", two_taste_tables())


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    """A 1,500-cardholder synthetic world, as `recsys synth` writes it (truth file beside it)."""
    from worlds import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("world") / "world"
    generate_world(WorldConfig(users=1500, items=120, days=60, seed=5), out)
    return out
