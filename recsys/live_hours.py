"""The pushes a cardholder was sent, and opened, since the response model's fit: live evidence on hours.

The caps state keeps each cardholder's latest marketing sends with whether each was opened
(`CardholderRecord.outcomes`, written by the `sent` and `opened` events in the same script call that
applies them). Those after the model's `history_until` are evidence its fit did not see;
`PushResponseModel.live_wave` turns them into a change to the cardholder's daily wave.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from recsys.caps.rules import CardholderRecord


def live_sends(record: CardholderRecord, zone: ZoneInfo, since_ms: int, now_ms: int
               ) -> tuple[list[int], list[bool]]:
    """Local send hours and opened flags of the kept sends in (since, now]."""
    if not record.outcomes:
        return [], []
    kept = [(sent, opened) for _, sent, opened in record.outcomes if since_ms < sent <= now_ms]
    return ([datetime.fromtimestamp(sent / 1000, zone).hour for sent, _ in kept],
            [opened for _, opened in kept])
