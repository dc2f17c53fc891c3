"""The generated directory is contract-valid and looks like a credit-card audience."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.contract import MENU_KEYS, TABLES
from worlds import catalog

pytestmark = pytest.mark.slow


def test_every_table_is_written_and_loads_with_contract_types(small_world):
    data = small_world.dataset
    assert data.present == frozenset(TABLES)
    assert len(data.cardholders) == 4_000
    assert len(data.content) == 80
    for name in ("transactions", "menu_clicks", "article_reads", "push_log"):
        assert len(data.table(name)) > 1_000, name
    assert str(data.cardholders["birth_year"].dtype) == "Int64"
    assert str(data.transactions["ts"].dtype) == "datetime64[us, UTC]"
    assert data.push_log["muted"].dtype == bool
    opened = data.cardholders["opened_at"].dropna()
    assert opened.eq(opened.dt.normalize()).all()


def test_events_fall_inside_the_window_ending_at_the_end_date(small_world):
    start, end = small_world.dataset.time_range()
    assert end <= pd.Timestamp("2026-10-31T23:59:59Z")
    assert start >= pd.Timestamp("2026-10-31T23:59:59Z") - pd.Timedelta(days=90)
    assert small_world.truth.as_of == pd.Timestamp("2026-10-31T23:59:59Z")


def test_cardholder_mix(small_world):
    people = small_world.dataset.cardholders
    age = 2026 - people["birth_year"].dropna()
    assert 0.5 < age.between(22, 35).mean() < 0.75
    assert set(people["card_tier"].dropna()) == set(catalog.CARD_TIERS)
    limits = people.groupby("card_tier")["credit_limit"].median()
    assert limits["classic"] < limits["gold"] < limits["platinum"] < limits["diamond"]
    assert set(people["city_tier"].dropna()) == {1, 2, 3, 4, 5}
    zones = people["timezone"].value_counts(normalize=True, dropna=False)
    assert zones["Asia/Shanghai"] > 0.7
    assert {"Asia/Hong_Kong", "Asia/Urumqi"} <= set(zones.index)
    assert people["timezone"].isna().mean() > 0.03


def test_about_eight_percent_opted_out(small_world):
    opted_out = (~small_world.dataset.cardholders["push_opt_in"]).mean()
    assert 0.065 < opted_out < 0.095  # 8% +- 3.5 standard errors at n=4000


def test_mccs_are_four_digit_codes_from_the_world_table(small_world):
    tx = small_world.dataset.transactions
    assert tx["mcc"].str.fullmatch(r"\d{4}").all()
    assert set(tx["mcc"]) <= catalog.all_mccs()
    assert tx["mcc"].nunique() > 40
    airline = tx["mcc"].astype(int).between(3000, 3299) | tx["mcc"].eq("4511")
    assert airline.any()
    assert (tx["amount"] < 0).mean() < 0.02  # refunds exist but are rare
    assert (tx["amount"] < 0).any()
    assert set(tx["channel"].dropna()) == {"online", "offline"}


def test_amounts_are_plausible_by_category_and_tier(small_world):
    tx = small_world.dataset.transactions
    tiers = small_world.dataset.cardholders[["user_id", "card_tier"]]
    spend = tx[tx["amount"] > 0].merge(tiers, on="user_id")
    dining = spend["mcc"].isin(["5812", "5813", "5814"])
    luxury = spend["mcc"].isin(["5944", "5948", "5977"])
    assert 30 < spend.loc[dining, "amount"].median() < 250
    assert spend.loc[luxury, "amount"].median() > 10 * spend.loc[dining, "amount"].median()
    by_tier = spend.groupby("card_tier")["amount"].median()
    assert by_tier["classic"] < by_tier["platinum"] < by_tier["diamond"]


def test_overseas_spend_is_concentrated_in_travel(small_world):
    tx = small_world.dataset.transactions
    travel = tx["mcc"].isin(["4511", "7011", "4722"]) | tx["mcc"].astype(int).between(3000, 3999)
    overseas = tx["overseas"].fillna(False).astype(bool)
    assert overseas[travel].mean() > 3 * overseas[~travel].mean()


def test_menu_keys_are_the_contract_ones(small_world):
    assert set(small_world.dataset.menu_clicks["menu_key"]) == set(MENU_KEYS)


def test_ids_are_pseudonymous_and_unique(small_world):
    data = small_world.dataset
    id_columns = ((data.cardholders, "user_id"), (data.push_log, "push_id"), (data.content, "content_id"))
    for frame, column in id_columns:
        ids = frame[column]
        assert ids.is_unique
        assert not ids.str.fullmatch(r"\d{13,19}").any()
        assert not ids.str.fullmatch(r"\d+").any()


def test_content_has_kinds_tags_windows_and_tier_restrictions(small_world):
    content = small_world.dataset.content
    assert set(content["kind"]) == {"article", "promotion", "activity", "reminder"}
    reminders = content[content["kind"] == "reminder"]
    assert reminders["transactional"].all()
    assert not content.loc[content["kind"] != "reminder", "transactional"].any()
    tags = content["tags"].dropna().str.split("|").explode()
    assert set(tags) <= set(catalog.TOPICS) | set(catalog.CONTEXT_TAGS)
    assert content["card_tiers"].notna().any()
    assert content["valid_to"].notna().any() and content["valid_from"].notna().any()
    as_of = small_world.truth.as_of
    expired = content["valid_to"] < as_of
    valid_now = (content["valid_from"].isna() | (content["valid_from"] <= as_of)) & ~expired.fillna(False)
    assert expired.any()
    assert valid_now.sum() > 0.5 * len(content)


def test_push_log_opens_follow_sends(small_world):
    log = small_world.dataset.push_log
    opened = log.dropna(subset=["opened_ts"])
    assert (opened["opened_ts"] > opened["sent_ts"]).all()
    assert 0.03 < log["opened_ts"].notna().mean() < 0.4
    per_user_mutes = log.groupby("user_id")["muted"].sum()
    assert per_user_mutes.max() == 1  # nothing reaches a cardholder after they muted
    last = log.sort_values("sent_ts").groupby("user_id").tail(1)
    muted_users = set(log.loc[log["muted"], "user_id"])
    assert set(last.loc[last["muted"], "user_id"]) == muted_users


def test_opted_out_cardholders_get_only_transactional_pushes(small_world):
    data = small_world.dataset
    opted_out = set(data.cardholders.loc[~data.cardholders["push_opt_in"], "user_id"])
    kinds = data.push_log.merge(data.content[["content_id", "transactional"]], on="content_id")
    assert kinds.loc[kinds["user_id"].isin(opted_out), "transactional"].all()
    assert kinds.loc[~kinds["user_id"].isin(opted_out), "transactional"].mean() < 0.6


def test_non_readers_share(small_world):
    readers = small_world.dataset.article_reads["user_id"].nunique()
    share = 1 - readers / len(small_world.dataset.cardholders)
    assert 0.35 <= share <= 0.45
    assert share == pytest.approx(small_world.summary.never_read_share)


def test_reads_fall_inside_content_validity(small_world):
    data = small_world.dataset
    reads = data.article_reads.merge(data.content, on="content_id")
    assert (reads["valid_from"].isna() | (reads["ts"] >= reads["valid_from"])).all()
    assert (reads["valid_to"].isna() | (reads["ts"] <= reads["valid_to"])).all()
    assert (reads["kind"] != "reminder").all()
    assert np.isfinite(reads["dwell_seconds"].dropna()).all()
