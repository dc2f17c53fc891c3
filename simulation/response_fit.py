"""A simple open/mute response model fitted on a real push log, for worlds without a hidden truth.

Two logistic models, each fitted by penalised maximum likelihood on the push log aggregated into
(cell, recent-push-count) groups, so millions of pushes fit in a second:

    logit P(open  | u, i) = a[tier(u), activity(u), kind(i)] + e[i] - f * recent
    logit P(mute  | u)    = c[tier(u), activity(u)] + g * recent

`recent` is the number of marketing pushes the cardholder received in the trailing 30 days, this one
included (as in the synthetic world's response model). `e[i]` is a per-content appeal shrunk toward
zero (L2), so contents with few pushes stay near their cell's rate; `f` is the open fatigue and `g`
the mute rise with frequency, both constrained to be non-negative (more pushes never make a cardholder
more likely to open, nor less likely to mute). Transactional notices are left out of the fit: they
are never simulated. Personal taste is not modelled: every cardholder of a segment answers alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from simulation.vector_caps import Items, SimulationError

if TYPE_CHECKING:
    from features.loader import Dataset

WINDOW_DAYS = 30
MIN_PUSHES = 100
MAX_RECENT = 60
L2_CELL = 1.0
L2_ITEM = 4.0


class ResponseFitError(SimulationError):
    """The push log cannot support a fitted response model."""


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def recent_counts(user_codes: np.ndarray, sent: np.ndarray, window_seconds: int) -> np.ndarray:
    """Pushes to the same cardholder in `(t - window, t]`, this one included, for each push."""
    order = np.lexsort((sent, user_codes))
    span = int(sent.max() - sent.min() + 2 * window_seconds + 1) if len(sent) else 1
    key = user_codes[order].astype(np.int64) * span + (sent[order] - sent.min() + window_seconds)
    first = np.searchsorted(key, key - window_seconds, side="right")
    counts = np.empty(len(sent), dtype=np.int64)
    counts[order] = np.arange(len(sent)) - first + 1
    return counts


def fit_binomial(cells: np.ndarray, n_cells: int, recent: np.ndarray, trials: np.ndarray, hits: np.ndarray,
                 penalties: np.ndarray, slope_sign: float) -> tuple[np.ndarray, float]:
    """Penalised logistic fit of `logit p = coef[cells].sum(axis=1) + slope_sign * slope * recent`.

    `cells` is int [groups, n_terms] (one coefficient per term, summed), `penalties` the L2 weight per
    coefficient; `slope >= 0`. Returns (coefficients, slope).
    """

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        coef, slope = params[:-1], params[-1]
        z = coef[cells].sum(axis=1) + slope_sign * slope * recent
        p = sigmoid(z)
        value = float(np.sum(trials * np.logaddexp(0.0, z) - hits * z) + 0.5 * np.sum(penalties * coef**2))
        residual = trials * p - hits
        grad = np.zeros_like(params)
        for term in range(cells.shape[1]):
            grad[:-1] += np.bincount(cells[:, term], weights=residual, minlength=n_cells)
        grad[:-1] += penalties * coef
        grad[-1] = float(np.sum(residual * slope_sign * recent))
        return value, grad

    start = np.zeros(n_cells + 1)
    bounds = [(None, None)] * n_cells + [(0.0, None)]
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return result.x[:-1], float(result.x[-1])


@dataclass(frozen=True)
class FittedResponse:
    """Open and mute probabilities from the fitted cells; same interface as the world's ResponseModel."""

    user_cell: np.ndarray  # int [n_users]: tier x activity cell
    item_kind: np.ndarray  # int [n_items]
    n_kinds: int
    open_cell: np.ndarray  # [n_user_cells * n_kinds]
    item_appeal: np.ndarray  # [n_items]
    open_fatigue: float
    mute_cell: np.ndarray  # [n_user_cells]
    mute_per_push: float
    n_pushes: int
    window_days: int = WINDOW_DAYS

    def open_probability(self, users: np.ndarray, items: np.ndarray, recent_pushes: np.ndarray,
                         local_hours: np.ndarray | None = None) -> np.ndarray:
        """P(open); this segment model has no hour terms, so `local_hours` does not change it."""
        users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        cell = self.user_cell[users] * self.n_kinds + self.item_kind[items]
        z = self.open_cell[cell] + self.item_appeal[items] - self.open_fatigue * np.asarray(recent_pushes)
        return sigmoid(z)

    def mute_probability(self, users: np.ndarray, recent_pushes: np.ndarray,
                         items: np.ndarray | None = None) -> np.ndarray:
        users = np.asarray(users)
        return sigmoid(self.mute_cell[self.user_cell[users]] + self.mute_per_push * np.asarray(recent_pushes))

    def describe(self) -> str:
        base_open = float(np.mean(sigmoid(self.open_cell)))
        base_mute = float(np.mean(sigmoid(self.mute_cell)))
        return (
            f"{self.n_pushes:,} pushes; open ~{base_open:.3f} per push less {self.open_fatigue:.3f} logit "
            f"per recent push; mute ~{base_mute:.4f} plus {self.mute_per_push:.3f} logit per push in "
            f"{self.window_days} days"
        )


def fit_response(dataset: Dataset, user_ids: np.ndarray, segments: dict[str, np.ndarray],
                 content_ids: np.ndarray, items: Items, as_of: pd.Timestamp) -> FittedResponse:
    """Fit the open and mute models on the push log up to `as_of` (see the module docstring)."""
    from recsys.ids import IdIndex

    pushes = dataset.push_log
    pushes = pushes.loc[(pushes["sent_ts"] <= as_of).to_numpy()]
    item_index = IdIndex(content_ids).index_of(pushes["content_id"].astype(str).to_numpy(dtype=object))
    known = item_index >= 0
    marketing = known & ~items.transactional[np.maximum(item_index, 0)]
    pushes, item_index = pushes.loc[marketing], item_index[marketing]
    if len(pushes) < MIN_PUSHES:
        raise ResponseFitError(
            f"the push log has {len(pushes)} marketing pushes up to {as_of.date()}: at least {MIN_PUSHES} "
            "are needed to fit an open/mute model; add push history, or give the synthetic world's --truth"
        )
    # Segment cells of every cardholder of the data (the push log may name cardholders not simulated).
    cell_labels = np.char.add(np.char.add(segments["card_tier"].astype(str), "/"),
                              segments["activity"].astype(str))
    cell_names, user_cell = np.unique(cell_labels, return_inverse=True)
    all_ids = IdIndex(user_ids)
    push_user = all_ids.index_of(pushes["user_id"].astype(str).to_numpy(dtype=object))
    sent = pushes["sent_ts"].to_numpy(dtype="datetime64[s]").astype(np.int64)
    recent = recent_counts(np.where(push_user >= 0, push_user, -1 - np.arange(len(push_user))), sent,
                           WINDOW_DAYS * 86400)
    in_world = push_user >= 0
    if in_world.sum() < MIN_PUSHES:
        raise ResponseFitError(
            f"only {int(in_world.sum())} pushes of the push log went to the simulated cardholders: at least "
            f"{MIN_PUSHES} are needed; simulate more cardholders"
        )
    kinds, item_kind = np.unique(items.kinds.astype(str), return_inverse=True)
    opened = (pushes["opened_ts"].notna() & (pushes["opened_ts"] <= as_of)).to_numpy(dtype=bool)[in_world]
    muted = pushes["muted"].astype("boolean").fillna(False).to_numpy(dtype=bool)[in_world]
    p_user, p_item = push_user[in_world], item_index[in_world]
    p_recent = np.minimum(recent[in_world], MAX_RECENT)
    n_user_cells, n_kinds, n_items = len(cell_names), len(kinds), len(content_ids)

    # open model: cell x kind coefficient + item appeal, grouped by (cell, item, recent)
    open_cell = user_cell[p_user] * n_kinds + item_kind[p_item]
    frame = pd.DataFrame({"cell": open_cell, "item": p_item, "recent": p_recent, "hit": opened})
    grouped = frame.groupby(["cell", "item", "recent"], sort=True)["hit"].agg(["size", "sum"]).reset_index()
    item_terms = n_user_cells * n_kinds + grouped["item"].to_numpy()
    terms = np.stack([grouped["cell"].to_numpy(), item_terms], axis=1)
    penalties = np.concatenate([np.full(n_user_cells * n_kinds, L2_CELL), np.full(n_items, L2_ITEM)])
    coef, fatigue = fit_binomial(terms, n_user_cells * n_kinds + n_items, grouped["recent"].to_numpy(float),
                                 grouped["size"].to_numpy(float), grouped["sum"].to_numpy(float), penalties,
                                 slope_sign=-1.0)
    # mute model: cell coefficient, grouped by (cell, recent)
    frame = pd.DataFrame({"cell": user_cell[p_user], "recent": p_recent, "hit": muted})
    grouped = frame.groupby(["cell", "recent"], sort=True)["hit"].agg(["size", "sum"]).reset_index()
    mute_coef, mute_slope = fit_binomial(grouped[["cell"]].to_numpy(), n_user_cells,
                                         grouped["recent"].to_numpy(float), grouped["size"].to_numpy(float),
                                         grouped["sum"].to_numpy(float), np.full(n_user_cells, L2_CELL),
                                         slope_sign=1.0)
    return FittedResponse(
        user_cell=user_cell.astype(np.int64),
        item_kind=item_kind.astype(np.int64),
        n_kinds=n_kinds,
        open_cell=coef[: n_user_cells * n_kinds],
        item_appeal=coef[n_user_cells * n_kinds:],
        open_fatigue=fatigue,
        mute_cell=mute_coef,
        mute_per_push=mute_slope,
        n_pushes=int(in_world.sum()),
    )
