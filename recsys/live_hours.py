"""The pushes a cardholder was sent, and opened, since the response model's fit: live evidence on hours.

The caps state keeps each cardholder's latest marketing sends with whether each was opened
(`CardholderRecord.outcomes`, written by the `sent` and `opened` events in the same script call that
applies them). Those after the model's `history_until` are evidence its fit did not see;
`PushResponseModel.live_wave` turns them into a change to the cardholder's daily wave.

A batch's kept sends travel as flat arrays (the cardholder's position in the batch, the send, whether it
was opened), so their local hours take one `local_hours` call for the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recsys.caps.rules import CardholderRecord
from recsys.response_model import local_hours


def kept_sends(records: Sequence[CardholderRecord], since_ms: int, now_ms: Sequence[int]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cardholder's kept sends in (since, now[i]]: flat int64 row (position in `records`), int64
    sent time (epoch ms) and bool opened, in each cardholder's kept order."""
    rows: list[int] = []
    sent: list[int] = []
    opened: list[bool] = []
    for position, (record, now) in enumerate(zip(records, now_ms, strict=True)):
        if not record.outcomes:  # most cardholders: no loop body at all
            continue
        for _, at, flag in record.outcomes:
            if since_ms < at <= now:
                rows.append(position)
                sent.append(at)
                opened.append(flag)
    return (np.asarray(rows, dtype=np.int64), np.asarray(sent, dtype=np.int64),
            np.asarray(opened, dtype=bool))


def live_sends(records: Sequence[CardholderRecord], zones: Sequence[str | None], default_timezone: str,
               since_ms: int, now_ms: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`kept_sends` with each send's local hour (in `zones[row]`, empty or None: `default_timezone`)
    instead of its time: flat row, hour and opened, as `PushResponseModel.live_wave` takes them."""
    rows, sent, opened = kept_sends(records, since_ms, now_ms)
    if not len(rows):
        return rows, sent, opened
    stamps = pd.Series(pd.to_datetime(sent, unit="ms", utc=True))
    zone_of = np.asarray(zones, dtype=object)[rows]
    return rows, local_hours(stamps, zone_of, default_timezone), opened
