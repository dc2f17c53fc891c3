"""The popularity fallback: how the API ranks cardholders the model cannot score, and how the studio's
simulation ranks when it is given no model, so both rank alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.eligibility import UNKNOWN_TIER, card_tiers_of
from recsys.ids import IdIndex

if TYPE_CHECKING:
    from features.loader import Dataset

WINDOW_DAYS = 90  # reads and opens this recent count; older taste is stale for a monthly push plan
TIER_WEIGHT = 0.8  # a tier's score leans this much on its own tier, the rest on everyone


@dataclass(frozen=True)
class Popularity:
    """Overall [n_items] and per-tier [n_tiers, n_items] popularity in [0, 1] (float32)."""

    tiers: list[str]
    overall: np.ndarray
    per_tier: np.ndarray

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
    """Reads and opens per item, overall [n_items] and per card tier [n_tiers, n_items]: what
    `Popularity` is scaled from, and what partitions of the cardholders add up."""

    tiers: list[str]
    overall: np.ndarray
    per_tier: np.ndarray

    @staticmethod
    def combine(parts: list[PopularityCounts]) -> PopularityCounts:
        """The counts of the cardholders of all `parts` (disjoint sets of cardholders)."""
        tiers = sorted({tier for part in parts for tier in part.tiers})
        overall = np.sum([part.overall for part in parts], axis=0)
        per_tier = np.zeros((len(tiers), len(overall)), np.float64)
        for part in parts:
            per_tier[pd.Index(tiers).get_indexer(part.tiers)] += part.per_tier
        return PopularityCounts(tiers, overall, per_tier)

    def shares(self) -> Popularity:
        """Each scaled so the most popular item is 1; a tier leans `TIER_WEIGHT` on its own counts."""
        def norm(values: np.ndarray) -> np.ndarray:
            top = values.max(axis=-1, keepdims=True) if values.size else values
            return np.divide(values, top, out=np.zeros_like(values), where=top > 0)

        overall_share = norm(self.overall)
        blended = TIER_WEIGHT * norm(self.per_tier) + (1 - TIER_WEIGHT) * overall_share
        return Popularity(self.tiers, overall_share.astype(np.float32), blended.astype(np.float32))


def popularity(dataset: Dataset, as_of: pd.Timestamp, items: IdIndex) -> Popularity:
    """Reads and opened pushes in the `WINDOW_DAYS` before `as_of`, overall and per card tier of the
    cardholders table (each scaled so the most popular item is 1)."""
    return popularity_counts(dataset, as_of, items).shares()


def popularity_counts(dataset: Dataset, as_of: pd.Timestamp, items: IdIndex) -> PopularityCounts:
    """The counts `popularity` scales."""
    ids = dataset.cardholders["user_id"].astype(str).drop_duplicates().to_numpy(dtype=object)
    holder_tier = pd.Series(card_tiers_of(dataset, ids), index=ids)
    tiers = sorted({str(t) for t in holder_tier if t != UNKNOWN_TIER})
    start = as_of - pd.Timedelta(days=WINDOW_DAYS)
    frames = []
    reads = dataset.article_reads
    if len(reads):
        window = reads[(reads["ts"] > start) & (reads["ts"] <= as_of)]
        frames.append(window[["user_id", "content_id"]])
    pushes = dataset.push_log
    if len(pushes):
        opened_ts = pushes["opened_ts"]
        opened = pushes[opened_ts.notna() & (opened_ts > start) & (opened_ts <= as_of)]
        frames.append(opened[["user_id", "content_id"]])
    n_items = len(items)
    overall = np.zeros(n_items, np.float64)
    per_tier = np.zeros((len(tiers), n_items), np.float64)
    if frames:
        events = pd.concat(frames, ignore_index=True)
        item = items.index_of(events["content_id"].astype(str).to_numpy())
        known = item >= 0
        overall = np.bincount(item[known], minlength=n_items).astype(np.float64)
        tier_of = holder_tier.reindex(events["user_id"].astype(str).to_numpy()).to_numpy(dtype=object)
        tier_index = pd.Index(tiers).get_indexer(tier_of)
        both = known & (tier_index >= 0)
        flat = np.bincount(tier_index[both] * n_items + item[both], minlength=len(tiers) * n_items)
        per_tier = flat.reshape(len(tiers), n_items).astype(np.float64)
    return PopularityCounts(tiers, overall, per_tier)
