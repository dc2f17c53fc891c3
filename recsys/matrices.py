"""The numeric training input every recommender consumes, independent of how features were built."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys.ids import IdIndex


class MatricesError(ValueError):
    """A TrainingMatrices whose parts disagree in shape or hold invalid values."""


@dataclass(frozen=True)
class TrainingMatrices:
    """Interactions, weak negatives and side features, aligned on the same user and item indices.

    - `interactions`: coo [n_users, n_items], positive confidence weights (> 0) of observed positives.
    - `negatives`: coo [n_users, n_items] or None; weak negatives (pushed, not opened), values > 0 are
      the confidence that the item is not wanted. Only losses that can use them do.
    - `user_features` / `item_features`: csr [n_users, n_user_features] / [n_items, n_item_features],
      WITHOUT identity columns (models add identity features themselves when they use them).
    - `user_segments`: a label per user (e.g. card tier) for per-segment baselines, or None.
    - `item_exposure_days`: float [n_items] or None; days each item could be read or pushed up to the
      as-of time (>= 1), so a model can tell an item read often because it was offered long from one
      that is liked.
    - `item_sends` / `item_opens`: float [n_items] or None; pushes of each item sent (old enough to have
      been opened) and opened up to the as-of time, so a model can estimate each item's open rate.
    - `positive_days` / `item_offer_days`: coo [n_users, n_items] (the pattern of `interactions`) and
      float [n_items, 2], or None; the day (days since 1970-01-01 UTC) of each positive pair's first read
      or opened push, and each item's first and last day on offer (+-inf for an open bound, NaN for a
      transactional notice, never offered), so a model can tell which items each positive chose among.
    """

    users: IdIndex
    items: IdIndex
    interactions: sp.coo_matrix
    user_features: sp.csr_matrix
    user_feature_names: tuple[str, ...]
    item_features: sp.csr_matrix
    item_feature_names: tuple[str, ...]
    negatives: sp.coo_matrix | None = None
    user_segments: np.ndarray | None = None
    item_exposure_days: np.ndarray | None = None
    item_sends: np.ndarray | None = None
    item_opens: np.ndarray | None = None
    positive_days: sp.coo_matrix | None = None
    item_offer_days: np.ndarray | None = None

    def __post_init__(self) -> None:
        n_users, n_items = len(self.users), len(self.items)
        if n_users == 0 or n_items == 0:
            raise MatricesError(
                f"empty training data ({n_users} users, {n_items} items): at least one of each is needed"
            )
        for name in ("interactions", "negatives"):
            matrix = getattr(self, name)
            if matrix is None:
                continue
            if not sp.issparse(matrix):
                raise MatricesError(f"{name} must be a scipy sparse matrix, got {type(matrix).__name__}")
            if matrix.shape != (n_users, n_items):
                raise MatricesError(
                    f"{name} has shape {matrix.shape}, expected (n_users, n_items) = {(n_users, n_items)}"
                )
            values = matrix.tocoo().data
            if values.size and (not np.all(np.isfinite(values)) or values.min() <= 0):
                raise MatricesError(f"{name} must hold finite weights > 0; drop zero or negative entries")
        for side, n_rows in (("user", n_users), ("item", n_items)):
            features = getattr(self, f"{side}_features")
            names = getattr(self, f"{side}_feature_names")
            if not sp.issparse(features):
                raise MatricesError(f"{side}_features must be a scipy sparse matrix")
            if features.shape[0] != n_rows:
                raise MatricesError(
                    f"{side}_features has {features.shape[0]} rows, expected one per {side} ({n_rows})"
                )
            if features.shape[1] != len(names):
                raise MatricesError(
                    f"{side}_features has {features.shape[1]} columns but {len(names)} "
                    f"{side}_feature_names; give one name per column"
                )
            if features.nnz and not np.all(np.isfinite(features.data)):
                raise MatricesError(f"{side}_features holds NaN or infinite values; impute them first")
        if self.item_exposure_days is not None:
            days = np.asarray(self.item_exposure_days)
            if days.shape != (n_items,) or not np.all(np.isfinite(days)) or (days.size and days.min() < 1):
                raise MatricesError(
                    f"item_exposure_days must be {n_items} finite day counts >= 1, one per item")
        self._check_push_counts(n_items)
        self._check_offer_days(n_users, n_items)
        if self.user_segments is not None and len(self.user_segments) != n_users:
            raise MatricesError(
                f"user_segments has {len(self.user_segments)} labels, expected one per user ({n_users})"
            )

    def _check_offer_days(self, n_users: int, n_items: int) -> None:
        if (self.positive_days is None) != (self.item_offer_days is None):
            raise MatricesError("positive_days and item_offer_days go together: give both or neither")
        if self.positive_days is None:
            return
        if not sp.issparse(self.positive_days) or self.positive_days.shape != (n_users, n_items):
            raise MatricesError(f"positive_days must be a scipy sparse matrix of shape {(n_users, n_items)}")
        if not np.all(np.isfinite(self.positive_days.tocoo().data)):
            raise MatricesError("positive_days must hold finite days")
        if np.asarray(self.item_offer_days).shape != (n_items, 2):
            raise MatricesError(f"item_offer_days must be [{n_items}, 2]: a first and last day per item")

    def _check_push_counts(self, n_items: int) -> None:
        if (self.item_sends is None) != (self.item_opens is None):
            raise MatricesError("item_sends and item_opens go together: give both or neither")
        if self.item_sends is None:
            return
        sends, opens = np.asarray(self.item_sends), np.asarray(self.item_opens)
        for name, counts in (("item_sends", sends), ("item_opens", opens)):
            valid = counts.shape == (n_items,) and np.all(np.isfinite(counts)) and not (counts < 0).any()
            if not valid:
                raise MatricesError(f"{name} must be {n_items} finite counts >= 0, one per item")
        if np.any(opens > sends):
            raise MatricesError(f"item_opens exceeds item_sends for {int((opens > sends).sum())} item(s)")

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def interactions_csr(self) -> sp.csr_matrix:
        """Interactions as csr float32 with duplicate entries summed."""
        matrix = sp.csr_matrix(self.interactions, dtype=np.float32)
        matrix.sum_duplicates()
        return matrix

    @classmethod
    def from_interactions(
        cls,
        interactions: sp.spmatrix,
        users: IdIndex | None = None,
        items: IdIndex | None = None,
        user_features: sp.spmatrix | None = None,
        user_feature_names: tuple[str, ...] = (),
        item_features: sp.spmatrix | None = None,
        item_feature_names: tuple[str, ...] = (),
        negatives: sp.spmatrix | None = None,
        user_segments: np.ndarray | None = None,
    ) -> TrainingMatrices:
        """Convenience constructor: ids default to "u0".., "i0".., missing features to zero columns."""
        interactions = sp.coo_matrix(interactions, dtype=np.float32)
        n_users, n_items = interactions.shape
        users = users or IdIndex(f"u{i}" for i in range(n_users))
        items = items or IdIndex(f"i{i}" for i in range(n_items))
        if user_features is None:
            user_features = sp.csr_matrix((n_users, 0), dtype=np.float32)
        if item_features is None:
            item_features = sp.csr_matrix((n_items, 0), dtype=np.float32)
        return cls(
            users=users,
            items=items,
            interactions=interactions,
            user_features=sp.csr_matrix(user_features, dtype=np.float32),
            user_feature_names=tuple(user_feature_names),
            item_features=sp.csr_matrix(item_features, dtype=np.float32),
            item_feature_names=tuple(item_feature_names),
            negatives=None if negatives is None else sp.coo_matrix(negatives, dtype=np.float32),
            user_segments=user_segments,
        )
