"""`benchmarks/second_stage.py`: how a pair's score is described against its cardholder's candidates,
and how a ranker's probabilities reorder them, on cases with a known answer."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from benchmarks.second_stage import against, reorder


def test_a_score_is_described_by_its_z_score_and_the_candidates_scored_above_it() -> None:
    reference = np.array([[3.0, 2.0, 1.0, -np.inf], [1.0, 1.0, 1.0, 1.0]])
    scores = np.array([[2.0, 2.5, 3.0], [1.0, 0.0, 2.0]])
    z, rank = against(reference, scores)
    spread = np.std([3.0, 2.0, 1.0])  # the missing candidate does not count
    np.testing.assert_allclose(z[0], [0.0, 0.5 / spread, 1.0 / spread])
    np.testing.assert_array_equal(rank[0], [1, 1, 0])
    # candidates all scored alike have no spread: z is 0, not NaN
    np.testing.assert_array_equal(z[1], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(rank[1], [0, 4, 0])


def test_candidates_are_reordered_by_the_rankers_probability_and_missing_ones_stay_last() -> None:
    rng = np.random.default_rng(0)
    signal = rng.normal(size=5000)
    # the chance of a positive rises with the one feature
    labels = rng.random(signal.size) < 1.0 / (1.0 + np.exp(-2.0 * signal))
    ranker = HistGradientBoostingClassifier(random_state=0).fit(signal[:, None], labels)
    candidates = np.array([[5, 6, 7, -1], [8, -1, -1, -1]])
    features = np.array([[-2.0, 0.5, 2.0, 3.0], [0.0, 3.0, 3.0, 3.0]])[..., None]
    order = reorder(ranker, candidates, features, k=3)
    np.testing.assert_array_equal(order, [[7, 6, 5], [8, -1, -1]])
