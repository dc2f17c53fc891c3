"""`benchmarks/taste_transfer.py`: the gap-closed figure and the ridge, on cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.taste_transfer import gap_closed, ridge_scores

TRUTH = np.array([[0.5, 0.1, 0.2],
                  [0.1, 0.4, 0.2],
                  [0.5, 0.1, 0.2],
                  [0.1, 0.4, 0.2]])


def test_gap_closed_is_one_at_the_oracle_zero_at_popularity_and_hand_computed_between() -> None:
    rows = np.arange(4)
    assert gap_closed(TRUTH, TRUTH, rows, popular=2) == pytest.approx(1.0)
    assert gap_closed(np.tile([0.0, 0.0, 1.0], (4, 1)), TRUTH, rows, popular=2) == pytest.approx(0.0)
    # item 0 for everyone: (0.3 - 0.2) / (0.45 - 0.2)
    assert gap_closed(np.tile([1.0, 0.0, 0.0], (4, 1)), TRUTH, rows, popular=2) == pytest.approx(0.4)


def test_a_ridge_on_features_that_determine_taste_carries_it_to_the_rows_it_was_not_fitted_on() -> None:
    groups = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32))
    scores = ridge_scores(groups, TRUTH, fit_rows=np.array([0, 1]), l2=1e-6)
    np.testing.assert_allclose(scores[2:], TRUTH[2:], atol=1e-4)
    assert gap_closed(scores, TRUTH, np.array([2, 3]), popular=2) == pytest.approx(1.0)
    # features that say nothing leave every row at the fitted rows' mean taste
    flat = ridge_scores(sp.csr_matrix(np.ones((4, 1), dtype=np.float32)), TRUTH, np.array([0, 1]), l2=1e-6)
    np.testing.assert_allclose(flat[2:], np.tile(TRUTH[:2].mean(axis=0), (2, 1)), atol=1e-4)
