"""Feature values on a hand-made dataset, point-in-time cutoffs, and the builder's serialised state."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from features.builder import FeatureBuilder, FeatureStateError
from features.config import FeatureConfig, FeatureConfigError
from features.interactions import interaction_matrices, push_counts, seen_matrix
from features.loader import Dataset, load_dataset
from features.mcc import MccTable
from features.pipeline import EmptyDataError, build_training_matrices
from features.timecut import AsOfError, known_at, parse_as_of
from recsys.ids import IdIndex
from tests.features.handmade import with_pushes

AS_OF = pd.Timestamp("2024-06-30T00:00:00Z")


def row(builder: FeatureBuilder, matrix, i: int) -> dict[str, float]:
    return builder.user_feature_dicts(matrix)[i]


def test_mcc_table_maps_codes_to_categories_with_narrow_ranges_winning() -> None:
    table = MccTable.shipped()
    names = [table.categories[i] for i in table.categorise(pd.Series(
        ["5812", "4511", "3005", "7011", "5300", "5310", "5411", "5541", "0000", "x"]))]
    assert names == ["dining", "travel", "travel", "travel", "groceries", "shopping", "groceries",
                     "auto_fuel", "other", "other"]
    assert 15 <= len(table.categories) <= 21
    assert MccTable.from_json(json.loads(json.dumps(table.to_json()))) == table


def test_profile_spend_menu_and_topic_features_have_the_hand_computed_values(hand_made: Dataset) -> None:
    matrices, builder = build_training_matrices(hand_made, AS_OF)
    u1 = row(builder, matrices.user_features, 0)
    # profile: born 1990 -> 34 at 2024-06-30; card opened 2020-01-15 -> 4.5 years
    for name in ("gender=F", "age_band=25-34", "city_tier=1", "card_tier=gold", "tenure_band=3-5y"):
        assert u1[name] == 1.0
    # 30 days: dining 300 - 100 refund = 200, groceries 100 -> shares 2/3, 1/3
    assert u1["spend30d_share:dining"] == pytest.approx(2 / 3, rel=1e-6)
    assert u1["spend30d_share:groceries"] == pytest.approx(1 / 3, rel=1e-6)
    # 90 days adds the 400 dining on 2024-05-01 -> 600 / 700
    assert u1["spend90d_share:dining"] == pytest.approx(6 / 7, rel=1e-6)
    assert u1["spend_recency=0-7d"] == 1.0
    assert u1["online_share"] == pytest.approx(1 / 4)
    assert "overseas_share" not in u1
    # two bill_query clicks in 90 days (log1p(2)/log1p(20)), one within 7 days
    assert u1["menu90d_level:bill_query"] == pytest.approx(np.log1p(2) / np.log1p(20), rel=1e-6)
    assert u1["menu7d:bill_query"] == 1.0
    assert u1["topic:dining"] == pytest.approx(1.0)
    assert "reads:none" not in u1

    u2 = row(builder, matrices.user_features, 1)
    assert u2["spend30d_share:travel"] == 1.0 and u2["overseas_share"] == 1.0
    assert u2["spend_recency=8-30d"] == 1.0 and u2["menu_recency=90d+"] == 1.0
    assert u2["reads:none"] == 1.0 and u2["tenure_band=<1y"] == 1.0

    u3 = row(builder, matrices.user_features, 2)
    assert u3 == {"gender=unknown": 1.0, "age_band=unknown": 1.0, "city_tier=unknown": 1.0,
                  "card_tier=classic": 1.0, "tenure_band=unknown": 1.0, "credit_limit_band=unknown": 1.0,
                  "spend30d:none": 1.0, "spend90d:none": 1.0, "spend_recency=never": 1.0,
                  "menu_recency=never": 1.0, "reads:none": 1.0, "opens:none": 1.0}
    assert list(matrices.user_segments) == ["gold|25-34", "platinum|45-54", "classic|unknown"]


def test_raw_mcc_shares_open_topics_titles_and_family_weights(hand_made: Dataset) -> None:
    config = FeatureConfig(mcc_min_users=1, title_min_items=2, menu_weight=0.0, spend_mcc_weight=2.0,
                           item_title_weight=0.5)
    matrices, builder = build_training_matrices(hand_made, AS_OF, config)
    u1, u2 = (row(builder, matrices.user_features, i) for i in (0, 1))
    # 90 days, raw codes: 5812 300 + 400 - 100 = 600, 5411 100 -> 6/7, 1/7; times the family weight 2
    assert u1["mcc90d_share:5812"] == pytest.approx(2 * 6 / 7, rel=1e-6)
    assert u1["mcc90d_share:5411"] == pytest.approx(2 * 1 / 7, rel=1e-6)
    assert u2["mcc90d_share:4511"] == pytest.approx(2 * 2 / 3, rel=1e-6)
    # u1 opened the dining|weekend push: the taste of a cardholder who does not read shows in opens
    assert u1["open_topic:dining"] == pytest.approx(0.5) and u1["open_topic:weekend"] == pytest.approx(0.5)
    assert u2["opens:none"] == 1.0 and not any(name.startswith("open_topic:") for name in u2)
    # menu weight 0 leaves the family out of the input entirely
    assert not any(name.startswith("menu") for row_ in (u1, u2) for name in row_)
    names = builder.item_feature_names
    dine2 = matrices.item_features[matrices.items.index_of(["c_dine2"])[0]].toarray().ravel()
    assert {names[j]: float(dine2[j]) for j in np.flatnonzero(dine2)}["title:dining"] == 0.5
    assert [name for name in names if name.startswith("title:")] == ["title:dining"]
    with pytest.raises(FeatureConfigError, match="spend_mcc_weight"):
        FeatureConfig(spend_mcc_weight=-1.0)


def test_menu_click_shares_leave_out_how_active_a_cardholder_is(hand_made: Dataset) -> None:
    extra = pd.DataFrame({"user_id": ["u1"], "ts": [pd.Timestamp("2024-06-20T09:00:00Z")],
                          "menu_key": ["repayment"]})
    clicks = pd.concat([hand_made.menu_clicks, extra.astype(hand_made.menu_clicks.dtypes)], ignore_index=True)
    dataset = dataclasses.replace(hand_made, menu_clicks=clicks)
    matrices, builder = build_training_matrices(dataset, AS_OF, FeatureConfig(menu_share_weight=2.0))
    u1, u2 = (row(builder, matrices.user_features, i) for i in (0, 1))
    # 90 days: bill_query twice, repayment once -> 2/3, 1/3, times the family weight 2
    assert u1["clicks90d_share:bill_query"] == pytest.approx(2 * 2 / 3, rel=1e-6)
    assert u1["clicks90d_share:repayment"] == pytest.approx(2 * 1 / 3, rel=1e-6)
    # u2's only click is older than 90 days: no shares at all
    assert not any(name.startswith("clicks") for name in u2)
    off, off_builder = build_training_matrices(dataset, AS_OF, FeatureConfig(menu_share_weight=0.0))
    assert not any(name.startswith("clicks") for name in row(off_builder, off.user_features, 0))


def test_item_features_encode_kind_tags_tiers_and_transactional(hand_made: Dataset) -> None:
    matrices, builder = build_training_matrices(hand_made, AS_OF)
    names = builder.item_feature_names
    dense = matrices.item_features.toarray()

    def item(content_id: str) -> dict[str, float]:
        values = dense[matrices.items.index_of([content_id])[0]]
        return {names[j]: float(values[j]) for j in np.flatnonzero(values)}

    assert item("c_dine") == {"kind=promotion": 1.0, "tag:dining": 0.5, "tag:weekend": 0.5, "tiers=all": 1.0}
    assert item("c_plat") == {"kind=activity": 1.0, "tag:travel": 0.5, "tag:lounge": 0.5,
                              "tier:platinum": 0.5, "tier:diamond": 0.5}
    assert item("c_bill") == {"kind=reminder": 1.0, "tag:none": 1.0, "tiers=all": 1.0, "transactional": 1.0}


def test_interactions_decay_with_time_and_unopened_pushes_are_weak_negatives(hand_made: Dataset) -> None:
    config = FeatureConfig(half_life_days=30.0)
    matrices, _ = build_training_matrices(hand_made, AS_OF, config)
    positives = matrices.interactions.toarray()
    users, items = matrices.users, matrices.items

    def at(matrix, user, content):
        return matrix[users.index_of([user])[0], items.index_of([content])[0]]

    open_age = (AS_OF - pd.Timestamp("2024-06-01T11:00:00Z")) / pd.Timedelta(days=1)
    assert at(positives, "u1", "c_dine") == pytest.approx(0.5 ** (open_age / 30), rel=1e-5)
    read_age = (AS_OF - pd.Timestamp("2024-06-20T20:00:00Z")) / pd.Timedelta(days=1)
    # dwell 120 s >= the 60 s reference: full weight
    assert at(positives, "u1", "c_dine2") == pytest.approx(0.5 ** (read_age / 30), rel=1e-5)
    old_age = (AS_OF - pd.Timestamp("2024-02-01T20:00:00Z")) / pd.Timedelta(days=1)
    assert at(positives, "u1", "c_old") == pytest.approx(0.5 * 0.5 ** (old_age / 30), rel=1e-5)  # 30s of 60s
    assert positives[users.index_of(["u2", "u3"])].sum() == 0
    negatives = matrices.negatives.toarray()
    # p2 (10 June, never opened) is a negative; p3 was sent one day ago, inside the grace period
    assert np.count_nonzero(negatives) == 1 and at(negatives, "u2", "c_travel") > 0

    seen = seen_matrix(hand_made, AS_OF, users, items).toarray()
    assert seen.sum() == 5 and at(seen, "u2", "c_dine")


def test_events_after_the_cutoff_change_nothing(tmp_path, hand_made_tables, write_tables) -> None:
    tables = hand_made_tables
    base = load_dataset(write_tables(tmp_path / "base", tables))
    later = {name: frame.copy() for name, frame in tables.items()}
    after = "2024-07-02T10:00:00Z"
    later["transactions"].loc[len(later["transactions"])] = ["u3", after, 9999.0, "4511", "online", "true"]
    later["menu_clicks"].loc[len(later["menu_clicks"])] = ["u3", after, "installment"]
    later["article_reads"].loc[len(later["article_reads"])] = ["u2", after, "c_travel", 300.0]
    later["push_log"].loc[len(later["push_log"])] = ["p9", "u3", "c_dine", after, after, ""]
    # a push sent before the cutoff but opened after it is still unopened at the cutoff
    later["push_log"].loc[2, "opened_ts"] = after
    leaked = load_dataset(write_tables(tmp_path / "later", later))

    first, builder_a = build_training_matrices(base, AS_OF)
    second, builder_b = build_training_matrices(leaked, AS_OF)
    assert builder_a.to_dict() == builder_b.to_dict()
    for name in ("interactions", "user_features", "item_features"):
        assert (getattr(first, name) != getattr(second, name)).nnz == 0, name
    assert (first.negatives != second.negatives).nnz == 0
    assert list(first.user_segments) == list(second.user_segments)
    # and the later events do count once the cutoff moves past them
    moved, _ = build_training_matrices(leaked, pd.Timestamp("2024-07-03T00:00:00Z"), builder=builder_a)
    assert (moved.user_features != first.user_features).nnz > 0


def test_state_round_trips_through_json_and_serves_unseen_cardholders(hand_made: Dataset) -> None:
    matrices, builder = build_training_matrices(hand_made, AS_OF)
    restored = FeatureBuilder.from_dict(json.loads(json.dumps(builder.to_dict())))
    assert restored.user_feature_names == builder.user_feature_names
    again = restored.transform_users(hand_made, AS_OF, matrices.users.ids)
    assert (again != matrices.user_features).nnz == 0
    # a cardholder unknown to the data gets the unknown profile and no activity features
    fresh = restored.transform_users(hand_made, AS_OF, ["new-user"])
    assert row(restored, fresh, 0)["card_tier=unknown"] == 1.0
    # the serving form: feature dicts encode back to the same rows; unknown names are ignored or refused
    dicts = builder.user_feature_dicts(matrices.user_features)
    assert (restored.encode_user_dicts(dicts) != matrices.user_features).nnz == 0
    assert restored.encode_user_dicts([{"no-such-feature": 1.0}]).nnz == 0
    with pytest.raises(FeatureStateError, match="no-such-feature"):
        restored.encode_user_dicts([{"no-such-feature": 1.0}], strict=True)
    with pytest.raises(FeatureStateError, match="format"):
        FeatureBuilder.from_dict({**builder.to_dict(), "format": 99})


def test_bad_settings_and_as_of_are_refused_with_the_reason(hand_made: Dataset) -> None:
    with pytest.raises(FeatureConfigError, match="half_life_days"):
        FeatureConfig(half_life_days=0)
    with pytest.raises(FeatureConfigError, match="unknown feature setting"):
        FeatureConfig.from_dict({"half_lyfe_days": 3})
    with pytest.raises(AsOfError, match="outside the data"):
        parse_as_of("2001-01-01", hand_made)
    with pytest.raises(AsOfError, match="outside the data"):
        parse_as_of("2024-07-07T10:00:01Z", hand_made)  # last event 2024-06-29T10:00Z + 7 days grace
    assert parse_as_of("2024-07-01", hand_made) == pd.Timestamp("2024-07-01T00:00:00Z")
    with pytest.raises(AsOfError, match="not a date"):
        parse_as_of("yesterday-ish", hand_made)
    assert parse_as_of(None, hand_made) == pd.Timestamp("2024-06-29T10:00:00Z")
    with pytest.raises(EmptyDataError, match="no article read or opened push"):
        build_training_matrices(hand_made, pd.Timestamp("2024-01-02T00:00:00Z"))
    empty = dataclasses.replace(hand_made, content=hand_made.content.iloc[:0])
    with pytest.raises(EmptyDataError, match="content table has no rows"):
        build_training_matrices(empty, AS_OF)


def test_known_at_keeps_only_the_past(hand_made: Dataset) -> None:
    cut = pd.Timestamp("2024-06-01T10:30:00Z")
    past = known_at(hand_made, cut)
    assert (past.transactions["ts"] <= cut).all() and len(past.transactions) == 2
    assert list(past.push_log["push_id"]) == ["p1"] and past.push_log["opened_ts"].isna().all()
    users, items = IdIndex(hand_made.cardholders["user_id"]), IdIndex(hand_made.content["content_id"])
    positives, negatives = interaction_matrices(past, cut, users, items, FeatureConfig())
    assert positives.nnz == 1 and negatives is None  # only the February read of c_old


def test_purchase_count_shares_per_mcc_and_item_exposure_days(hand_made: Dataset) -> None:
    config = FeatureConfig(mcc_min_users=1, spend_mcc_weight=1.0, spend_visits_weight=1.0)
    matrices, builder = build_training_matrices(hand_made, AS_OF, config)
    u1 = row(builder, matrices.user_features, 0)
    # 90 days: two purchases at 5812 (the refund is no purchase), one at 5411, whatever the amounts
    assert u1["visits90d_share:5812"] == pytest.approx(2 / 3, rel=1e-6)
    assert u1["visits90d_share:5411"] == pytest.approx(1 / 3, rel=1e-6)
    assert u1["mcc90d_share:5812"] == pytest.approx(6 / 7, rel=1e-6)
    # on offer from the first read or push (2024-02-01 20:00) or its valid_from, to its valid_to or as-of
    days = dict(zip(matrices.items.ids, matrices.item_exposure_days, strict=True))
    first = pd.Timestamp("2024-02-01T20:00:00Z")
    assert days["c_dine"] == pytest.approx((AS_OF - first) / pd.Timedelta(days=1))
    assert days["c_travel"] == days["c_dine"]
    expired = pd.Timestamp("2024-03-01T00:00:00Z")
    assert days["c_old"] == pytest.approx((expired - first) / pd.Timedelta(days=1))
    off = FeatureConfig(mcc_min_users=1, spend_visits_weight=0.0)
    matrices, builder = build_training_matrices(hand_made, AS_OF, off)
    assert not any(name.startswith("visits") for name in row(builder, matrices.user_features, 0))


def test_push_counts_per_item_leave_out_young_pushes_and_notices(hand_made: Dataset) -> None:
    dataset = with_pushes(hand_made, [
        ("p4", "u1", "c_bill", "2024-06-02T10:00:00Z", "2024-06-02T11:00:00Z"),
        ("p5", "u2", "c_travel", "2024-06-27T10:00:00Z", "2024-06-29T23:00:00Z"),
        # sent 15 hours before the as-of time and already opened: as young as p3, so not counted either
        # (counting the young opens without the young unopened would put a new campaign near a rate of 1)
        ("p6", "u1", "c_travel", "2024-06-29T09:00:00Z", "2024-06-29T09:30:00Z"),
    ])
    matrices, _ = build_training_matrices(dataset, AS_OF)
    sends = dict(zip(matrices.items.ids, matrices.item_sends, strict=True))
    opens = dict(zip(matrices.items.ids, matrices.item_opens, strict=True))
    # c_dine: p1 sent and opened; p3 sent 14 hours before the as-of time and not opened yet: not counted
    # c_travel: p2 ignored, p5 opened, p6 too young; c_bill: a statement notice, never ranked, never counted
    assert (sends["c_dine"], opens["c_dine"]) == (1.0, 1.0)
    assert (sends["c_travel"], opens["c_travel"]) == (2.0, 1.0)
    assert sends["c_bill"] == opens["c_bill"] == 0.0 and sends["c_plat"] == 0.0
    # the same counts before p5 was opened: sent 3 days before, so an ignored push by then
    early = pd.Timestamp("2024-06-29T12:00:00Z")
    sends, opens = push_counts(dataset, early, matrices.items, FeatureConfig())
    index = matrices.items.index_of(["c_travel", "c_dine"])
    assert sends[index].tolist() == [2.0, 1.0] and opens[index].tolist() == [0.0, 1.0]


def test_first_positive_days_and_offer_days(hand_made: Dataset) -> None:
    # u1 read c_dine2 on 2024-06-20; an opened push of it later does not move its first day
    opened = ("p4", "u1", "c_dine2", "2024-06-25T10:00:00Z", "2024-06-25T11:00:00Z")
    dataset = with_pushes(hand_made, [opened])
    matrices, _ = build_training_matrices(dataset, AS_OF)
    days = matrices.positive_days.tocsr()
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    u1 = matrices.users.index_of(["u1"])[0]
    dine2, dine, old = matrices.items.index_of(["c_dine2", "c_dine", "c_old"])
    day = pd.Timedelta(days=1)
    assert days[u1, dine2] == (pd.Timestamp("2024-06-20T20:00:00Z") - epoch) / day
    assert days[u1, dine] == (pd.Timestamp("2024-06-01T11:00:00Z") - epoch) / day
    assert days[u1, old] == (pd.Timestamp("2024-02-01T20:00:00Z") - epoch) / day
    assert days.nnz == matrices.interactions_csr().nnz
    offer = dict(zip(matrices.items.ids, matrices.item_offer_days.tolist(), strict=True))
    assert offer["c_dine"] == [(pd.Timestamp("2024-01-01T00:00:00Z") - epoch) / day,
                               (pd.Timestamp("2024-12-31T00:00:00Z") - epoch) / day]
    assert offer["c_travel"] == [-np.inf, np.inf]
    assert np.isnan(offer["c_bill"]).all()  # a transactional notice is never on offer
