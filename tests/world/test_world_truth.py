"""The hidden truth: where it is, how it lines up with the data, and what it implies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from worlds import TruthFileError, WorldTruth
from worlds.catalog import SPEND_CATEGORIES, TOPIC_INDEX
from worlds.truth import FORMAT_VERSION

pytestmark = pytest.mark.slow


def test_truth_is_outside_the_data_directory_and_aligned_with_ids(small_world):
    summary, data, truth = small_world.summary, small_world.dataset, small_world.truth
    assert summary.truth.parent == summary.out.parent
    assert summary.truth.name == "data.truth.npz"
    assert not any(path.suffix == ".npz" for path in summary.out.iterdir())
    assert list(truth.user_ids) == list(data.cardholders["user_id"])
    assert list(truth.content_ids) == list(data.content["content_id"])
    assert truth.open_prob.shape == (4_000, 80)
    assert truth.open_prob.dtype == np.float32
    assert ((truth.open_prob > 0) & (truth.open_prob < 1)).all()


def test_truth_round_trips_through_save_and_load(small_world, tmp_path):
    truth = small_world.truth
    truth.save(tmp_path / "copy.npz")
    again = WorldTruth.load(tmp_path / "copy.npz")
    np.testing.assert_array_equal(again.open_prob, truth.open_prob)
    np.testing.assert_array_equal(again.user_taste, truth.user_taste)
    assert again.params == truth.params and again.as_of == truth.as_of


def test_truth_can_be_memory_mapped(small_world):
    mapped = WorldTruth.load(small_world.summary.truth, mmap=True)
    assert isinstance(mapped.open_prob, np.memmap)
    np.testing.assert_array_equal(mapped.open_prob, small_world.truth.open_prob)


def test_loading_a_missing_or_broken_truth_file_says_what_to_do(tmp_path):
    with pytest.raises(TruthFileError, match="recsys synth"):
        WorldTruth.load(tmp_path / "absent.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(TruthFileError, match="unreadable"):
        WorldTruth.load(tmp_path / "broken.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(TruthFileError, match="unreadable"):
        WorldTruth.load(tmp_path / "empty.npz")
    np.savez(tmp_path / "partial.npz", format_version=np.int64(FORMAT_VERSION), user_ids=np.array(["u1"]))
    with pytest.raises(TruthFileError, match="incomplete"):
        WorldTruth.load(tmp_path / "partial.npz")


def test_response_model_reproduces_the_truth_matrix(small_world):
    truth = small_world.truth
    model = truth.response_model()
    users = np.arange(0, 4_000, 7)
    items = np.arange(80)
    rested = model.open_probability(users[:, None], items[None, :])
    np.testing.assert_allclose(rested, truth.open_prob[users], rtol=1e-5)
    np.testing.assert_array_equal(truth.user_index(truth.user_ids[users]), users)
    assert truth.content_index(["nope"])[0] == -1
    longer = truth.user_ids[0] + "0"  # an id the world lacks that shares a known id's prefix
    np.testing.assert_array_equal(truth.user_index([longer, truth.user_ids[3]]), [-1, 3])
    assert truth.user_index([]).shape == (0,)


def test_fatigue_lowers_opens_and_frequency_raises_mutes(small_world):
    model = small_world.truth.response_model()
    marketing = int(np.flatnonzero(~small_world.truth.item_transactional)[0])
    users = np.arange(100)
    recent = np.arange(1, 16)
    opens = model.open_probability(users[:, None], marketing, recent[None, :])
    mutes = model.mute_probability(users[:, None], recent[None, :], marketing)
    assert (np.diff(opens, axis=1) <= 0).all()
    assert (opens[:, -1] < opens[:, 0]).all()
    assert (np.diff(mutes, axis=1) > 0).all()
    np.testing.assert_allclose(opens[:, 0], small_world.truth.open_prob[users, marketing], rtol=1e-5)


def test_personalisation_matters(small_world):
    """Oracle top-1 among eligible marketing items beats the single most popular item by 2x."""
    data, truth = small_world.dataset, small_world.truth
    content = data.content
    as_of = truth.as_of
    valid = (content["valid_from"].isna() | (content["valid_from"] <= as_of)) & (
        content["valid_to"].isna() | (content["valid_to"] >= as_of)
    )
    eligible = (valid & ~content["transactional"] & content["card_tiers"].isna()).to_numpy()
    p = truth.open_prob[:, eligible]
    oracle = p.max(axis=1).mean()
    popular = p[:, p.mean(axis=0).argmax()].mean()
    assert oracle > 2.0 * popular
    best = p.argmax(axis=1)
    assert len(np.unique(best)) > 15
    assert np.bincount(best).max() < 0.25 * len(best)
    assert small_world.summary.oracle_top1 > 2.0 * small_world.summary.popular_top1


def test_spend_reveals_hidden_taste(small_world):
    """A cardholder's share of spend in a category tracks their hidden taste for it."""
    data, truth = small_world.dataset, small_world.truth
    categories = {code: c for c, cat in enumerate(SPEND_CATEGORIES) for code in cat.mccs}
    tx = data.transactions
    user = truth.user_index(tx["user_id"].to_numpy())
    cat = tx["mcc"].map(categories).to_numpy()
    counts = np.zeros((len(truth.user_ids), len(SPEND_CATEGORIES)))
    np.add.at(counts, (user, cat), 1)
    active = counts.sum(axis=1) >= 20
    share = counts[active] / counts[active].sum(axis=1, keepdims=True)
    taste = truth.user_taste[active][:, : len(SPEND_CATEGORIES)]
    correlations = [np.corrcoef(share[:, c], taste[:, c])[0, 1] for c in range(len(SPEND_CATEGORIES))]
    assert np.median(correlations) > 0.3


def test_menu_use_reveals_finance_taste(small_world):
    data, truth = small_world.dataset, small_world.truth
    clicks = data.menu_clicks
    for key, topic in (("points_mall", "points"), ("installment", "installment"), ("promotions", "cashback")):
        users = truth.user_index(clicks.loc[clicks["menu_key"] == key, "user_id"].unique())
        clicked = np.zeros(len(truth.user_ids), dtype=bool)
        clicked[users] = True
        taste = truth.user_taste[:, TOPIC_INDEX[topic]]
        assert taste[clicked].mean() > taste[~clicked].mean() + 0.2, key


def test_reads_reveal_hidden_taste(small_world):
    data, truth = small_world.dataset, small_world.truth
    reads = data.article_reads
    users = truth.user_index(reads["user_id"].to_numpy())
    items = truth.content_index(reads["content_id"].to_numpy())
    affinity = truth.response_model().affinity(users, items)
    random_items = np.random.default_rng(0).permutation(items)
    assert affinity.mean() > truth.response_model().affinity(users, random_items).mean() + 0.3


def _cycle_days(clicks: pd.DataFrame, truth: WorldTruth) -> np.ndarray:
    """Days since each click's cardholder's latest statement date (local dates approximated as UTC+8)."""
    local = clicks["ts"] + pd.Timedelta(hours=8)
    day = local.dt.day.to_numpy()
    previous_month_length = (local - pd.to_timedelta(day, unit="D")).dt.days_in_month.to_numpy()
    statement = truth.user_statement_day[truth.user_index(clicks["user_id"].to_numpy())]
    since = day - statement
    return np.where(since >= 0, since, since + previous_month_length)


def test_menu_clicks_concentrate_near_statement_and_due_days(small_world):
    clicks, truth = small_world.dataset.menu_clicks, small_world.truth
    bills = clicks[clicks["menu_key"] == "bill_query"]
    since = _cycle_days(bills, truth)
    assert np.mean(since <= 3) > 0.45  # 4 days of ~30 would be 13% without the cycle
    pay = clicks[clicks["menu_key"] == "repayment"]
    since = _cycle_days(pay, truth)
    assert np.mean((since >= 13) & (since <= 20)) > 0.6  # the week before the due date (day 20)
    assert np.mean(since > 20) < 0.15


def test_mutes_rise_with_push_frequency_in_the_log(small_world):
    """Mute rate by the number of marketing pushes a cardholder got in the 30 days up to each push."""
    data = small_world.dataset
    log = data.push_log.merge(data.content[["content_id", "transactional"]], on="content_id")
    log = log[~log["transactional"]].sort_values(["user_id", "sent_ts"]).reset_index(drop=True)
    window = pd.Timedelta(days=30)
    recent = np.zeros(len(log), dtype=int)
    for _, group in log.groupby("user_id"):
        times = group["sent_ts"].to_numpy()
        earlier = np.searchsorted(times, times - window, side="right")
        recent[group.index] = np.arange(1, len(times) + 1) - earlier
    muted = log["muted"].to_numpy()
    low, high = muted[recent <= 3].mean(), muted[recent >= 8].mean()
    assert (recent <= 3).sum() > 5_000 and (recent >= 8).sum() > 1_000
    assert high > 3 * low


def test_spend_and_menu_alone_personalise_cardholders_who_never_read(small_world):
    """Known answer: a crude taste estimate from spend shares and menu clicks, matched against item
    tags, beats the single most popular item for cardholders without a single article read."""
    data, truth = small_world.dataset, small_world.truth
    n_users = len(truth.user_ids)
    categories = {code: c for c, cat in enumerate(SPEND_CATEGORIES) for code in cat.mccs}
    counts = np.zeros((n_users, len(SPEND_CATEGORIES)))
    np.add.at(counts, (truth.user_index(data.transactions["user_id"].to_numpy()),
                       data.transactions["mcc"].map(categories).to_numpy()), 1)
    log_share = np.log((counts + 0.5) / (counts + 0.5).sum(axis=1, keepdims=True))
    estimate = np.zeros((n_users, len(truth.topics)))
    estimate[:, : len(SPEND_CATEGORIES)] = log_share - log_share.mean(axis=0)
    clicks = data.menu_clicks
    clicker = truth.user_index(clicks["user_id"].to_numpy())
    for key, topic in (("installment", "installment"), ("points_mall", "points"),
                       ("limit_increase", "credit_limit"), ("promotions", "cashback")):
        per_user = np.log1p(np.bincount(clicker[clicks["menu_key"].to_numpy() == key], minlength=n_users))
        estimate[:, TOPIC_INDEX[topic]] = per_user - per_user.mean()

    content = data.content
    tags = np.zeros((len(content), len(truth.topics)))
    for row, text in enumerate(content["tags"].fillna("")):
        known = [TOPIC_INDEX[tag] for tag in text.split("|") if tag in TOPIC_INDEX]
        tags[row, known] = 1.0 / max(len(known), 1)
    as_of = truth.as_of
    valid = (content["valid_from"].isna() | (content["valid_from"] <= as_of)) & (
        content["valid_to"].isna() | (content["valid_to"] >= as_of)
    )
    eligible = (valid & ~content["transactional"] & content["card_tiers"].isna()).to_numpy()

    log = data.push_log
    pushed = truth.content_index(log["content_id"].to_numpy())
    opens = np.bincount(pushed, weights=log["opened_ts"].notna().to_numpy(), minlength=len(content))
    popularity = (opens + 1) / (np.bincount(pushed, minlength=len(content)) + 20)

    never_read = np.ones(n_users, dtype=bool)
    never_read[truth.user_index(data.article_reads["user_id"].unique())] = False
    p = truth.open_prob[never_read][:, eligible]
    score = estimate[never_read] @ tags[eligible].T + np.log(popularity[eligible])[None, :]
    personalised = p[np.arange(len(p)), score.argmax(axis=1)].mean()
    most_popular = p[:, popularity[eligible].argmax()].mean()
    assert personalised > 1.3 * most_popular
