"""The wide part as a choice: a conditional (multinomial) logit of which item each positive chose.

Each cardholder's first read or opened push of an item at time t is a choice among the items on offer
at t (their validity windows): P(i) = softmax over those items of b_i + x . W_i, x the cardholder's
standardised features. Unlike a per-item ridge of 0/1 positives, an item is not counted as unread by
someone active before it was on offer, and how many items a cardholder engages with does not enter
the slopes. W is folded into the same `RidgeFactors` as the ridge (the intercepts b are item levels,
which the item appeal sets). W may add a low-rank term through the item features, A (Y C)^T, so that
items share what their tags and kind say about who chooses them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from recsys.models.wide import RidgeFactors, low_rank_factors


class ChoiceLikelihood:
    """The logit's mean negative log-likelihood of `items[e]` among `offered[e]` as a function of the
    [active cardholders, items] score matrix; a cardholder's events with the same items on offer are
    computed once."""

    def __init__(self, users: np.ndarray, items: np.ndarray, offered: np.ndarray) -> None:
        n_items = offered.shape[1]
        offered = offered.copy()
        offered[np.arange(items.size), items] = True  # the chosen item was on offer, whatever the table says
        self.active = np.unique(users)  # only cardholders with events enter the likelihood
        rows = np.searchsorted(self.active, users)
        sets, set_of = np.unique(np.packbits(offered, axis=1), axis=0, return_inverse=True)
        pairs, self.counts = np.unique(rows * len(sets) + set_of.ravel(), return_counts=True)
        masks = np.unpackbits(sets, axis=1, count=n_items).astype(bool)[pairs % len(sets)]
        self.pair_row, self.cell_column = np.nonzero(masks)  # one cell per (pair, item on offer)
        self.cells = (pairs // len(sets))[self.pair_row] * n_items + self.cell_column
        self.first = np.flatnonzero(np.r_[True, self.pair_row[1:] != self.pair_row[:-1]])
        self.chosen = sp.csr_matrix((np.ones(items.size), (rows, items)),
                                    shape=(self.active.size, n_items)).toarray()
        self.total = float(items.size)

    def start_bias(self) -> np.ndarray:
        """The log of each item's choices per event it was on offer at, centred."""
        on_offer_at = np.bincount(self.cell_column, self.counts[self.pair_row],
                                  minlength=self.chosen.shape[1])
        rate = np.log((self.chosen.sum(axis=0) + 0.5) / (on_offer_at + 1.0))
        return rate - rate.mean()

    def __call__(self, scores: np.ndarray) -> tuple[float, np.ndarray]:
        """(loss, its gradient with respect to `scores`)."""
        logits = scores.ravel()[self.cells]
        top = np.maximum.reduceat(logits, self.first)
        share = np.exp(logits - top[self.pair_row])
        norm = np.add.reduceat(share, self.first)
        share *= (self.counts / norm)[self.pair_row]
        loss = (self.counts @ (np.log(norm) + top) - (self.chosen * scores).sum()) / self.total
        residual = np.bincount(self.cells, share, minlength=scores.size).reshape(scores.shape) - self.chosen
        return float(loss), residual / self.total


def fit_choice(features: np.ndarray, users: np.ndarray, items: np.ndarray, offered: np.ndarray,
               l2: float, max_iter: int = 100, start: np.ndarray | None = None, rank: int = 0,
               item_features: np.ndarray | None = None, rank_l2: float = 0.01, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """(b [items], W [features, items]) of the conditional logit P(items[e] | event e) = softmax over
    the items `offered[e]` (bool [events, items]) of b + features[users[e]] @ W, maximising the mean
    log-likelihood less `l2` / 2 x |W|^2 (and 1e-6 / 2 x |b|^2, which keeps an item never chosen
    finite), by L-BFGS with the analytic gradient from `start` (a previous fit's b and W stacked;
    default W = 0 and b the log of each item's choices per event it was on offer at).

    With `rank` K > 0, W also has a term A (item_features C)^T, A [features, K] and C [item features,
    K] started small at random (seeded by `seed`) and penalised by `rank_l2` / 2 x (|A|^2 + |C|^2); the
    W returned is the sum."""
    n_features, n_items = features.shape[1], offered.shape[1]
    if rank and item_features is None:
        raise ValueError("a low-rank choice term needs the item features")
    likelihood = ChoiceLikelihood(users, items, offered)
    x = np.asarray(features[likelihood.active], dtype=np.float32)
    y = np.asarray(item_features, dtype=np.float64) if rank else np.zeros((n_items, 0))
    sizes = (n_items, n_features * n_items, n_features * rank, y.shape[1] * rank)

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        bias, weights, a, c = np.split(theta, np.cumsum(sizes)[:-1])
        return (bias, weights.reshape(n_features, n_items), a.reshape(n_features, rank),
                c.reshape(y.shape[1], rank))

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        bias, weights, a, c = unpack(theta)
        items_low = y @ c
        slopes = weights + a @ items_low.T if rank else weights
        loss, residual = likelihood((x @ slopes.astype(np.float32)).astype(np.float64) + bias)
        loss += 0.5 * l2 * (weights ** 2).sum() + 0.5e-6 * (bias ** 2).sum()
        along = (x.T @ residual.astype(np.float32)).astype(np.float64)  # d loss / d slopes
        parts = [residual.sum(axis=0) + 1e-6 * bias, (along + l2 * weights).ravel()]
        if rank:
            loss += 0.5 * rank_l2 * ((a ** 2).sum() + (c ** 2).sum())
            parts += [(along @ items_low + rank_l2 * a).ravel(),
                      (y.T @ (along.T @ a) + rank_l2 * c).ravel()]
        return float(loss), np.concatenate(parts)

    if start is None:
        start = np.concatenate([likelihood.start_bias(), np.zeros(n_features * n_items)])
    tail = 0.01 * np.random.default_rng(seed).standard_normal(sum(sizes[2:]))
    result = minimize(objective, np.concatenate([start, tail]), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter})
    bias, weights, a, c = unpack(result.x)
    return bias, weights + a @ (y @ c).T if rank else weights


def standardised_columns(features: sp.spmatrix, keep: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dense standardised columns, their means, their scales) of the `keep` (bool) columns of
    `features` (a constant column keeps scale 1 and so stays 0)."""
    dense = np.asarray(sp.csr_matrix(features)[:, np.flatnonzero(keep)].toarray(), dtype=np.float64)
    mean = dense.mean(axis=0)
    scale = dense.std(axis=0)
    scale[scale == 0] = 1.0
    return (dense - mean) / scale, mean, scale


def choice_sets(positive_days: sp.spmatrix, item_offer_days: np.ndarray, max_users: int | None = None,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cardholder [events], item [events], offered bool [events, n_items]) of the choices in
    `positive_days` (see `fit_choice_factors`): positives of an item never on offer are left out, and
    only the events of at most `max_users` cardholders with events are kept (a sample seeded by
    `seed`; all when None)."""
    events = sp.coo_matrix(positive_days)
    days = np.asarray(item_offer_days, dtype=np.float64)
    begin = np.where(np.isnan(days[:, 0]), np.inf, days[:, 0])
    end = np.where(np.isnan(days[:, 1]), -np.inf, days[:, 1])
    kept = begin[events.col] <= end[events.col]
    active = np.unique(events.row[kept])
    if max_users is not None and active.size > max_users:
        # sampled before the events x items offer is built: that array is what grows with cardholders
        kept &= np.isin(events.row, np.random.default_rng(seed).choice(active, size=max_users, replace=False))
    users, items, times = events.row[kept], events.col[kept], events.data[kept]
    return users, items, (begin[None, :] <= times[:, None]) & (times[:, None] <= end[None, :])


def fit_choice_factors(features: sp.csr_matrix, positive_days: sp.spmatrix, item_offer_days: np.ndarray,
                       l2: float, max_rank: int, keep: np.ndarray | None = None,
                       max_users: int | None = None, seed: int = 0, rank: int = 0,
                       item_features: sp.spmatrix | None = None, rank_l2: float = 0.01,
                       item_presence: bool = False) -> RidgeFactors:
    """The choice logit folded into `RidgeFactors`: its slopes on the standardised `keep` columns of
    `features` [n, n_features] (all by default; the others get 0), scored centred as the ridge's are.

    `positive_days` [n, n_items] holds the day of each cardholder's first positive of each item,
    `item_offer_days` [n_items, 2] each item's first and last day on offer (NaN: never offered, e.g. a
    transactional notice, whose positives are left out), in the same day count. The logit is fitted on
    the events of at most `max_users` cardholders with events (a sample seeded by `seed`; all when None);
    the columns are standardised over every row either way. `rank` > 0 adds the low-rank term through
    `item_features` [n_items, q] (`fit_choice`), read as their values, or as 1 where a feature is
    present when `item_presence` (a tag then counts alike however many tags share the item)."""
    keep = np.ones(features.shape[1], dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    standard, mean, scale = standardised_columns(features, keep)
    # the fit's time and memory grow with cardholders x items on offer (~45 s at 10k cardholders)
    users, items, offered = choice_sets(positive_days, item_offer_days, max_users, seed)
    weights = np.zeros((features.shape[1], offered.shape[1]))
    dense_items = None
    if item_features is not None and rank:
        values = sp.csr_matrix(item_features)
        dense_items = (values != 0 if item_presence else values).toarray()
    if items.size:
        weights[keep] = fit_choice(standard, users, items, offered, l2, rank=rank, item_features=dense_items,
                                   rank_l2=rank_l2, seed=seed)[1] / scale[:, None]
    full_mean = np.zeros(features.shape[1])
    full_mean[keep] = mean
    return low_rank_factors(weights, full_mean, max_rank)
