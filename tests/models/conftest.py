"""Seeded data with a known answer for the model tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.matrices import TrainingMatrices


@dataclass(frozen=True)
class Checkerboard:
    """Users and items in two camps; each user has interacted with a seeded half of their camp's items.

    The right answer is known: every unseen item of the user's own camp outranks every item of the
    other camp. `data.user_features` is the camp one-hot (plus a constant), so a model that uses
    features can also place users it has never seen.
    """

    data: TrainingMatrices
    user_camp: np.ndarray
    item_camp: np.ndarray
    seen: sp.csr_matrix

    def precision(self, recommended: np.ndarray) -> float:
        """Share of recommended slots holding an item of the user's own camp."""
        valid = recommended >= 0
        right = self.item_camp[np.where(valid, recommended, 0)] == self.user_camp[:, None]
        return float((right & valid).sum() / valid.sum())


def make_checkerboard(n_users: int = 60, n_items: int = 40, seed: int = 7) -> Checkerboard:
    rng = np.random.default_rng(seed)
    user_camp = np.arange(n_users) % 2
    item_camp = np.arange(n_items) % 2
    rows, cols = [], []
    for user in range(n_users):
        own = np.flatnonzero(item_camp == user_camp[user])
        chosen = rng.choice(own, size=own.size // 2, replace=False)
        rows.extend([user] * chosen.size)
        cols.extend(chosen.tolist())
    interactions = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                                 shape=(n_users, n_items))
    user_features = sp.csr_matrix(np.column_stack([user_camp == 0, user_camp == 1]).astype(np.float32))
    item_features = sp.csr_matrix(np.column_stack([item_camp == 0, item_camp == 1]).astype(np.float32))
    data = TrainingMatrices.from_interactions(
        interactions,
        user_features=user_features,
        user_feature_names=("camp:a", "camp:b"),
        item_features=item_features,
        item_feature_names=("camp:a", "camp:b"),
        user_segments=np.where(user_camp == 0, "a", "b").astype(object),
    )
    return Checkerboard(data=data, user_camp=user_camp, item_camp=item_camp, seen=interactions.tocsr())


@pytest.fixture(scope="session")
def checkerboard() -> Checkerboard:
    return make_checkerboard()
