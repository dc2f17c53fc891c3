"""A "wide" scorer: per-item ridge regression of positives on the cardholder feature vector, low rank.

Solved in closed form on the sparse feature matrix, W = (X'X + l2 n I)^-1 X'Y with X's columns centred
and standardised and Y each item's centred 0/1 positives, then kept to its leading singular
directions so that it folds into the factor matrices every model ranks with: a cardholder gets
`x @ projection` as extra columns, an item its row of `items` and `offset` added to its bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class RidgeFactors:
    """`x @ projection @ items.T + offset` is the ridge's centred score of every item for a feature row x."""

    projection: np.ndarray  # float32 [n_features, r]
    items: np.ndarray  # float32 [n_items, r]
    offset: np.ndarray  # float32 [n_items]

    def user_block(self, features: sp.csr_matrix) -> np.ndarray:
        return np.asarray(features @ self.projection, dtype=np.float32)

    def spread(self, features: sp.csr_matrix) -> float:
        """Standard deviation of the ridge's scores over the given rows and every item."""
        scores = self.user_block(features) @ self.items.T + self.offset
        return float(scores.std())


def fit_ridge(features: sp.csr_matrix, positives: sp.spmatrix, l2: float, max_rank: int) -> RidgeFactors:
    """The ridge of `positives` [n, n_items] (> 0 = positive) on `features` [n, n_features], penalty
    `l2` x n on the standardised columns, truncated to at most `max_rank` singular directions."""
    return fit_ridge_labels(features, sp.csr_matrix((sp.csr_matrix(positives) > 0).astype(np.float64)), l2,
                            max_rank)


def fit_ridge_labels(features: sp.csr_matrix, labels: sp.spmatrix | np.ndarray, l2: float,
                     max_rank: int) -> RidgeFactors:
    """The ridge of real-valued `labels` [n, n_items] (sparse or dense) on `features` [n, n_features],
    penalty `l2` x n on the standardised columns, truncated to at most `max_rank` singular directions."""
    x = sp.csr_matrix(features, dtype=np.float64)
    y = labels.astype(np.float64) if sp.issparse(labels) else np.asarray(labels, dtype=np.float64)
    n = x.shape[0]
    mean = np.asarray(x.mean(axis=0)).ravel()
    gram = (x.T @ x).toarray() - n * np.outer(mean, mean)
    scale = np.sqrt(np.maximum(np.diag(gram) / n, 0.0))
    scale[scale == 0] = 1.0
    gram /= np.outer(scale, scale)
    product = x.T @ y
    product = product.toarray() if sp.issparse(product) else np.asarray(product)
    cross = (product - n * np.outer(mean, np.asarray(y.mean(axis=0)).ravel())) / scale[:, None]
    gram[np.diag_indices_from(gram)] += l2 * n
    weights = np.linalg.solve(gram, cross) / scale[:, None]  # on raw feature values
    return low_rank_factors(weights, mean, max_rank)


def low_rank_factors(weights: np.ndarray, mean: np.ndarray, max_rank: int) -> RidgeFactors:
    """`weights` [n_features, n_items] on raw feature values, centred on the rows whose feature means
    are `mean`, truncated to at most `max_rank` singular directions."""
    left, singular, right = np.linalg.svd(weights, full_matrices=False)
    rank = int(min(max_rank, int((singular > singular[0] * 1e-9).sum()) if singular.size else 0))
    rank = max(rank, 1)
    return RidgeFactors(projection=(left[:, :rank] * singular[:rank]).astype(np.float32),
                        items=np.ascontiguousarray(right[:rank].T, dtype=np.float32),
                        offset=(-(mean @ weights)).astype(np.float32))
