"""Time zones and UTC: one lookup of IANA zones and one reading of times as UTC for every package."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

# Cardholders come from a few dozen zones; the cache holds them all with room to spare.
ZONE_CACHE_SIZE = 512


class UnknownZoneError(ValueError):
    """A time zone name that is not in the IANA database."""


@lru_cache(maxsize=ZONE_CACHE_SIZE)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; `UnknownZoneError` naming it when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise UnknownZoneError(
            f"unknown time zone {name!r}: use an IANA name such as 'Asia/Shanghai'"
        ) from error


def utc_timestamp(value: object) -> pd.Timestamp:
    """`value` (a timestamp, datetime or ISO 8601 text) as a UTC `pd.Timestamp`; naive times are UTC."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def utc_index(values: object) -> pd.DatetimeIndex:
    """`values` (timestamps, datetimes or ISO 8601 texts) as a UTC `DatetimeIndex`; naive times are UTC."""
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(values), utc=True))


def utc_datetime(moment: datetime) -> datetime:
    """An aware UTC `datetime`; naive input is read as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso_utc(moment: datetime) -> str:
    """`moment` as the API writes every time: ISO 8601 in UTC with `Z` (`2026-11-25T01:00:00Z`,
    fractional seconds only when there are any); naive input is read as UTC."""
    return utc_datetime(moment).isoformat().replace("+00:00", "Z")


# A zone's offsets are kept per UTC calendar year: a batch of sends spans one or two, a fit a few.
YEAR_TABLES = 4096
HOUR_SECONDS = 3600


@lru_cache(maxsize=YEAR_TABLES)
def _year_offsets(name: str, year: int) -> tuple[np.ndarray, np.ndarray]:
    """Zone `name`'s UTC offsets (seconds) through UTC year `year`: the instants (epoch seconds) from
    which each holds, the first the year's start. Found on an hourly grid, each change then to the
    second; no zone changes its offset twice within an hour."""
    start = int(pd.Timestamp(year=year, month=1, day=1, tz="UTC").timestamp())
    end = int(pd.Timestamp(year=year + 1, month=1, day=1, tz="UTC").timestamp())
    grid = np.arange(start, end + 1, HOUR_SECONDS, dtype=np.int64)
    offsets = _offsets_by_pandas(grid, name)
    starts, values = [start], [int(offsets[0])]
    for k in np.flatnonzero(offsets[1:] != offsets[:-1]):
        seconds = np.arange(grid[k] + 1, grid[k + 1] + 1, dtype=np.int64)
        first = int(np.argmax(_offsets_by_pandas(seconds, name) != offsets[k]))
        starts.append(int(seconds[first]))
        values.append(int(offsets[k + 1]))
    return np.asarray(starts, dtype=np.int64), np.asarray(values, dtype=np.int64)


def _offsets_by_pandas(seconds: np.ndarray, name: str) -> np.ndarray:
    utc = pd.DatetimeIndex(seconds.astype("datetime64[s]")).tz_localize("UTC")
    wall = utc.tz_convert(zone(name)).tz_localize(None)
    return (wall.as_unit("s").asi8 - utc.tz_localize(None).as_unit("s").asi8).astype(np.int64)


def local_hour_of(seconds: np.ndarray, name: str) -> np.ndarray:
    """int64 local hour (0-23) in zone `name` of each UTC time `seconds` (epoch seconds, int64): numpy
    over the zone's cached offsets, as cheap for a batch's few sends in a dozen zones as for a fit's
    million pushes (converting through pandas costs a fraction of a millisecond per zone and call)."""
    seconds = np.asarray(seconds, dtype=np.int64)
    years = seconds.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    offsets = np.empty(len(seconds), dtype=np.int64)
    if len(years) and years.min() == years.max():  # a serving batch's sends: no year to split on
        starts, values = _year_offsets(name, int(years[0]))
        return (seconds + values[np.searchsorted(starts, seconds, side="right") - 1]) // HOUR_SECONDS % 24
    for year in np.unique(years):
        starts, values = _year_offsets(name, int(year))
        mask = years == year
        offsets[mask] = values[np.searchsorted(starts, seconds[mask], side="right") - 1]
    return (seconds + offsets) // HOUR_SECONDS % 24
