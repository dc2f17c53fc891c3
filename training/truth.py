"""Scoring against a synthetic world's hidden truth: the expected open rate of each model's top-1 push.

For every cardholder with at least one eligible item at the as-of time, the truth's open probability
of the item a model would push first; the ceiling is the truth's own best eligible item.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recsys.ids import IdIndex
from recsys.ranking import Eligibility, top_k

if TYPE_CHECKING:
    from features.loader import Dataset
    from recsys.world.truth import WorldTruth

logger = logging.getLogger(__name__)


class TruthMismatchError(ValueError):
    """The truth file does not describe the data that was trained on."""


def load_truth(path: Path) -> WorldTruth:
    from recsys.world.truth import WorldTruth

    return WorldTruth.load(path)


def check_truth_covers(truth: WorldTruth, dataset: Dataset) -> None:
    """Refuse, before any fitting, a truth file written for another world."""
    users = truth.user_index(dataset.cardholders["user_id"].astype(str).to_numpy(dtype=object))
    items = truth.content_index(dataset.content["content_id"].astype(str).to_numpy(dtype=object))
    if (users < 0).any() or (items < 0).any():
        raise TruthMismatchError(
            f"the truth file lacks {int((users < 0).sum())} cardholder(s) and {int((items < 0).sum())} "
            f"item(s) of {dataset.root}: pass the truth written with this data directory (--truth)"
        )


def aligned_open_prob(truth: WorldTruth, users: IdIndex, items: IdIndex) -> np.ndarray:
    """float32 [n_users, n_items] truth open probabilities in the model's user and item order."""
    user_pos = truth.user_index(users.ids)
    item_pos = truth.content_index(items.ids)
    if (user_pos < 0).any() or (item_pos < 0).any():
        raise TruthMismatchError(
            f"the truth file lacks {int((user_pos < 0).sum())} cardholder(s) and {int((item_pos < 0).sum())} "
            "item(s) of the data: pass the truth written with this data directory (--truth)"
        )
    return np.ascontiguousarray(np.asarray(truth.open_prob)[user_pos][:, item_pos], dtype=np.float32)


def top1_open_rate(open_prob: np.ndarray, top1: np.ndarray) -> float:
    """Mean truth open probability of each cardholder's top-1 item (cardholders with none skipped)."""
    has = top1 >= 0
    if not has.any():
        return float("nan")
    return float(open_prob[np.flatnonzero(has), top1[has]].mean())


def best_eligible(open_prob: np.ndarray, eligibility: Eligibility) -> np.ndarray:
    """Index of each cardholder's truly best eligible item (-1 when nothing is eligible)."""
    identity = np.eye(open_prob.shape[1], dtype=np.float32)
    indices, _ = top_k(open_prob, identity, 1, eligibility)
    return indices[:, 0]


def expected_open_rates(
    open_prob: np.ndarray, eligibility: Eligibility, top1_by_model: dict[str, np.ndarray]
) -> dict[str, float]:
    """`open_rate_top1.<model>` per model plus `open_rate_top1.truth_best` (the ceiling)."""
    out = {f"open_rate_top1.{name}": top1_open_rate(open_prob, top1) for name, top1 in top1_by_model.items()}
    out["open_rate_top1.truth_best"] = top1_open_rate(open_prob, best_eligible(open_prob, eligibility))
    return out
