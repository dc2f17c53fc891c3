"""The one zone lookup, the one UTC reading and the one `a|b` cell splitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest

from recsys.cells import split_list
from recsys.times import UnknownZoneError, utc_datetime, utc_timestamp, zone


def test_unknown_zone_is_named() -> None:
    assert zone("Asia/Shanghai").key == "Asia/Shanghai"
    with pytest.raises(UnknownZoneError, match="'Mars/Olympus'"):
        zone("Mars/Olympus")


def test_naive_times_are_utc_and_aware_ones_are_converted() -> None:
    assert utc_timestamp("2026-03-01T08:00") == pd.Timestamp("2026-03-01T08:00Z")
    assert str(utc_timestamp("2026-03-01T16:00+08:00").tz) == "UTC"
    assert utc_timestamp("2026-03-01T16:00+08:00") == pd.Timestamp("2026-03-01T08:00Z")
    shanghai = timezone(timedelta(hours=8))
    assert utc_datetime(datetime(2026, 3, 1, 16, tzinfo=shanghai)) == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert utc_datetime(datetime(2026, 3, 1, 8)).tzinfo is UTC


def test_cells_split_on_bars_and_drop_blanks() -> None:
    cells = pd.Series(["gold| platinum", "", None, "dining||weekend "])
    assert split_list(cells).tolist() == [["gold", "platinum"], [], [], ["dining", "weekend"]]
