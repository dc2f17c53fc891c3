"""The response fit's shortcuts: sampled non-events with weights, warm starts, the intercept levelled on
the latest pushes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.response_model import sigmoid
from tests.response.handmade import AS_OF
from training.response import (
    MIN_CALIBRATION_POSITIVES,
    ResponseFitConfig,
    ResponseFitError,
    fit_logistic,
    fit_response_models,
    level_shift,
    negative_sample,
)


def one_hot_problem(seed: int = 0, n: int = 4000, groups: int = 40) -> tuple[sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    design = sp.csr_matrix(sp.hstack([np.ones((n, 1)), sp.csr_matrix((np.ones(n), (np.arange(n), group)),
                                                                      shape=(n, groups)), x[:, None]]))
    truth = -2.5 + rng.normal(0, 0.7, groups)[group] + 0.4 * x
    return design, (rng.random(n) < sigmoid(truth)).astype(np.float64)


def test_weights_count_as_repeated_rows() -> None:
    design, y = one_hot_problem()
    penalties = np.r_[0.0, np.full(design.shape[1] - 2, 1.0), 0.0]
    weights = np.where(np.arange(len(y)) % 3 == 0, 2.0, 1.0)
    repeated = np.r_[np.arange(len(y)), np.flatnonzero(weights == 2.0)]
    weighted = fit_logistic(design, y, penalties, {}, weights)
    stacked = fit_logistic(design[repeated], y[repeated], penalties, {})
    np.testing.assert_allclose(weighted, stacked, atol=1e-4)


def test_a_warm_start_reaches_the_same_optimum() -> None:
    design, y = one_hot_problem(1)
    penalties = np.r_[0.0, np.full(design.shape[1] - 2, 1.0), 0.0]
    cold = fit_logistic(design, y, penalties, {design.shape[1] - 1: 1.0})
    warm = fit_logistic(design, y, penalties, {design.shape[1] - 1: 1.0}, start=cold + 0.3)
    np.testing.assert_allclose(warm, cold, atol=1e-4)


def test_sampled_non_events_keep_every_event_and_reweight_the_rest() -> None:
    y = (np.arange(10_000) % 50 == 0).astype(np.float64)
    keep, weights = negative_sample(y, 0.1, np.random.default_rng(4))
    assert set(np.flatnonzero(y)) <= set(keep.tolist())
    assert np.all(weights[y[keep] > 0] == 1.0) and np.all(weights[y[keep] == 0] == 10.0)
    # the weighted count of non-events estimates the real one
    assert weights[y[keep] == 0].sum() == pytest.approx((y == 0).sum(), rel=0.05)
    everything, ones = negative_sample(y, 1.0, np.random.default_rng(4))
    assert len(everything) == len(y) and np.all(ones == 1.0)


def test_level_shift_matches_the_observed_rate() -> None:
    rng = np.random.default_rng(2)
    logit = rng.normal(-4.0, 1.0, 20_000)
    y = (rng.random(len(logit)) < sigmoid(logit - 0.5)).astype(np.float64)
    shift = level_shift(logit, y)
    assert sigmoid(logit + shift).mean() == pytest.approx(y.mean(), rel=1e-6)
    assert shift == pytest.approx(-0.5, abs=0.15)
    few = np.zeros(len(y))
    few[:MIN_CALIBRATION_POSITIVES - 1] = 1.0
    assert level_shift(logit, few) == 0.0  # too few events to level on


def test_bad_fit_settings_are_refused_by_name() -> None:
    with pytest.raises(ResponseFitError, match=r"negative_share\['mute'\] must be in \(0, 1\]"):
        ResponseFitConfig(negative_share={"open": 1.0, "mute": 0.0})
    with pytest.raises(ResponseFitError, match="level_days must be >= 0"):
        ResponseFitConfig(level_days=-1)


def test_the_default_fit_matches_the_full_fit_on_the_holdout(handmade_dataset) -> None:
    """Sampled non-events and warm starts: holdout figures within noise of every push, cold starts."""
    as_of = pd.Timestamp("2025-05-01T00:00:00Z")
    full = ResponseFitConfig(holdout_days=20, validation_days=20, refit=False, warm_start=False,
                             negative_share={"open": 1.0, "mute": 1.0})
    fast = ResponseFitConfig(holdout_days=20, validation_days=20, refit=False,
                             negative_share={"open": 0.5, "mute": 0.5}, sample_above=0)
    _, reference = fit_response_models(handmade_dataset, as_of, full)
    _, report = fit_response_models(handmade_dataset, as_of, fast)
    assert report.holdout["open"].log_loss == pytest.approx(reference.holdout["open"].log_loss, rel=0.05)
    assert report.holdout["open"].auc == pytest.approx(reference.holdout["open"].auc, abs=0.03)
    assert report.holdout["open"].log_loss < report.holdout["open"].base_log_loss


def test_the_solver_runs_on_one_blas_thread_and_reaches_the_optimum_of_two(monkeypatch,
                                                                           handmade_dataset) -> None:
    """OpenBLAS splits a dot product of more than 10,000 entries over its threads; the fit keeps BLAS on
    one thread (the waits cost more than the work on a busy machine). The optimum is the same within
    the solver's tolerance: its stopping rule allows a last step of `tolerance` per coefficient."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import training.response as response

    design, y = one_hot_problem(2, n=60_000, groups=12_000)
    penalties = np.r_[0.0, np.full(design.shape[1] - 2, 1.0), 0.0]
    with threadpool_limits(limits=2, user_api="blas"):
        two = fit_logistic(design, y, penalties, {})
    with threadpool_limits(limits=1, user_api="blas"):
        one = fit_logistic(design, y, penalties, {})
    assert np.abs(one - two).mean() < 1e-5
    np.testing.assert_allclose(one, two, atol=1e-3)

    threads = []
    newton = response._newton

    def recording(*args):
        threads.extend(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
        return newton(*args)

    monkeypatch.setattr(response, "_newton", recording)
    with threadpool_limits(limits=2, user_api="blas"):
        fit_response_models(handmade_dataset, AS_OF)
    assert threads and set(threads) == {1}
