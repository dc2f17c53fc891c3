"""The wide part as a choice: a conditional (multinomial) logit of which item each positive chose.

Each cardholder's first read or opened push of an item at time t is a choice among the items on offer
at t (their validity windows): P(i) = softmax over those items of b_i + x . W_i, x the cardholder's
standardised features. Unlike a per-item ridge of 0/1 positives, an item is not counted as unread by
someone active before it was on offer, and how many items a cardholder engages with does not enter
the slopes. W is folded into the same `RidgeFactors` as the ridge (the intercepts b are item levels,
which the item appeal sets).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from recsys.models.wide import RidgeFactors, low_rank_factors


def fit_choice(features: np.ndarray, users: np.ndarray, items: np.ndarray, offered: np.ndarray,
               l2: float, max_iter: int = 100, start: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(b [items], W [features, items]) of the conditional logit P(items[e] | event e) = softmax over
    the items `offered[e]` (bool [events, items]) of b + features[users[e]] @ W, maximising the mean
    log-likelihood less `l2` / 2 x |W|^2 (and 1e-6 / 2 x |b|^2, which keeps an item never chosen
    finite), by L-BFGS with the analytic gradient from `start` (a previous fit's b and W stacked;
    default W = 0 and b the log of each item's choices per event it was on offer at). A cardholder's
    events with the same items on offer are computed once."""
    n_features, n_items = features.shape[1], offered.shape[1]
    offered = offered.copy()
    offered[np.arange(items.size), items] = True  # the chosen item was on offer, whatever the table says
    active = np.unique(users)  # only cardholders with events enter the likelihood
    rows = np.searchsorted(active, users)
    sets, set_of = np.unique(np.packbits(offered, axis=1), axis=0, return_inverse=True)
    pairs, counts = np.unique(rows * len(sets) + set_of.ravel(), return_counts=True)
    masks = np.unpackbits(sets, axis=1, count=n_items).astype(bool)[pairs % len(sets)]
    pair_row, cell_column = np.nonzero(masks)  # one cell per (pair, item on offer), pair by pair
    cells = (pairs // len(sets))[pair_row] * n_items + cell_column
    first = np.flatnonzero(np.r_[True, pair_row[1:] != pair_row[:-1]])
    chosen = sp.csr_matrix((np.ones(items.size), (rows, items)), shape=(active.size, n_items)).toarray()
    x = np.asarray(features[active], dtype=np.float32)
    total = float(items.size)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        bias, weights = theta[:n_items], theta[n_items:].reshape(n_features, n_items)
        scores = (x @ weights.astype(np.float32)).astype(np.float64) + bias
        logits = scores.ravel()[cells]
        top = np.maximum.reduceat(logits, first)
        share = np.exp(logits - top[pair_row])
        norm = np.add.reduceat(share, first)
        share *= (counts / norm)[pair_row]
        loss = (counts @ (np.log(norm) + top) - (chosen * scores).sum()) / total
        residual = (np.bincount(cells, share, minlength=scores.size).reshape(scores.shape) - chosen) / total
        loss += 0.5 * l2 * (weights ** 2).sum() + 0.5e-6 * (bias ** 2).sum()
        gradient = np.concatenate([residual.sum(axis=0) + 1e-6 * bias,
                                   (x.T @ residual.astype(np.float32) + l2 * weights).ravel()])
        return float(loss), gradient

    if start is None:
        on_offer_at = np.bincount(cell_column, counts[pair_row], minlength=n_items)
        rate = (chosen.sum(axis=0) + 0.5) / (on_offer_at + 1.0)
        start = np.concatenate([np.log(rate) - np.log(rate).mean(), np.zeros(n_features * n_items)])
    result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return result.x[:n_items], result.x[n_items:].reshape(n_features, n_items)


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
                       max_users: int | None = None, seed: int = 0) -> RidgeFactors:
    """The choice logit folded into `RidgeFactors`: its slopes on the standardised `keep` columns of
    `features` [n, n_features] (all by default; the others get 0), scored centred as the ridge's are.

    `positive_days` [n, n_items] holds the day of each cardholder's first positive of each item,
    `item_offer_days` [n_items, 2] each item's first and last day on offer (NaN: never offered, e.g. a
    transactional notice, whose positives are left out), in the same day count. The logit is fitted on
    the events of at most `max_users` cardholders with events (a sample seeded by `seed`; all when None);
    the columns are standardised over every row either way."""
    keep = np.ones(features.shape[1], dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    standard, mean, scale = standardised_columns(features, keep)
    # the fit's time and memory grow with cardholders x items on offer (~45 s at 10k cardholders)
    users, items, offered = choice_sets(positive_days, item_offer_days, max_users, seed)
    weights = np.zeros((features.shape[1], offered.shape[1]))
    if items.size:
        weights[keep] = fit_choice(standard, users, items, offered, l2)[1] / scale[:, None]
    full_mean = np.zeros(features.shape[1])
    full_mean[keep] = mean
    return low_rank_factors(weights, full_mean, max_rank)
