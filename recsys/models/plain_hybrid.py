"""The plain-hybrid baseline: untuned LightFM WARP over raw spend, menu and tier features.

It is the yardstick a tuned engine must beat: identity + raw MCC spend shares + menu-click levels +
card tier for cardholders, identity + tags + kind for items, 48 components, 20 epochs, no feature
weighting or row normalisation. It reads those columns, by name, from the feature matrices the
engine builds, each block rescaled so its largest value is 1 (family weights do not reach it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recsys.matrices import TrainingMatrices
from recsys.models.base import EpochCallback, ModelError
from recsys.models.lightfm_hybrid import LightFMHybrid

USER_PREFIXES = ("mcc", "menu", "card_tier=")
ITEM_PREFIXES = ("tag:", "kind=")


def select_columns(names: tuple[str, ...], prefixes: tuple[str, ...]) -> list[np.ndarray]:
    """Column indices per prefix (a block per prefix, in `prefixes` order)."""
    return [np.asarray([j for j, name in enumerate(names) if name.startswith(prefix)], dtype=np.int64)
            for prefix in prefixes]


class PlainHybrid(LightFMHybrid):
    """Untuned LightFM hybrid on raw features; its parameters are fixed apart from seed and threads."""

    kind: ClassVar[str] = "plain_hybrid"
    format_version: ClassVar[int] = 1

    def __init__(self, num_threads: int = 2, random_state: int = 42, epochs: int = 20,
                 no_components: int = 48):
        super().__init__(no_components=no_components, loss="warp", learning_rate=0.05, epochs=epochs,
                         num_threads=num_threads, random_state=random_state, user_identity=True,
                         item_identity=True, normalize_features=False, use_weights=False,
                         use_negatives=False)
        self._user_blocks: list[np.ndarray] = []
        self._user_scales: list[float] = []
        self._item_columns: np.ndarray | None = None
        self._n_input_features = 0

    def params(self) -> dict[str, Any]:
        return {"num_threads": self.num_threads, "random_state": self.random_state, "epochs": self.epochs,
                "no_components": self.no_components}

    def _raw_users(self, features: sp.csr_matrix) -> sp.csr_matrix:
        blocks = [sp.csr_matrix(features[:, columns] * np.float32(1.0 / scale))
                  for columns, scale in zip(self._user_blocks, self._user_scales, strict=True)]
        return sp.csr_matrix(sp.hstack(blocks, format="csr"), dtype=np.float32)

    def fit(self, data: TrainingMatrices, callback: EpochCallback | None = None) -> Self:
        self._user_blocks = select_columns(data.user_feature_names, USER_PREFIXES)
        if not sum(block.size for block in self._user_blocks):
            raise ModelError("plain_hybrid: the user features have no mcc, menu or card_tier columns")
        self._user_scales = [max(float(abs(data.user_features[:, block]).max()), 1e-12) if block.size else 1.0
                             for block in self._user_blocks]
        self._item_columns = np.concatenate(select_columns(data.item_feature_names, ITEM_PREFIXES))
        item_features = sp.csr_matrix(data.item_features[:, self._item_columns])
        item_features.data = np.ones_like(item_features.data)
        raw = TrainingMatrices(
            users=data.users, items=data.items, interactions=data.interactions,
            user_features=self._raw_users(data.user_features),
            user_feature_names=tuple(data.user_feature_names[j] for block in self._user_blocks
                                     for j in block),
            item_features=item_features,
            item_feature_names=tuple(data.item_feature_names[j] for j in self._item_columns),
        )
        self._n_input_features = data.user_features.shape[1]
        return super().fit(raw, callback)

    def user_factors(self, user_index: np.ndarray, user_features: sp.csr_matrix) -> np.ndarray:
        self._check_fitted()
        if not sp.issparse(user_features) or user_features.shape[1] != self._n_input_features:
            raise ModelError(f"user_features must be a sparse matrix with {self._n_input_features} columns "
                             "(the feature builder's), got "
                             f"{getattr(user_features, 'shape', type(user_features).__name__)}")
        return super().user_factors(user_index, self._raw_users(sp.csr_matrix(user_features)))

    def _extra(self) -> dict[str, Any]:
        return {**super()._extra(), "user_blocks": [block.tolist() for block in self._user_blocks],
                "user_scales": self._user_scales, "item_columns": self._item_columns.tolist(),
                "n_input_features": self._n_input_features}

    def _restore(self, arrays: Mapping[str, np.ndarray], extra: Mapping[str, Any]) -> None:
        super()._restore(arrays, extra)
        self._user_blocks = [np.asarray(block, dtype=np.int64) for block in extra["user_blocks"]]
        self._user_scales = [float(scale) for scale in extra["user_scales"]]
        self._item_columns = np.asarray(extra["item_columns"], dtype=np.int64)
        self._n_input_features = int(extra["n_input_features"])
