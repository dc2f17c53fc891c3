"""Counters in one Redis hash per local day, `{prefix}:{YYYY-MM-DD}`, kept a few days and read back for
the days before today: how the API learns its scheduler's habits across workers."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any


class DailyHashes:
    """One hash per local day under `prefix`, each expiring `keep_days` after its last write."""

    def __init__(self, prefix: str, keep_days: int) -> None:
        self.prefix = prefix
        self.keep_seconds = keep_days * 86_400

    def key(self, day: date) -> str:
        return f"{self.prefix}:{day.isoformat()}"

    def add(self, pipe: Any, day: date, field: str, amount: int = 1) -> None:
        """Queue adding `amount` to `field` of `day`'s hash on a Redis pipeline, renewing its expiry."""
        pipe.hincrby(self.key(day), field, amount)
        pipe.expire(self.key(day), self.keep_seconds)

    @staticmethod
    def days_before(today: date, days: int) -> list[date]:
        """The `days` local days before `today`, the most recent first."""
        return [today - timedelta(days=back) for back in range(1, days + 1)]
