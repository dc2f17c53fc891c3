"""Popularity baseline, overall and per segment (e.g. card tier): the served fallback's counting and
scores (`recsys.fallback.Popularity`) as a `Recommender`, the baseline every model must beat."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recsys.fallback import Popularity
from recsys.matrices import TrainingMatrices
from recsys.models.base import (
    EpochCallback,
    ModelError,
    Recommender,
    check_user_inputs,
)


class PopularityRecommender(Recommender):
    """Ranks items by their interactions, within the user's segment when known, as the served fallback.

    Factors: column 0 is the overall popularity, column s (1..S) segment s's popularity blended with
    the overall one (`recsys.fallback.Popularity`). A user's factor is the one-hot vector of their
    segment's column; users without a segment and unknown users use the overall column.

    `weighted=True` sums interaction weights; `False` counts distinct users per item.
    `by_segment=False` ignores `user_segments` entirely.
    """

    kind: ClassVar[str] = "popularity"
    format_version: ClassVar[int] = 1

    def __init__(self, weighted: bool = True, by_segment: bool = True):
        self.weighted = bool(weighted)
        self.by_segment = bool(by_segment)
        self._item_factors: np.ndarray | None = None
        self._user_columns: np.ndarray | None = None
        self._segments: list[str] = []

    @property
    def is_fitted(self) -> bool:
        return self._item_factors is not None

    @property
    def segments(self) -> tuple[str, ...]:
        """Segment labels, in the order of item factor columns 1..S."""
        return tuple(self._segments)

    def fit(self, data: TrainingMatrices, callback: EpochCallback | None = None) -> Self:
        interactions = data.interactions_csr().tocoo()
        weights = interactions.data if self.weighted else None
        user_segment = np.full(data.n_users, -1, dtype=np.int64)
        segments: list[str] = []
        if self.by_segment and data.user_segments is not None:
            labels = np.asarray(data.user_segments, dtype=object)
            present = np.array([_is_label(label) for label in labels], dtype=bool)
            uniques, codes = np.unique(labels[present].astype(str), return_inverse=True)
            segments = [str(label) for label in uniques]
            user_segment[present] = codes
        counted = Popularity.of_events(segments, interactions.col, user_segment[interactions.row],
                                       data.n_items, weights)
        self._segments = segments
        self._item_factors = np.ascontiguousarray(np.column_stack([counted.overall, *counted.per_tier]),
                                                  dtype=np.float32).reshape(data.n_items, len(segments) + 1)
        self._user_columns = user_segment + 1
        if callback is not None:
            callback(1, self)
        return self

    def item_factors(self) -> np.ndarray:
        self._check_fitted()
        return self._item_factors

    def user_factors(self, user_index: np.ndarray, user_features: sp.csr_matrix) -> np.ndarray:
        self._check_fitted()
        index, _ = check_user_inputs(user_index, user_features, len(self._user_columns), None)
        columns = np.where(index >= 0, self._user_columns[np.maximum(index, 0)], 0)
        return self._one_hot(columns)

    def segment_factors(self, labels: np.ndarray | list[str | None]) -> np.ndarray:
        """Factors for users given only their segment label (unknown or missing label -> overall)."""
        self._check_fitted()
        lookup = {label: position + 1 for position, label in enumerate(self._segments)}
        columns = np.array([lookup.get(str(label), 0) if label is not None else 0 for label in labels],
                           dtype=np.int64)
        return self._one_hot(columns)

    def _one_hot(self, columns: np.ndarray) -> np.ndarray:
        factors = np.zeros((columns.size, self._item_factors.shape[1]), dtype=np.float32)
        factors[np.arange(columns.size), columns] = 1.0
        return factors

    def _state(self) -> dict[str, np.ndarray]:
        return {"item_factors": self._item_factors, "user_columns": self._user_columns}

    def _extra(self) -> dict[str, Any]:
        return {"segments": list(self._segments)}

    def _restore(self, arrays: Mapping[str, np.ndarray], extra: Mapping[str, Any]) -> None:
        self._item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        self._user_columns = np.asarray(arrays["user_columns"], dtype=np.int64)
        self._segments = [str(label) for label in extra["segments"]]
        if len(self._segments) + 1 != self._item_factors.shape[1]:
            raise ModelError("saved popularity model is inconsistent: segment labels and columns differ")


def _is_label(value: object) -> bool:
    return value is not None and value == value and str(value) != ""
