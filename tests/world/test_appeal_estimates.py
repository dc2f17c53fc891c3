"""`benchmarks/appeal_estimates.py`: the tag prior, its empirical-Bayes shrinkage and the age-fair
exposure, on cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.appeal_estimates import (
    age_fair_exposure,
    head_share,
    pseudo_days,
    ranked_alone,
    shrunk_rate,
    tag_prior_rate,
)

# four long-running items of tag A (10 cardholders a day) and B (2 a day), then a new item of each
TAGS = sp.csr_matrix(np.array([[1, 0]] * 2 + [[0, 1]] * 2 + [[1, 0], [0, 1]], dtype=np.float64))
DAYS = np.array([100.0, 50.0, 100.0, 50.0, 1.0, 1.0])
EVENTS = np.array([1000.0, 500.0, 200.0, 100.0, 0.0, 0.0])
FIT = DAYS >= 14


def test_the_tag_prior_recovers_each_tags_rate_and_gives_it_to_a_new_item_with_no_events() -> None:
    prior = tag_prior_rate(TAGS, EVENTS, DAYS, FIT, l2=1e-6)
    np.testing.assert_allclose(prior, [10, 10, 2, 2, 10, 2], rtol=1e-3)


def test_a_brand_new_item_gets_its_tags_prior_and_a_long_running_one_keeps_about_its_own_rate() -> None:
    prior = np.array([10.0, 2.0])
    np.testing.assert_allclose(shrunk_rate(np.zeros(2), np.zeros(2), prior, m=5.0), prior)
    # 3,000 cardholders over 1,000 days against a prior of 10 a day, 5 pseudo-days: (3000 + 50) / 1005
    long_running = shrunk_rate(np.array([3000.0]), np.array([1000.0]), np.array([10.0]), m=5.0)
    assert long_running[0] == pytest.approx(3050 / 1005)
    assert long_running[0] == pytest.approx(3.0, rel=0.02)
    # no spread beyond Poisson's: every item is its prior
    np.testing.assert_allclose(shrunk_rate(EVENTS, DAYS, np.full(6, 4.0), m=np.inf), 4.0)


def test_the_method_of_moments_recovers_the_pseudo_days_the_rates_were_drawn_with() -> None:
    rng = np.random.default_rng(7)
    days = rng.uniform(20, 200, size=20_000)
    prior = np.full(days.size, 3.0)
    rates = rng.gamma(shape=prior * 8.0, scale=1.0 / 8.0)
    events = rng.poisson(rates * days).astype(np.float64)
    assert pseudo_days(events, days, prior, np.ones(days.size, dtype=bool)) == pytest.approx(8.0, rel=0.1)
    # Poisson counts around the prior itself: no spread to shrink by
    flat = rng.poisson(prior * days).astype(np.float64)
    assert pseudo_days(flat, days, prior, np.ones(days.size, dtype=bool)) > 500


def test_a_tag_prior_without_any_event_to_learn_from_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one fitted item with an event"):
        tag_prior_rate(TAGS, np.zeros(6), DAYS, FIT, l2=1.0)


def test_age_fair_exposure_weights_each_day_by_what_an_average_item_gains_at_that_age() -> None:
    # two age bins: the first gains twice the average, the second half of it
    overlap = np.array([[3.0, 0.0], [3.0, 10.0], [0.2, 0.0]])
    np.testing.assert_allclose(age_fair_exposure(overlap, np.array([2.0, 0.5])), [6.0, 11.0, 1.0])


def test_head_share_is_one_for_the_truths_own_order_and_hand_computed_for_another() -> None:
    truth = np.arange(20, dtype=np.float64)
    rows = np.ones(20, dtype=bool)
    assert head_share(truth, truth, rows) == pytest.approx(1.0)
    # the ten worst picked: mean 4.5 against the ten best's 14.5
    assert head_share(-truth, truth, rows) == pytest.approx(4.5 / 14.5)


def test_ranked_alone_offers_each_cardholder_the_eligible_items_in_the_estimates_order() -> None:
    from recsys.ranking import Eligibility

    estimate = np.array([0.1, np.nan, 0.5, 0.3])
    seen = sp.csr_matrix(np.array([[0, 0, 1, 0], [0, 0, 0, 0]], dtype=bool))  # cardholder 0 was pushed item 2
    indices = ranked_alone(estimate, 2, Eligibility(seen=seen), k=4)
    assert indices.tolist() == [[3, 0, 1, -1], [2, 3, 0, 1]]  # the item without an estimate comes last
    with pytest.raises(ValueError, match="no finite value"):
        ranked_alone(np.full(4, np.nan), 2, Eligibility())
