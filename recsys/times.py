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


def parse_utc(text: str, what: str) -> pd.Timestamp:
    """ISO 8601 `text` given as `what` (an option's name) as a UTC `pd.Timestamp`; a `ValueError` naming both
    when it is not a time."""
    try:
        stamp = utc_timestamp(text)
    except ValueError:
        stamp = pd.NaT
    if pd.isna(stamp):  # an empty text parses as NaT
        raise ValueError(f"{what} {text!r} is not an ISO 8601 time (e.g. 2026-11-01T00:00+08:00)")
    return stamp


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
