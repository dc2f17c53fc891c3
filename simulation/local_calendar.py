"""Local calendar arithmetic for many cardholders at once, each in their own IANA time zone.

Times are int64 seconds since the Unix epoch (UTC). Cardholders are grouped by zone and each distinct
(zone, instant) pair is converted once with `zoneinfo`, so daylight saving is exact and the cost does
not grow with the number of cardholders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from recsys.times import zone

NEVER = np.int64(-(2**53))  # an instant long before any window start: "no push yet"


@dataclass(frozen=True)
class LocalFields:
    """Per cardholder: UTC start of the local calendar day and month, and seconds since local midnight."""

    day_start: np.ndarray
    month_start: np.ndarray
    second_of_day: np.ndarray


def _fields_of(zone_name: str, instant: int) -> tuple[int, int, int]:
    local = datetime.fromtimestamp(int(instant), tz=UTC).astimezone(zone(zone_name))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    first = midnight.replace(day=1)
    second_of_day = local.hour * 3600 + local.minute * 60 + local.second
    return int(midnight.timestamp()), int(first.timestamp()), second_of_day


def _next_local_time(zone_name: str, instant: int, second_of_day: int) -> int:
    """First instant at or after `instant` whose local wall-clock time is `second_of_day`."""
    tz = zone(zone_name)
    local = datetime.fromtimestamp(int(instant), tz=UTC).astimezone(tz)
    hour, rest = divmod(second_of_day, 3600)
    target = datetime(local.year, local.month, local.day, hour, rest // 60, rest % 60, tzinfo=tz)
    if int(target.timestamp()) < instant:
        following = local.date() + timedelta(days=1)
        target = datetime(following.year, following.month, following.day, hour, rest // 60, rest % 60,
                          tzinfo=tz)
    return int(target.timestamp())


class ZoneClock:
    """Vectorised local-time queries for a fixed population of cardholders and their zones."""

    def __init__(self, zone_names: np.ndarray):
        names = np.asarray(zone_names, dtype=object)
        self.zones, codes = np.unique(names.astype(str), return_inverse=True)
        self.codes = codes.astype(np.int64)
        for name in self.zones:
            zone(str(name))

    def __len__(self) -> int:
        return len(self.codes)

    def _pairs(self, rows: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (zone code, instant) pairs [p, 2] and, per row, the index of its pair."""
        codes = self.codes[rows]
        times = np.asarray(times, dtype=np.int64)
        if len(times) and times.min() == times.max():  # one instant (a send slot): one pair per zone
            zones, inverse = np.unique(codes, return_inverse=True)
            return np.stack([zones, np.full(len(zones), times[0])], axis=1), inverse
        key = times * len(self.zones) + codes
        unique, inverse = np.unique(key, return_inverse=True)
        return np.stack([unique % len(self.zones), unique // len(self.zones)], axis=1), inverse

    def local_fields(self, times: np.ndarray, rows: np.ndarray | None = None) -> LocalFields:
        """Local calendar fields of `times[j]` for cardholder `rows[j]` (all cardholders by default)."""
        rows = np.arange(len(self.codes)) if rows is None else np.asarray(rows, dtype=np.int64)
        times = np.broadcast_to(np.asarray(times, dtype=np.int64), rows.shape)
        unique, inverse = self._pairs(rows, times)
        table = np.array([_fields_of(str(self.zones[code]), instant) for code, instant in unique],
                         dtype=np.int64).reshape(-1, 3)
        inverse = inverse.reshape(-1)
        return LocalFields(table[inverse, 0], table[inverse, 1], table[inverse, 2])

    def next_local_time(self, times: np.ndarray, second_of_day: int,
                        rows: np.ndarray | None = None) -> np.ndarray:
        """First instant at or after each time whose local wall-clock time is `second_of_day`."""
        rows = np.arange(len(self.codes)) if rows is None else np.asarray(rows, dtype=np.int64)
        times = np.broadcast_to(np.asarray(times, dtype=np.int64), rows.shape)
        unique, inverse = self._pairs(rows, times)
        table = np.array([_next_local_time(str(self.zones[code]), instant, second_of_day)
                          for code, instant in unique], dtype=np.int64)
        return table[inverse.reshape(-1)]
