"""Peer baseline from an established library: `implicit` ALS (or BPR) on the CPU."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recsys.matrices import TrainingMatrices
from recsys.models.base import (
    EpochCallback,
    ModelError,
    Recommender,
    check_at_least_one,
    check_user_inputs,
)

logger = logging.getLogger(__name__)

ALGORITHMS = ("als", "bpr")


class ImplicitPeer(Recommender):
    """Matrix factorisation with `implicit`: ALS (interaction weights as confidence) or BPR.

    implicit has no side features, so a user unknown at fit time gets the mean of the fitted user
    factors: a popularity-like ranking in the model's own space. BPR's item bias is already the last
    factor column (with a constant 1 on the user side), so scores are `user @ item.T` for both.
    """

    kind: ClassVar[str] = "implicit_peer"
    format_version: ClassVar[int] = 1
    libraries: ClassVar[tuple[str, ...]] = ("implicit", "numpy", "scipy")

    def __init__(
        self,
        algorithm: str = "als",
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        learning_rate: float = 0.01,
        num_threads: int = 2,
        random_state: int = 42,
    ):
        if algorithm not in ALGORITHMS:
            raise ModelError(f"algorithm {algorithm!r} is not one of {ALGORITHMS}")
        check_at_least_one(factors=factors, iterations=iterations, num_threads=num_threads)
        self.algorithm = algorithm
        self.factors = int(factors)
        self.regularization = float(regularization)
        self.alpha = float(alpha)
        self.iterations = int(iterations)
        self.learning_rate = float(learning_rate)
        self.num_threads = int(num_threads)
        self.random_state = int(random_state)
        self._user_factors: np.ndarray | None = None
        self._item_factors: np.ndarray | None = None

    @property
    def is_fitted(self) -> bool:
        return self._item_factors is not None

    def _new_model(self):
        if self.algorithm == "als":
            from implicit.cpu.als import AlternatingLeastSquares

            return AlternatingLeastSquares(
                factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                iterations=self.iterations, num_threads=self.num_threads, random_state=self.random_state,
            )
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors, learning_rate=self.learning_rate, regularization=self.regularization,
            iterations=self.iterations, num_threads=self.num_threads, random_state=self.random_state,
        )

    def fit(self, data: TrainingMatrices, callback: EpochCallback | None = None) -> Self:
        import implicit.cpu.als  # noqa: F401  (loads its BLAS before the thread limit below applies)
        from threadpoolctl import threadpool_limits

        user_items = data.interactions_csr()
        model = None

        def on_iteration(iteration: int, *_: Any) -> None:
            self._user_factors = model.user_factors
            self._item_factors = model.item_factors
            if callback is not None:
                callback(iteration + 1, self)

        # implicit parallelises itself; a multi-threaded BLAS underneath only oversubscribes the cores
        with threadpool_limits(limits=1, user_api="blas"):
            model = self._new_model()
            model.fit(user_items, show_progress=False, callback=on_iteration)
        self._user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self._item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        return self

    def item_factors(self) -> np.ndarray:
        self._check_fitted()
        return np.ascontiguousarray(self._item_factors, dtype=np.float32)

    def user_factors(self, user_index: np.ndarray, user_features: sp.csr_matrix) -> np.ndarray:
        self._check_fitted()
        fitted = np.asarray(self._user_factors, dtype=np.float32)
        index, _ = check_user_inputs(user_index, user_features, fitted.shape[0], None)
        factors = fitted[np.maximum(index, 0)]
        unknown = index < 0
        if unknown.any():
            factors[unknown] = fitted.mean(axis=0)
        return np.ascontiguousarray(factors, dtype=np.float32)

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": np.asarray(self._user_factors, dtype=np.float32),
                "item_factors": self.item_factors()}

    def _restore(self, arrays: Mapping[str, np.ndarray], extra: Mapping[str, Any]) -> None:
        self._user_factors = np.ascontiguousarray(arrays["user_factors"], dtype=np.float32)
        self._item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
