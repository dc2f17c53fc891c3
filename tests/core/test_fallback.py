"""One popularity: the served fallback's scores by hand, and the baseline model scoring alike."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.fallback import TIER_WEIGHT, Popularity
from recsys.matrices import TrainingMatrices
from recsys.models.popularity import PopularityRecommender
from recsys.ranking import top_k


def test_popularity_of_events_by_hand() -> None:
    # item 0: 2 gold events, item 1: 1 gold and 1 classic, item 2: 3 events of cardholders without a tier
    items = np.array([0, 0, 1, 1, 2, 2, 2, -1])
    tiers = np.array([0, 0, 0, 1, -1, -1, -1, 0])
    popularity = Popularity.of_events(["gold", "classic"], items, tiers, 3)
    np.testing.assert_allclose(popularity.overall, [2 / 3, 2 / 3, 1.0])
    overall = np.array([2 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(popularity.per_tier, [TIER_WEIGHT * np.array([1.0, 0.5, 0.0]) + 0.2 * overall,
                                                     TIER_WEIGHT * np.array([0.0, 1.0, 0.0]) + 0.2 * overall],
                               rtol=1e-6)
    user, item = popularity.factors(np.array(["classic", "platinum"], dtype=object))
    np.testing.assert_allclose(user @ item.T, [popularity.per_tier[1], popularity.overall], rtol=1e-6)


def test_the_popularity_baseline_ranks_as_the_served_fallback() -> None:
    # gold cardholders favour item 0 slightly, everyone item 1 by far: the blend puts item 1 first
    weights = np.array([[10, 9, 0], [0, 20, 0], [0, 0, 1]], dtype=np.float32)
    segments = np.array(["gold", "classic", None], dtype=object)
    model = PopularityRecommender().fit(TrainingMatrices.from_interactions(weights, user_segments=segments))
    rows, cols = np.nonzero(weights)
    tiers = np.array([1, 0, -1])[rows]
    served = Popularity.of_events(["classic", "gold"], cols, tiers, 3, weights[rows, cols])
    user, item = served.factors(np.array(["gold", "classic", "none"], dtype=object))
    expected, _ = top_k(user, item, 3)
    ranked, _ = top_k(model.segment_factors(["gold", "classic", None]), model.item_factors(), 3)
    np.testing.assert_array_equal(ranked, expected)
    assert ranked[0].tolist() == [1, 0, 2]
    features = sp.csr_matrix((3, 0), dtype=np.float32)
    np.testing.assert_array_equal(model.user_factors(np.array([0, 1, 2]), features).argmax(axis=1), [2, 1, 0])
