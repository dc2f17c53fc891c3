"""Ranking metrics as pure functions: per user, then averaged over the users that count.

Inputs are plain arrays: `recommended` is int [n_users, k] (item indices best first, -1 = empty
slot), `relevant` is a csr [n_users, n_items] (a stored entry = relevant item for that user).
Users with no relevant item are left out of the averages (their precision is undefined for the
question "did we find what they wanted"); the per-user functions say so by returning NaN.

Definitions (those of the public MovieLens benchmark in recommenders-team/recommenders):
- precision@k = hits in the top k / k
- recall@k = hits in the top k / |relevant|
- nDCG@k: binary gain, DCG = sum over hits of 1 / log2(rank + 1); ideal DCG over min(k, |relevant|)
- MAP (average precision@k, recommenders' `map`): sum of precision at each hit's rank in the top k,
  divided by ALL of the user's relevant items (not by min(k, |relevant|))
- AUC: probability that a relevant item scores above a non-relevant one (ties count one half),
  over the eligible items of each user
- coverage: share of the catalogue that appears in at least one user's top k
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class MetricsError(ValueError):
    """Metric inputs that disagree in shape or type."""


def hits_matrix(recommended: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """bool [n_users, k]: whether the item at each rank is relevant for that user."""
    recs, truth = _check(recommended, relevant)
    n_users, k = recs.shape
    hits = np.zeros((n_users, k), dtype=bool)
    if truth.nnz == 0 or recs.size == 0:
        return hits
    rows = np.repeat(np.arange(n_users), k)
    cols = recs.ravel()
    valid = cols >= 0
    lookup = truth[rows[valid], cols[valid]]
    hits.ravel()[np.flatnonzero(valid)] = np.asarray(lookup).ravel() != 0
    return hits


def precision_at_k(recommended: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """Per-user precision@k (hits / k; NaN for users without relevant items)."""
    hits, n_relevant, k = _prepare(recommended, relevant, k)
    return _undefined_without_relevant(hits.sum(axis=1) / k, n_relevant)


def recall_at_k(recommended: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """Per-user recall@k (hits / |relevant|; NaN for users without relevant items)."""
    hits, n_relevant, _ = _prepare(recommended, relevant, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _undefined_without_relevant(hits.sum(axis=1) / n_relevant, n_relevant)


def ndcg_at_k(recommended: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """Per-user nDCG@k with binary gain; ideal DCG over min(k, |relevant|) hits."""
    hits, n_relevant, k = _prepare(recommended, relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts
    ideal_cumulative = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cumulative[np.minimum(n_relevant, k).astype(np.int64)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _undefined_without_relevant(dcg / idcg, n_relevant)


def average_precision_at_k(
    recommended: np.ndarray, relevant: sp.spmatrix, k: int | None = None
) -> np.ndarray:
    """Per-user AP@k: sum of precision at each hit's rank (within k) / |relevant| (all of them)."""
    hits, n_relevant, k = _prepare(recommended, relevant, k)
    ranks = np.arange(1, k + 1)
    precision_at_rank = np.cumsum(hits, axis=1) / ranks
    with np.errstate(invalid="ignore", divide="ignore"):
        return _undefined_without_relevant((precision_at_rank * hits).sum(axis=1) / n_relevant, n_relevant)


def auc(scores: np.ndarray, relevant: sp.spmatrix, eligible: np.ndarray | None = None) -> np.ndarray:
    """Per-user ROC AUC of `scores` [n_users, n_items] for the relevant items.

    `eligible` (bool [n_users, n_items], default all) restricts both positives and negatives, e.g. to
    items not seen in training. NaN for users with no eligible positive or no eligible negative. Each
    user's row is `weighted_auc` of its eligible items at unit weights: one way of ranking scores.
    """
    values = np.asarray(scores, dtype=np.float64)
    truth = sp.csr_matrix(relevant)
    if values.ndim != 2 or values.shape != truth.shape:
        raise MetricsError(f"scores have shape {values.shape}, relevant {truth.shape}: they must match")
    positive = truth.toarray() != 0
    mask = np.ones_like(positive) if eligible is None else np.asarray(eligible, dtype=bool)
    if mask.shape != positive.shape:
        raise MetricsError(f"eligible has shape {mask.shape}, expected {positive.shape}")
    result = np.full(values.shape[0], np.nan)
    for user in range(values.shape[0]):
        keep = positive[user][mask[user]]
        if keep.all() or not keep.any():
            continue
        result[user] = weighted_auc(values[user][mask[user]], keep)[0]
    return result


def weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Pooled ROC AUC of `scores` [n] (positive vs the rest) under each row of `weights` [replicates, n]
    (e.g. bootstrap counts; default one row of ones, the plain AUC); ties count half, NaN for a row
    without positive or negative weight."""
    values, inverse = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
    positive = np.asarray(positive, dtype=bool)
    weights = np.ones((1, inverse.size)) if weights is None else np.atleast_2d(
        np.asarray(weights, dtype=np.float64))
    if weights.shape[1] != positive.size or positive.size != inverse.size:
        raise MetricsError(f"scores ({inverse.size}), positive ({positive.size}) and weights' columns "
                           f"({weights.shape[1]}) must have one entry per example")
    # row i: a one at example i's distinct score (one entry a row, so written as CSR directly)
    group = sp.csr_matrix((np.ones(inverse.size), inverse, np.arange(inverse.size + 1)),
                          shape=(inverse.size, values.size))
    pos = np.asarray(group.T @ (weights * positive).T).T  # weight per distinct score
    neg = np.asarray(group.T @ (weights * ~positive).T).T
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def catalogue_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the `n_items` catalogue recommended to at least one user."""
    recs = np.asarray(recommended)
    if n_items <= 0:
        raise MetricsError(f"n_items must be > 0, got {n_items}")
    shown = np.unique(recs[recs >= 0])
    if shown.size and shown.max() >= n_items:
        raise MetricsError(f"recommended item index {int(shown.max())} outside a catalogue of {n_items}")
    return float(shown.size / n_items)


def mean_over_users(per_user: np.ndarray) -> float:
    """Average over users for whom the metric is defined (NaN entries left out); NaN when none."""
    values = np.asarray(per_user, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def ranking_report(recommended: np.ndarray, relevant: sp.spmatrix, k: int | None = None) -> dict[str, float]:
    """Mean precision@k, recall@k, nDCG@k and MAP@k, plus the number of users counted."""
    recs, truth = _check(recommended, relevant)
    k = recs.shape[1] if k is None else k
    n_relevant = np.diff(truth.indptr)
    return {
        f"precision@{k}": mean_over_users(precision_at_k(recs, truth, k)),
        f"recall@{k}": mean_over_users(recall_at_k(recs, truth, k)),
        f"ndcg@{k}": mean_over_users(ndcg_at_k(recs, truth, k)),
        f"map@{k}": mean_over_users(average_precision_at_k(recs, truth, k)),
        "users": int((n_relevant > 0).sum()),
    }


def _check(recommended: np.ndarray, relevant: sp.spmatrix) -> tuple[np.ndarray, sp.csr_matrix]:
    recs = np.asarray(recommended)
    if recs.ndim != 2 or not np.issubdtype(recs.dtype, np.integer):
        raise MetricsError(
            f"recommended must be a 2-d integer array [n_users, k], got {recs.dtype} {recs.shape}"
        )
    if not sp.issparse(relevant):
        raise MetricsError(f"relevant must be a scipy sparse matrix, got {type(relevant).__name__}")
    truth = sp.csr_matrix(relevant)
    truth.eliminate_zeros()
    if truth.shape[0] != recs.shape[0]:
        raise MetricsError(
            f"recommended has {recs.shape[0]} users, relevant {truth.shape[0]}: rows must align"
        )
    if recs.size and recs.max() >= truth.shape[1]:
        raise MetricsError(f"recommended item index {int(recs.max())} outside {truth.shape[1]} items")
    if recs.size and recs.min() < -1:
        raise MetricsError("recommended holds indices below -1 (-1 is the only empty-slot marker)")
    return recs, truth


def _prepare(recommended: np.ndarray, relevant: sp.spmatrix, k: int | None):
    recs, truth = _check(recommended, relevant)
    k = recs.shape[1] if k is None else int(k)
    if k < 1 or k > recs.shape[1]:
        raise MetricsError(f"k={k} must be between 1 and the {recs.shape[1]} recommended columns")
    hits = hits_matrix(recs[:, :k], truth)
    # a top k repeating an item would count its one hit twice
    if k > 1:
        sorted_recs = np.sort(recs[:, :k], axis=1)
        if np.any((sorted_recs[:, 1:] == sorted_recs[:, :-1]) & (sorted_recs[:, 1:] >= 0)):
            raise MetricsError("recommended repeats an item within a user's top k: deduplicate it")
    return hits, np.diff(truth.indptr).astype(np.float64), k


def _undefined_without_relevant(values: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    return np.where(n_relevant > 0, values, np.nan)


PER_USER = {"precision": precision_at_k, "recall": recall_at_k, "ndcg": ndcg_at_k,
            "map": average_precision_at_k}
"""The metrics defined per user (the ones a bootstrap over users can resample), by name before `@k`."""


def per_user(name: str, recommended: np.ndarray, relevant: sp.spmatrix, k: int) -> np.ndarray:
    """Per-user values of `name` (precision, recall, ndcg or map; NaN where undefined)."""
    if name not in PER_USER:
        raise MetricsError(f"{name!r} is not a per-user metric; choose from {sorted(PER_USER)}")
    return PER_USER[name](recommended, relevant, k)


def bootstrap_interval(values: np.ndarray, confidence: float = 0.95, n_resamples: int = 1000,
                       seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean over users and its percentile bootstrap interval (NaN entries
    left out; (mean, NaN, NaN) with fewer than two users). Resampling per-user differences of two
    models on the same users gives the paired bootstrap of their difference."""
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    mean = float(values.mean()) if values.size else float("nan")
    if values.size < 2 or np.all(values == values[0]):
        return mean, mean if values.size >= 2 else float("nan"), mean if values.size >= 2 else float("nan")
    result = bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                       method="percentile", random_state=np.random.default_rng(seed), vectorized=True)
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)
