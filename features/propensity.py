"""Inverse push-rate weights of opened pushes, so the training positives follow opens per push.

An item the campaigns pushed to many cardholders (or to one segment) collects many opened-push
positives whatever the cardholders' taste. Each opened push is weighted by the inverse of its item's
push rate within its cardholder's group (all cardholders, or a segment), raised to a power:

    rate(g, i) = (sends(g, i) + prior x sends(i) / n) / (n(g) + prior)
    weight     = rate(g, i) ** -power, clipped at `clip` x the median weight, scaled to mean 1

`prior` pseudo-cardholders shrink a small segment's rate toward the item's overall rate. At power 1
with one group an item's weighted opens sum to n x its opens per push (its open rate), not its volume.
"""

from __future__ import annotations

import numpy as np

OPEN_PROPENSITIES = ("none", "item", "segment")
"""`none`: opened pushes weigh `open_weight` as before; `item`: by the item's push rate over every
cardholder; `segment`: by its push rate within the cardholder's segment (`segment_by`)."""


def inverse_push_rate_weights(
    opened_items: np.ndarray,
    opened_groups: np.ndarray,
    sent_items: np.ndarray,
    sent_groups: np.ndarray,
    group_sizes: np.ndarray,
    n_items: int,
    power: float,
    prior: float,
    clip: float,
) -> np.ndarray:
    """float64 [n opened]: the weight of each opened push (item and group codes; every sent push's
    codes, opened ones included; cardholders per group), mean 1 over the opened pushes."""
    opened_items = np.asarray(opened_items, dtype=np.int64)
    if not opened_items.size:
        return np.zeros(0)
    sizes = np.asarray(group_sizes, dtype=np.float64)
    n_groups = sizes.size
    sends = np.bincount(np.asarray(sent_groups, np.int64) * n_items + np.asarray(sent_items, np.int64),
                        minlength=n_groups * n_items).astype(np.float64).reshape(n_groups, n_items)
    overall = sends.sum(axis=0) / sizes.sum()
    rate = (sends + prior * overall[None, :]) / (sizes[:, None] + prior)
    rate = rate[np.asarray(opened_groups, dtype=np.int64), opened_items]
    # an opened push was sent, so its rate is > 0 unless its send was not counted; treat that as one send
    floor = 1.0 / (sizes[np.asarray(opened_groups, dtype=np.int64)] + prior)
    weights = np.power(np.maximum(rate, floor), -float(power))
    weights = np.minimum(weights, clip * np.median(weights))
    return weights * (weights.size / weights.sum())
