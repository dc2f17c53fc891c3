"""The wide part fitted as a choice among the items on offer (`recsys/models/choice.py`)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.sparse as sp

import recsys.models.choice as choice
import recsys.models.lightfm_hybrid as hybrid
from recsys.matrices import TrainingMatrices
from recsys.models.base import ModelError
from recsys.models.choice import fit_choice, fit_choice_factors
from recsys.models.lightfm_hybrid import LightFMHybrid
from recsys.models.wide import fit_ridge


def two_windows(n: int = 400, seed: int = 0) -> tuple[np.ndarray, sp.coo_matrix, np.ndarray]:
    """(features [n, 3], first-positive days [n, 4], offer days [4, 2]): items 0 and 1 on offer on days
    0-10, items 2 and 3 on days 10-20 (one day shared). Column 0 decides the choice (+1 takes the even
    item, -1 the odd one); column 1 says whether a cardholder is active early (one event, days 0-9) or
    late (one event, days 11-20) and decides nothing within a window; column 2 is noise."""
    rng = np.random.default_rng(seed)
    taste = rng.choice([-1.0, 1.0], n)
    early = rng.random(n) < 0.5
    features = np.column_stack([taste, early.astype(float), rng.normal(size=n)])
    item = np.where(early, 0, 2) + (taste < 0)
    day = np.where(early, rng.uniform(0, 9, n), rng.uniform(11, 20, n))
    days = sp.coo_matrix((day, (np.arange(n), item)), shape=(n, 4))
    offer = np.array([[0.0, 10.0], [0.0, 10.0], [10.0, 20.0], [10.0, 20.0]])
    return features, days, offer


def test_the_deciding_feature_takes_the_slopes_and_activity_none() -> None:
    features, days, offer = two_windows()
    standard = (features - features.mean(axis=0)) / features.std(axis=0)
    offered = (offer[:, 0] <= days.data[:, None]) & (days.data[:, None] <= offer[:, 1])
    _, weights = fit_choice(standard, days.row, days.col, offered, l2=0.01)
    # the even items rise with column 0, the odd ones fall, by the same amount within each window
    assert weights[0, 0] > 0.5 and weights[0, 2] > 0.5 and weights[0, 1] < -0.5 and weights[0, 3] < -0.5
    assert abs((weights[0, 0] - weights[0, 1]) - (weights[0, 2] - weights[0, 3])) < 0.2
    # being active early decides nothing among the items then on offer: no slope on column 1 within a
    # window, where a per-item ridge of 0/1 positives gives the early items a large one
    assert abs(weights[1, 0] - weights[1, 1]) < 0.1 and abs(weights[1, 2] - weights[1, 3]) < 0.1
    assert np.abs(weights[1]).max() < 0.1 and np.abs(weights[2]).max() < 0.15
    ridge = fit_ridge(sp.csr_matrix(features[:, 1:2]), days, 1e-3, max_rank=4)
    early_slopes = (ridge.projection @ ridge.items.T).ravel()
    assert early_slopes[0] > 0.3 and early_slopes[2] < -0.3


def test_choice_factors_score_the_centred_slopes_on_raw_features() -> None:
    features, days, offer = two_windows()
    keep = np.array([True, True, False])  # column 2 left out (as reading history is)
    factors = fit_choice_factors(sp.csr_matrix(features), days, offer, 0.01, max_rank=4, keep=keep)
    scores = factors.user_block(sp.csr_matrix(features)) @ factors.items.T + factors.offset
    assert np.abs(scores.mean(axis=0)).max() < 1e-4  # centred per item over the fitted rows
    assert np.abs(factors.projection[2]).max() == 0.0  # a left-out column gets no slope
    taste = features[:, 0] > 0
    assert scores[taste, 0].mean() > scores[taste, 1].mean()
    assert scores[~taste, 3].mean() > scores[~taste, 2].mean()
    # the same scores as the logit's slopes on the standardised kept columns, centred
    standard = (features[:, :2] - features[:, :2].mean(axis=0)) / features[:, :2].std(axis=0)
    offered = (offer[:, 0] <= days.data[:, None]) & (days.data[:, None] <= offer[:, 1])
    _, weights = fit_choice(standard, days.row, days.col, offered, l2=0.01)
    np.testing.assert_allclose(scores, standard @ weights, atol=1e-3)


def test_positives_of_an_item_never_on_offer_are_left_out() -> None:
    features, days, offer = two_windows()
    offer = np.vstack([offer, [np.nan, np.nan]])  # item 4: a transactional notice
    extra = sp.coo_matrix((np.full(50, 5.0), (np.arange(50), np.full(50, 4))), shape=(features.shape[0], 5))
    with_notice = fit_choice_factors(sp.csr_matrix(features), sp.coo_matrix(sp.hstack([days, sp.csr_matrix(
        (features.shape[0], 1))]) + extra), offer, 0.01, max_rank=5)
    without = fit_choice_factors(sp.csr_matrix(features), days, offer[:4], 0.01, max_rank=4)
    scores = with_notice.user_block(sp.csr_matrix(features)) @ with_notice.items.T + with_notice.offset
    reference = without.user_block(sp.csr_matrix(features)) @ without.items.T + without.offset
    np.testing.assert_allclose(scores[:, :4], reference, atol=1e-4)
    assert np.abs(scores[:, 4]).max() < 1e-6


def hybrid_data(with_days: bool) -> TrainingMatrices:
    features, days, offer = two_windows(200)
    interactions = sp.coo_matrix((np.ones(days.nnz, np.float32), (days.row, days.col)), shape=days.shape)
    data = TrainingMatrices.from_interactions(interactions, user_features=sp.csr_matrix(features),
                                              user_feature_names=("taste", "early", "noise"))
    if with_days:
        from dataclasses import replace

        data = replace(data, positive_days=days, item_offer_days=offer)
    return data


def test_the_model_fits_the_choice_when_asked_and_the_ridge_without_days(caplog) -> None:
    params = {"no_components": 4, "epochs": 2, "num_threads": 1, "wide_weight": 1.0, "user_identity": False}
    ridge = LightFMHybrid(**params).fit(hybrid_data(True))
    choice = LightFMHybrid(**params, wide_fit="choice", wide_choice_l2=0.01).fit(hybrid_data(True))
    slopes = choice._ridge.projection @ choice._ridge.items.T
    assert slopes[0, 0] > 0 > slopes[0, 1] and np.abs(slopes[1]).max() < 0.2
    assert not np.allclose(slopes, ridge._ridge.projection @ ridge._ridge.items.T, atol=1e-3)
    assert choice.params()["wide_fit"] == "choice" and choice.params()["wide_choice_l2"] == 0.01
    with caplog.at_level(logging.WARNING):
        fallback = LightFMHybrid(**params, wide_fit="choice").fit(hybrid_data(False))
    assert "fitting the ridge" in caplog.text
    np.testing.assert_allclose(fallback._ridge.projection @ fallback._ridge.items.T,
                               ridge._ridge.projection @ ridge._ridge.items.T, atol=1e-5)



def test_the_choice_is_fitted_on_a_seeded_sample_of_at_most_max_users_cardholders(monkeypatch) -> None:
    features, days, offer = two_windows()
    fitted_users: list[int] = []

    def counting(standard, users, items, offered, l2, *args, **kwargs):
        fitted_users.append(np.unique(users).size)
        return fit_choice(standard, users, items, offered, l2, *args, **kwargs)

    monkeypatch.setattr(choice, "fit_choice", counting)

    def slopes(cap: int | None, seed: int) -> np.ndarray:
        factors = fit_choice_factors(sp.csr_matrix(features), days, offer, 0.01, 4, max_users=cap, seed=seed)
        return factors.projection @ factors.items.T

    whole, under, sample, other, again = slopes(None, 0), slopes(400, 0), slopes(100, 0), slopes(100, 1), \
        slopes(100, 0)
    assert fitted_users == [400, 400, 100, 100, 100]
    # under the cap the fit is the one without it, to the bit; over it the sample is the seed's
    np.testing.assert_array_equal(under, whole)
    np.testing.assert_array_equal(again, sample)
    assert not np.allclose(sample, whole, atol=1e-3)
    assert not np.allclose(sample, other, atol=1e-3)
    # a sample still finds the deciding feature
    assert sample[0, 0] > 0 > sample[0, 1]


def test_the_model_caps_the_choice_fit_with_its_seed(monkeypatch) -> None:
    calls: list[tuple] = []

    def spy(*args, **kwargs):
        calls.append(args[6:8])
        return fit_choice_factors(*args, **kwargs)

    monkeypatch.setattr(hybrid, "fit_choice_factors", spy)
    params = {"no_components": 4, "epochs": 2, "num_threads": 1, "wide_weight": 1.0, "user_identity": False,
              "wide_fit": "choice", "random_state": 3}
    LightFMHybrid(**params, wide_choice_max_users=50).fit(hybrid_data(True))
    LightFMHybrid(**params).fit(hybrid_data(True))
    assert calls == [(50, 3), (20_000, 3)]


def tagged_windows(n: int = 400) -> tuple[np.ndarray, sp.coo_matrix, np.ndarray, np.ndarray]:
    """`two_windows` plus item 4, on offer in the second window beside items 2 and 3 but never chosen,
    and item features [5, 2]: tag 0 on the even items (0, 2, 4), tag 1 on the odd ones."""
    features, days, offer = two_windows(n)
    days = sp.coo_matrix((days.data, (days.row, days.col)), shape=(n, 5))
    offer = np.vstack([offer, [10.0, 20.0]])
    tags = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    return features, days, offer, tags


def test_a_low_rank_term_gives_an_item_its_tags_slopes() -> None:
    features, days, offer, tags = tagged_windows()
    standard = (features - features.mean(axis=0)) / features.std(axis=0)
    offered = (offer[:, 0] <= days.data[:, None]) & (days.data[:, None] <= offer[:, 1])
    bias, weights = fit_choice(standard, days.row, days.col, offered, l2=0.01, rank=1, item_features=tags,
                               rank_l2=0.001)
    # the deciding column raises every even item and lowers every odd one, activity decides nothing
    assert weights[0, [0, 2]].min() > 0.5 and weights[0, [1, 3]].max() < -0.5
    assert np.abs(weights[1:]).max() < 0.15
    # item 4 was never chosen: its level is the lowest, but through its tag it gets most of item 2's
    # slope, where the full-rank slopes alone have nothing to go on and stay near 0
    assert bias[4] < bias[[0, 1, 2, 3]].min()
    assert weights[0, 4] > 0.5 * weights[0, 2] > 0
    _, full = fit_choice(standard, days.row, days.col, offered, l2=0.01)
    assert abs(full[0, 4]) < 0.25 * weights[0, 4]
    # without the term the fit is the full-rank one
    _, none = fit_choice(standard, days.row, days.col, offered, l2=0.01, rank=0, item_features=tags)
    np.testing.assert_array_equal(none, full)


def test_the_low_rank_term_is_seeded_and_needs_item_features() -> None:
    features, days, offer, tags = tagged_windows(200)
    fit = [fit_choice_factors(sp.csr_matrix(features), days, offer, 0.01, max_rank=5, seed=seed, rank=2,
                              item_features=sp.csr_matrix(tags), rank_l2=0.001) for seed in (0, 0, 1)]
    slopes = [factors.projection @ factors.items.T for factors in fit]
    np.testing.assert_array_equal(slopes[0], slopes[1])
    assert not np.array_equal(slopes[0], slopes[2])
    with pytest.raises(ValueError, match="item features"):
        fit_choice_factors(sp.csr_matrix(features), days, offer, 0.01, max_rank=5, rank=2)


def test_the_low_rank_term_reads_item_features_as_weights_or_presence() -> None:
    # item 4 also carries a third tag, so the builder's weights (a tag's share of the item's tags) give
    # its even tag 0.5 where the other even items have 1
    features, days, offer, tags = tagged_windows(200)
    present = np.column_stack([tags, [0.0, 0.0, 0.0, 0.0, 1.0]])
    shares = present / present.sum(axis=1, keepdims=True)

    def slopes(item_features: np.ndarray, presence: bool) -> np.ndarray:
        factors = fit_choice_factors(sp.csr_matrix(features), days, offer, 0.01, max_rank=5, rank=1,
                                     item_features=sp.csr_matrix(item_features), rank_l2=0.001,
                                     item_presence=presence)
        return factors.projection @ factors.items.T

    # read as presence, the weights do not matter: item 4 gets most of its even peers' taste slope
    by_presence = slopes(shares, True)
    np.testing.assert_array_equal(by_presence, slopes(present, True))
    assert by_presence[0, 4] > 0.5 * by_presence[0, 2] > 0
    # read as weights, its tag counts half under the same penalty, and so does its slope
    by_weights = slopes(shares, False)
    assert 0 < by_weights[0, 4] < 0.75 * by_presence[0, 4]


def test_the_model_adds_the_low_rank_term_through_its_item_features() -> None:
    features, days, offer, tags = tagged_windows(200)
    interactions = sp.coo_matrix((np.ones(days.nnz, np.float32), (days.row, days.col)), shape=days.shape)
    data = TrainingMatrices.from_interactions(interactions, user_features=sp.csr_matrix(features),
                                              user_feature_names=("taste", "early", "noise"),
                                              item_features=sp.csr_matrix(tags),
                                              item_feature_names=("tag:even", "tag:odd"))
    from dataclasses import replace

    data = replace(data, positive_days=days, item_offer_days=offer)
    params = {"no_components": 4, "epochs": 2, "num_threads": 1, "wide_weight": 1.0, "user_identity": False,
              "wide_fit": "choice", "wide_choice_l2": 0.01}
    low = LightFMHybrid(**params, wide_choice_rank=1, wide_choice_rank_l2=0.001).fit(data)
    assert low.params()["wide_choice_rank"] == 1 and low.params()["wide_choice_rank_l2"] == 0.001
    slopes = low._ridge.projection @ low._ridge.items.T
    assert slopes[0, 4] > 0.5 * slopes[0, 2] > 0
    full = LightFMHybrid(**params).fit(data)
    assert abs((full._ridge.projection @ full._ridge.items.T)[0, 4]) < 0.25 * slopes[0, 4]
    for bad in ({"wide_choice_rank": -1}, {"wide_choice_rank_l2": -0.1}, {"wide_choice_items": "tfidf"}):
        with pytest.raises(ModelError, match=next(iter(bad))):
            LightFMHybrid(**params, **bad)


def test_the_model_reads_item_features_as_it_is_set_and_refits_when_the_reading_changes() -> None:
    from dataclasses import replace

    features, days, offer, tags = tagged_windows(200)
    shares = np.column_stack([tags, [0.0, 0.0, 0.0, 0.0, 1.0]])
    shares /= shares.sum(axis=1, keepdims=True)
    interactions = sp.coo_matrix((np.ones(days.nnz, np.float32), (days.row, days.col)), shape=days.shape)
    data = replace(TrainingMatrices.from_interactions(
        interactions, user_features=sp.csr_matrix(features), user_feature_names=("taste", "early", "noise"),
        item_features=sp.csr_matrix(shares), item_feature_names=("tag:even", "tag:odd", "tag:new")),
        positive_days=days, item_offer_days=offer)
    params = {"no_components": 4, "epochs": 2, "num_threads": 1, "wide_weight": 1.0, "user_identity": False,
              "wide_fit": "choice", "wide_choice_l2": 0.01, "wide_choice_rank": 1,
              "wide_choice_rank_l2": 0.001}

    def slopes(model: LightFMHybrid) -> np.ndarray:
        return model._ridge.projection @ model._ridge.items.T

    presence = LightFMHybrid(**params, wide_choice_items="presence").fit(data)
    assert presence.params()["wide_choice_items"] == "presence" and presence.reads_item_features
    weights = LightFMHybrid(**params).fit(data)
    assert weights.wide_choice_items == "weights"
    assert slopes(weights)[0, 4] < 0.75 * slopes(presence)[0, 4]
    # switched on the fitted model, the wide part is fitted again with the new reading
    weights.set_wide_items("presence")
    weights.set_wide(1.0, data)
    np.testing.assert_allclose(slopes(weights), slopes(presence), atol=1e-6)
    with pytest.raises(ModelError, match="wide_choice_items"):
        weights.set_wide_items("tfidf")
    assert not LightFMHybrid(**{**params, "wide_fit": "ridge"}).reads_item_features
