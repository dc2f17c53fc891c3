"""Point-in-time views of a Dataset: what was known at a cutoff, and nothing after it."""

from __future__ import annotations

import dataclasses

import pandas as pd

from features.loader import Dataset
from recsys.times import utc_timestamp

AS_OF_GRACE = pd.Timedelta(days=7)


class AsOfError(ValueError):
    """An as-of time that is malformed or outside the data."""


def parse_as_of(value: str | pd.Timestamp | None, dataset: Dataset | None = None) -> pd.Timestamp:
    """A UTC timestamp from text (ISO 8601; naive means UTC); None means the end of the data.

    With a dataset, refuse a time before its first event or more than `AS_OF_GRACE` after its last one
    (an export finished at night is ranked the next morning; a month later the data is stale).
    """
    span = dataset.time_range() if dataset is not None else None
    if value is None:
        if span is None:
            raise AsOfError(
                "the data has no events (transactions, menu_clicks, article_reads, push_log all empty), "
                "so there is no end of data to default to: pass --as-of"
            )
        return span[1]
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise AsOfError(
            f"--as-of {value!r} is not a date or ISO 8601 timestamp (e.g. 2024-06-30T00:00Z)"
        ) from error
    if pd.isna(stamp):
        raise AsOfError(f"--as-of {value!r} is not a date or timestamp")
    stamp = utc_timestamp(stamp)
    if span is not None:
        first, last = span
        if stamp < first or stamp > last + AS_OF_GRACE:
            raise AsOfError(
                f"--as-of {stamp.isoformat()} is outside the data, which has events from "
                f"{first.isoformat()} to {last.isoformat()}: choose a time in that range "
                f"(or up to {AS_OF_GRACE.days} days after it)"
            )
    return stamp


def known_at(dataset: Dataset, as_of: pd.Timestamp) -> Dataset:
    """The dataset as it looked at `as_of`: later events dropped, later push opens not yet known."""
    def before(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        return frame.loc[(frame[column] <= as_of).to_numpy()]

    pushes = before(dataset.push_log, "sent_ts")
    if len(pushes) and (pushes["opened_ts"] > as_of).any():
        pushes = pushes.copy()
        pushes["opened_ts"] = pushes["opened_ts"].where(~(pushes["opened_ts"] > as_of))
    return dataclasses.replace(
        dataset,
        transactions=before(dataset.transactions, "ts"),
        menu_clicks=before(dataset.menu_clicks, "ts"),
        article_reads=before(dataset.article_reads, "ts"),
        push_log=pushes,
    )
