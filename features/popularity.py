"""The served popularity fallback counted from the contract tables: recent reads and opened pushes."""

from __future__ import annotations

import pandas as pd

from features.bundle_inputs import card_tiers_of
from features.loader import Dataset
from recsys.cells import UNKNOWN
from recsys.fallback import WINDOW_DAYS, Popularity, PopularityCounts
from recsys.ids import IdIndex


def popularity(dataset: Dataset, as_of: pd.Timestamp, items: IdIndex) -> Popularity:
    """Reads and opened pushes in the `WINDOW_DAYS` before `as_of`, overall and per card tier of the
    cardholders table, each row scaled so its most popular item is 1."""
    return popularity_counts(dataset, as_of, items).shares()


def popularity_counts(dataset: Dataset, as_of: pd.Timestamp, items: IdIndex) -> PopularityCounts:
    """The counts `popularity` scales; counts of disjoint cardholder partitions add up."""
    ids = dataset.cardholders["user_id"].astype(str).drop_duplicates().to_numpy(dtype=object)
    holder_tier = pd.Series(card_tiers_of(dataset, ids), index=ids)
    tiers = sorted({str(t) for t in holder_tier if t != UNKNOWN})
    start = as_of - pd.Timedelta(days=WINDOW_DAYS)
    frames = [pd.DataFrame({"user_id": [], "content_id": []})]
    reads = dataset.article_reads
    if len(reads):
        window = reads[(reads["ts"] > start) & (reads["ts"] <= as_of)]
        frames.append(window[["user_id", "content_id"]])
    pushes = dataset.push_log
    if len(pushes):
        opened_ts = pushes["opened_ts"]
        opened = pushes[opened_ts.notna() & (opened_ts > start) & (opened_ts <= as_of)]
        frames.append(opened[["user_id", "content_id"]])
    events = pd.concat(frames, ignore_index=True)
    item = items.index_of(events["content_id"].astype(str).to_numpy(dtype=object))
    tier_of = holder_tier.reindex(events["user_id"].astype(str).to_numpy(dtype=object)).to_numpy(dtype=object)
    return PopularityCounts.of_events(tiers, item, pd.Index(tiers).get_indexer(tier_of), len(items))
