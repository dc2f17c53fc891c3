"""Calibration metrics on hand-computed cases, edge cases and a slow reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.calibration import (
    auc,
    brier,
    calibration,
    ece_noise_floor,
    expected_calibration_error,
    log_loss,
    reliability_curve,
)


def test_log_loss_and_brier_by_hand() -> None:
    p, y = np.array([0.9, 0.2]), np.array([1, 0])
    assert log_loss(p, y) == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2)
    assert brier(p, y) == pytest.approx((0.01 + 0.04) / 2)


def test_perfect_and_no_rows() -> None:
    assert log_loss(np.array([1.0, 0.0]), np.array([1, 0])) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(log_loss(np.zeros(0), np.zeros(0)))
    assert math.isnan(auc(np.array([0.3, 0.4]), np.array([0, 0])))


def test_reliability_bins_have_equal_counts_and_ece_by_hand() -> None:
    p = np.array([0.1, 0.1, 0.3, 0.3])
    y = np.array([0, 0, 1, 0])
    curve = reliability_curve(p, y, bins=2)
    assert [b.count for b in curve] == [2, 2]
    assert [b.observed_rate for b in curve] == [0.0, 0.5]
    # |0.1 - 0| and |0.3 - 0.5|, each bin half the rows
    assert expected_calibration_error(p, y, bins=2) == pytest.approx(0.15)


def test_calibrated_forecasts_have_small_ece() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 0.2, 200_000)
    y = rng.random(p.size) < p
    assert expected_calibration_error(p, y) < 0.003
    assert expected_calibration_error(np.minimum(p * 2, 1), y) > 0.05


def test_the_noise_floor_shrinks_with_more_rows() -> None:
    small, large = np.full(500, 0.05), np.full(50_000, 0.05)
    assert ece_noise_floor(large) < ece_noise_floor(small) / 5
    assert ece_noise_floor(large) == ece_noise_floor(large)  # seeded


def test_auc_matches_pairwise_reference() -> None:
    rng = np.random.default_rng(1)
    p = np.round(rng.random(60), 1)  # ties on purpose
    y = rng.random(60) < 0.4
    pairs = [(a, b) for a in p[y] for b in p[~y]]
    reference = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
    assert auc(p, y) == pytest.approx(reference)


def test_calibration_reports_the_constant_forecast_beside() -> None:
    p, y = np.array([0.5, 0.5, 0.5, 0.5]), np.array([1, 0, 1, 0])
    figures = calibration(p, y, base_rate=0.25, bins=2)
    assert figures.log_loss == pytest.approx(math.log(2))
    assert figures.base_brier == pytest.approx((0.75**2 * 2 + 0.25**2 * 2) / 4)
    assert figures.positives == 2 and figures.observed_rate == 0.5


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        log_loss(np.array([0.1]), np.array([1, 0]))
    with pytest.raises(ValueError, match="probabilities"):
        brier(np.array([1.5]), np.array([1]))
