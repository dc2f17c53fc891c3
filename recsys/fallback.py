"""Popularity, overall and per card tier: how the API ranks cardholders the model cannot score, how the
studio's simulation ranks when it is given no model, and the baseline model every model must beat."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

WINDOW_DAYS = 90  # reads and opens this recent count; older taste is stale for a monthly push plan
TIER_WEIGHT = 0.8  # a tier's score leans this much on its own tier, the rest on everyone


@dataclass(frozen=True)
class Popularity:
    """Overall [n_items] and per-tier [n_tiers, n_items] popularity in [0, 1] (float32)."""

    tiers: list[str]
    overall: np.ndarray
    per_tier: np.ndarray

    @classmethod
    def of_events(cls, tiers: Sequence[str], item: np.ndarray, tier: np.ndarray, n_items: int,
                  weights: np.ndarray | None = None) -> Popularity:
        """Popularity from events (`PopularityCounts.of_events`), each row scaled so its most
        popular item is 1; a tier's row blends in the overall one."""
        return PopularityCounts.of_events(tiers, item, tier, n_items, weights).shares()

    def factors(self, user_tiers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(user [n, n_tiers + 1], item [n_items, n_tiers + 1]) factors whose product is each
        cardholder's fallback score: their tier's popularity, or the overall one for other tiers."""
        column = pd.Index(self.tiers).get_indexer(np.asarray(user_tiers, dtype=object).astype(str))
        column = np.where(column >= 0, column, len(self.tiers))
        users = np.zeros((len(column), len(self.tiers) + 1), dtype=np.float32)
        users[np.arange(len(column)), column] = 1.0
        items = np.column_stack([*self.per_tier, self.overall]).astype(np.float32)
        return users, items.reshape(len(self.overall), len(self.tiers) + 1)


@dataclass(frozen=True)
class PopularityCounts:
    """Event counts per item, overall [n_items] and per card tier [n_tiers, n_items]: what `Popularity`
    is scaled from, and what disjoint partitions of the cardholders add up."""

    tiers: list[str]
    overall: np.ndarray
    per_tier: np.ndarray

    @classmethod
    def of_events(cls, tiers: Sequence[str], item: np.ndarray, tier: np.ndarray, n_items: int,
                  weights: np.ndarray | None = None) -> PopularityCounts:
        """Counts of events: `item` [n] item index (-1: not a model item, ignored), `tier` [n] index
        into `tiers` (-1: counts overall only), `weights` [n] (None: each event counts 1)."""
        item = np.asarray(item, dtype=np.int64)
        tier = np.asarray(tier, dtype=np.int64)
        weights = np.ones(len(item)) if weights is None else np.asarray(weights, dtype=np.float64)
        known = item >= 0
        overall = np.bincount(item[known], weights[known], minlength=n_items).astype(np.float64)
        both = known & (tier >= 0)
        flat = np.bincount(tier[both] * n_items + item[both], weights[both], minlength=len(tiers) * n_items)
        return cls(list(tiers), overall, flat.astype(np.float64).reshape(len(tiers), n_items))

    @staticmethod
    def combine(parts: Sequence[PopularityCounts]) -> PopularityCounts:
        """The counts of the cardholders of all `parts` (disjoint sets of cardholders)."""
        tiers = sorted({tier for part in parts for tier in part.tiers})
        overall = np.sum([part.overall for part in parts], axis=0)
        per_tier = np.zeros((len(tiers), len(overall)), np.float64)
        for part in parts:
            per_tier[pd.Index(tiers).get_indexer(part.tiers)] += part.per_tier
        return PopularityCounts(tiers, overall, per_tier)

    def shares(self) -> Popularity:
        """Each row scaled so its most popular item is 1; a tier leans `TIER_WEIGHT` on its own counts."""
        overall_share = _top_scaled(self.overall)
        blended = TIER_WEIGHT * _top_scaled(self.per_tier) + (1 - TIER_WEIGHT) * overall_share
        return Popularity(list(self.tiers), overall_share.astype(np.float32), blended.astype(np.float32))


def _top_scaled(values: np.ndarray) -> np.ndarray:
    top = values.max(axis=-1, keepdims=True) if values.size else values
    return np.divide(values, top, out=np.zeros_like(values), where=top > 0)
