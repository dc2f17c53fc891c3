"""Implicit feedback from reads and pushes: time-decayed positives, weak negatives, what was seen."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.builder import DAY, days_before, dwell_weight
from features.config import FeatureConfig
from features.loader import Dataset
from recsys.ids import IdIndex

EVENT_COLUMNS = ["user_id", "content_id", "ts", "weight"]


def _events(frame: pd.DataFrame, time_column: str, weight: np.ndarray) -> pd.DataFrame:
    """Rows of a reads or push table as (user_id, content_id, ts, weight) events."""
    return pd.DataFrame({
        "user_id": frame["user_id"].astype(str).to_numpy(dtype=object),
        "content_id": frame["content_id"].astype(str).to_numpy(dtype=object),
        "ts": frame[time_column].array,
        "weight": weight,
    })


def positive_events(
    dataset: Dataset, as_of: pd.Timestamp, config: FeatureConfig, since: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Reads (weighted by dwell) and push opens (at the open time) in `(since, as_of]`, undecayed."""
    reads = dataset.article_reads
    in_range = reads["ts"] <= as_of
    if since is not None:
        in_range &= reads["ts"] > since
    reads = reads.loc[in_range.to_numpy()]
    read_events = _events(reads, "ts", config.read_weight * dwell_weight(reads["dwell_seconds"], config))
    pushes = dataset.push_log
    opened = pushes["opened_ts"].notna() & (pushes["opened_ts"] <= as_of)
    if since is not None:
        opened &= pushes["opened_ts"] > since
    pushes = pushes.loc[opened.to_numpy()]
    open_events = _events(pushes, "opened_ts", np.full(len(pushes), config.open_weight))
    frames = [frame for frame in (read_events, open_events) if len(frame)]
    if not frames:
        return pd.DataFrame({column: pd.Series([], dtype=object) for column in EVENT_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def negative_events(dataset: Dataset, as_of: pd.Timestamp, config: FeatureConfig) -> pd.DataFrame:
    """Pushes sent at least `negative_grace_days` before `as_of` and not opened by `as_of`."""
    pushes = dataset.push_log
    old_enough = pushes["sent_ts"] <= as_of - config.negative_grace_days * DAY
    unopened = pushes["opened_ts"].isna() | (pushes["opened_ts"] > as_of)
    pushes = pushes.loc[(old_enough & unopened).to_numpy()]
    return _events(pushes, "sent_ts", np.full(len(pushes), config.negative_weight))


def marketing_items(dataset: Dataset, items: IdIndex) -> np.ndarray:
    """bool [n_items]: False for the items the content table marks as transactional notices (never
    ranked), True for every other item."""
    content = dataset.content
    transactional = content.loc[content["transactional"].fillna(False).to_numpy(dtype=bool), "content_id"]
    notices = items.index_of(transactional.astype(str).to_numpy(dtype=object))
    marketing = np.ones(len(items), dtype=bool)
    marketing[notices[notices >= 0]] = False
    return marketing


def push_counts(dataset: Dataset, as_of: pd.Timestamp, items: IdIndex, config: FeatureConfig
                ) -> tuple[np.ndarray, np.ndarray]:
    """(sends, opens) float64 [n_items] up to `as_of`: pushes sent at least `negative_grace_days`
    before it, and of those the opened by then. Younger pushes count for nothing, opened or not: their
    unopened ones may still be opened, and counting only their opens would put an item pushed in the
    last days near a rate of 1. Transactional notices count for nothing: they are never ranked, and how
    often a statement reminder is opened says nothing of the rate of marketing content."""
    pushes = dataset.push_log
    opened = (pushes["opened_ts"].notna() & (pushes["opened_ts"] <= as_of)).to_numpy()
    counted = (pushes["sent_ts"] <= as_of - config.negative_grace_days * DAY).to_numpy()
    cols = items.index_of(pushes["content_id"].astype(str).to_numpy(dtype=object))
    marketing = marketing_items(dataset, items)
    keep = counted & (cols >= 0)
    keep[keep] &= marketing[cols[keep]]
    sends = np.bincount(cols[keep], minlength=len(items)).astype(np.float64)
    opens = np.bincount(cols[keep & opened], minlength=len(items)).astype(np.float64)
    return sends, opens


def _to_matrix(events: pd.DataFrame, as_of: pd.Timestamp, users: IdIndex, items: IdIndex,
               config: FeatureConfig) -> sp.coo_matrix:
    rows = users.index_of(events["user_id"].to_numpy()) if len(events) else np.zeros(0, np.int64)
    cols = items.index_of(events["content_id"].to_numpy()) if len(events) else np.zeros(0, np.int64)
    age = days_before(as_of, pd.Series(events["ts"])) if len(events) else np.zeros(0)
    weight = events["weight"].to_numpy(dtype=np.float64) * np.power(0.5, np.maximum(age, 0.0) /
                                                                   config.half_life_days)
    keep = (rows >= 0) & (cols >= 0) & (weight > 0)
    if config.interaction_window_days is not None:
        keep &= age < config.interaction_window_days
    matrix = sp.coo_matrix((weight[keep].astype(np.float32), (rows[keep], cols[keep])),
                           shape=(len(users), len(items))).tocsr()
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return matrix.tocoo()


def interaction_matrices(
    dataset: Dataset, as_of: pd.Timestamp, users: IdIndex, items: IdIndex, config: FeatureConfig
) -> tuple[sp.coo_matrix, sp.coo_matrix | None]:
    """(positives, weak negatives) as coo [n_users, n_items], time-decayed with `half_life_days`.

    A pair that is both positive and negative (pushed once unopened, read later) stays positive only.
    """
    positives = _to_matrix(positive_events(dataset, as_of, config), as_of, users, items, config)
    negative_frame = negative_events(dataset, as_of, config)
    if not len(negative_frame):
        return positives, None
    negatives = _to_matrix(negative_frame, as_of, users, items, config).tocsr()
    overlap = negatives.multiply(positives.tocsr() > 0)
    negatives = (negatives - overlap).tocsr()
    negatives.eliminate_zeros()
    return positives, (negatives.tocoo() if negatives.nnz else None)


def seen_matrix(dataset: Dataset, as_of: pd.Timestamp, users: IdIndex, items: IdIndex) -> sp.csr_matrix:
    """bool csr [n_users, n_items]: read or pushed at or before `as_of` (never offered again)."""
    reads = dataset.article_reads.loc[(dataset.article_reads["ts"] <= as_of).to_numpy()]
    pushes = dataset.push_log.loc[(dataset.push_log["sent_ts"] <= as_of).to_numpy()]
    user_ids = np.concatenate([reads["user_id"].astype(str).to_numpy(dtype=object),
                               pushes["user_id"].astype(str).to_numpy(dtype=object)])
    content_ids = np.concatenate([reads["content_id"].astype(str).to_numpy(dtype=object),
                                  pushes["content_id"].astype(str).to_numpy(dtype=object)])
    rows, cols = users.index_of(user_ids), items.index_of(content_ids)
    keep = (rows >= 0) & (cols >= 0)
    matrix = sp.csr_matrix((np.ones(int(keep.sum()), dtype=bool), (rows[keep], cols[keep])),
                           shape=(len(users), len(items)))
    matrix.sum_duplicates()
    return matrix


EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def first_positive_days(dataset: Dataset, as_of: pd.Timestamp, users: IdIndex, items: IdIndex,
                        config: FeatureConfig, positives: sp.spmatrix | None = None) -> sp.coo_matrix:
    """coo [n_users, n_items] on the pattern of `positives` (None: every pair with an event): the day
    (days since 1970-01-01 UTC) of each pair's first read or opened push by `as_of`."""
    events = positive_events(dataset, as_of, config)
    rows = users.index_of(events["user_id"].to_numpy()) if len(events) else np.zeros(0, np.int64)
    cols = items.index_of(events["content_id"].to_numpy()) if len(events) else np.zeros(0, np.int64)
    days = ((pd.to_datetime(pd.Series(events["ts"]), utc=True) - EPOCH) / DAY).to_numpy(dtype=np.float64)
    keep = (rows >= 0) & (cols >= 0)
    first = pd.DataFrame({"row": rows[keep], "col": cols[keep], "day": days[keep]}).groupby(
        ["row", "col"], sort=False)["day"].min()
    matrix = sp.csr_matrix((first.to_numpy(), (first.index.get_level_values("row"),
                                               first.index.get_level_values("col"))),
                           shape=(len(users), len(items)))
    return sp.coo_matrix(matrix if positives is None else matrix.multiply(sp.csr_matrix(positives) > 0))


def offer_days(dataset: Dataset, items: IdIndex) -> np.ndarray:
    """float64 [n_items, 2]: each item's first and last day on offer (days since 1970-01-01 UTC) from
    its validity window, -inf / +inf for an open bound, NaN for a transactional notice (never offered)."""
    frame = dataset.content.drop_duplicates("content_id")
    frame = frame.set_index(frame["content_id"].astype(str).to_numpy(dtype=object)).reindex(items.ids)
    days = np.column_stack([
        ((pd.to_datetime(frame[column], utc=True) - EPOCH) / DAY).to_numpy(np.float64, na_value=bound)
        for column, bound in (("valid_from", -np.inf), ("valid_to", np.inf))])
    days[~marketing_items(dataset, items)] = np.nan
    return days
