"""A "wide" scorer: per-item ridge regression of positives on the cardholder feature vector, low rank.

Solved in closed form on the sparse feature matrix, W = (X'X + l2 n I)^-1 X'Y with X's columns centred
and standardised and Y each item's centred 0/1 positives, then kept to its leading singular
directions so that it folds into the factor matrices every model ranks with: a cardholder gets
`x @ projection` as extra columns, an item its row of `items` and `offset` added to its bias.
With item groups (tags) and a prior, each item's coefficients are shrunk toward its groups' (see
`fit_ridge`), so an item with few positives borrows what the positives of its tags say.
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


def fit_ridge(features: sp.csr_matrix, positives: sp.spmatrix, l2: float, max_rank: int,
              groups: sp.spmatrix | None = None, group_prior: float = 0.0) -> RidgeFactors:
    """The ridge of `positives` [n, n_items] (> 0 = positive) on `features` [n, n_features], penalty
    `l2` x n on the standardised columns, truncated to at most `max_rank` singular directions.

    With `groups` [n_items, n_groups] (> 0 = the item belongs to the group) and `group_prior` k > 0,
    each item's coefficients become `a x own + (1 - a) x pooled`, a = positives / (positives + k):
    `pooled` is the mean over its groups of the ridge of "a positive on any item of the group", scaled
    to the spread of the own coefficients of grouped items with positives. An item with no positives
    takes its groups' coefficients, one with many keeps about its own; one in no group keeps its own."""
    x = sp.csr_matrix(features, dtype=np.float64)
    y = sp.csr_matrix((sp.csr_matrix(positives) > 0).astype(np.float64))
    pooling = groups is not None and group_prior > 0
    if pooling:
        member = sp.csr_matrix(sp.csr_matrix(groups) > 0, dtype=np.float64)
        y = sp.csr_matrix(sp.hstack([y, sp.csr_matrix((y @ member) > 0, dtype=np.float64)]))
    n = x.shape[0]
    mean = np.asarray(x.mean(axis=0)).ravel()
    gram = (x.T @ x).toarray() - n * np.outer(mean, mean)
    scale = np.sqrt(np.maximum(np.diag(gram) / n, 0.0))
    scale[scale == 0] = 1.0
    gram /= np.outer(scale, scale)
    covariance = gram / n
    cross = ((x.T @ y).toarray() - n * np.outer(mean, np.asarray(y.mean(axis=0)).ravel())) / scale[:, None]
    gram[np.diag_indices_from(gram)] += l2 * n
    weights = np.linalg.solve(gram, cross)  # on standardised columns
    if pooling:
        n_items = member.shape[0]
        counts = np.diff(sp.csc_matrix(y[:, :n_items]).indptr).astype(np.float64)
        weights = shrunk_to_groups(weights[:, :n_items], weights[:, n_items:], member, counts, group_prior,
                                   covariance)
    weights = weights / scale[:, None]  # on raw feature values
    left, singular, right = np.linalg.svd(weights, full_matrices=False)
    rank = int(min(max_rank, int((singular > singular[0] * 1e-9).sum()) if singular.size else 0))
    rank = max(rank, 1)
    return RidgeFactors(projection=(left[:, :rank] * singular[:rank]).astype(np.float32),
                        items=np.ascontiguousarray(right[:rank].T, dtype=np.float32),
                        offset=(-(mean @ weights)).astype(np.float32))


def shrunk_to_groups(own: np.ndarray, per_group: np.ndarray, member: sp.csr_matrix, counts: np.ndarray,
                     prior: float, covariance: np.ndarray) -> np.ndarray:
    """[n_features, n_items]: each item's `own` coefficients blended with the mean of its groups'
    (`per_group` [n_features, n_groups]), weight counts / (counts + prior) on its own; the pooled
    coefficients are scaled so their scores spread as much as the own ones of the grouped items with
    positives (spread over the fitted rows, from their `covariance`)."""
    in_groups = np.asarray(member.sum(axis=1)).ravel()
    mean_of_groups = sp.diags(np.divide(1.0, in_groups, out=np.zeros_like(in_groups), where=in_groups > 0))
    pooled = np.asarray((sp.csr_matrix(mean_of_groups @ member) @ per_group.T).T)
    evidenced = (counts > 0) & (in_groups > 0)

    def spread(weights: np.ndarray) -> float:
        return float(np.sqrt(max(float(np.sum(weights * (covariance @ weights))), 0.0)))

    own_spread, pooled_spread = spread(own[:, evidenced]), spread(pooled[:, evidenced])
    if own_spread > 0 and pooled_spread > 0:
        pooled = pooled * (own_spread / pooled_spread)
    alpha = np.where(in_groups > 0, counts / (counts + prior), 1.0)
    return own * alpha + pooled * (1.0 - alpha)
