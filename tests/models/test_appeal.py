"""Item appeal from push open rates: the prior regressed on engagement, Beta shrinkage, fall-backs."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.models.appeal import engagement_rate, open_rate_logit


def logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def test_engagement_rate_is_log_engaged_plus_one_per_day() -> None:
    np.testing.assert_allclose(engagement_rate(np.array([0, 9]), np.array([1.0, 5.0])), [0.0, np.log(2.0)])


def test_prior_follows_engagement_and_each_pushed_item_its_own_rate() -> None:
    engagement = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 0.5])
    true_rate = logistic(-2.0 + 0.5 * engagement)
    sends = np.array([1e7, 1e7, 1e7, 1e7, 1e7, 0.0])  # the last item was never pushed
    opens = np.round(true_rate * sends)
    logit = open_rate_logit(sends, opens, engagement, prior_sends=50.0)
    # so many sends that every pushed item keeps its own rate; the unpushed one gets the prior
    np.testing.assert_allclose(logistic(logit[:5]), true_rate[:5], rtol=1e-4)
    assert logistic(logit[5]) == pytest.approx(logistic(-2.0 + 0.5 * 0.5), rel=1e-3)


def test_a_rarely_pushed_item_is_shrunk_toward_its_prior() -> None:
    engagement = np.array([0.0, 0.0, 0.0, 0.0])
    sends = np.array([1000.0, 1000.0, 1000.0, 2.0])
    opens = np.array([100.0, 100.0, 100.0, 2.0])  # two opens of two sends is no evidence of a 100% rate
    rate = logistic(open_rate_logit(sends, opens, engagement, prior_sends=50.0))
    # no slope to learn: the prior is the sends-weighted mean logit of the items' own rates
    overall = opens.sum() / sends.sum()
    own = (opens + overall) / (sends + 1.0)
    prior = logistic(np.average(np.log(own / (1.0 - own)), weights=sends))
    assert prior == pytest.approx(0.1, abs=0.002)
    assert rate[3] == pytest.approx((2.0 + 50.0 * prior) / 52.0, rel=1e-3)
    assert rate[3] < 0.15


def test_an_item_opened_more_often_than_its_engagement_predicts_moves_up() -> None:
    engagement = np.array([1.0, 0.0, -1.0, 0.0])
    sends = np.full(4, 500.0)
    opens = np.array([100.0, 50.0, 25.0, 150.0])  # the fourth: as engaged as the second, opened 3x as often
    logit = open_rate_logit(sends, opens, engagement, prior_sends=50.0)
    assert np.argmax(logit) == 3 and logit[3] > logit[0] > logit[1] > logit[2]


def test_nothing_to_learn_from_gives_none() -> None:
    engagement = np.zeros(4)
    two_pushed = np.array([10.0, 10.0, 0.0, 0.0])
    assert open_rate_logit(two_pushed, np.array([1.0, 2.0, 0.0, 0.0]), engagement, 50.0) is None
    assert open_rate_logit(np.full(4, 10.0), np.zeros(4), engagement, 50.0) is None
