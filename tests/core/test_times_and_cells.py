"""The one zone lookup, the one UTC reading and the one `a|b` cell splitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from recsys.cells import split_list
from recsys.response_model import local_hours
from recsys.times import UnknownZoneError, parse_utc, utc_datetime, utc_timestamp, zone


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


# clocks that move by an hour at local 02:00 or 01:00 UTC, by half an hour, at a half-hour UTC instant,
# twice a year around Ramadan, or stopped moving (Sao Paulo since 2019); and one that never moves
EDGE_ZONES = ("America/New_York", "Europe/London", "Australia/Lord_Howe", "America/St_Johns",
              "Africa/Casablanca", "America/Sao_Paulo", "Pacific/Chatham", "Asia/Kolkata", "Asia/Shanghai")


def test_an_options_time_is_read_as_utc_and_anything_else_is_named() -> None:
    assert parse_utc("2026-11-01T00:00+08:00", "--since") == pd.Timestamp("2026-10-31T16:00Z")
    for text in ("early November", ""):
        with pytest.raises(ValueError, match=f"--since {text!r} is not an ISO 8601 time"):
            parse_utc(text, "--since")


@pytest.mark.parametrize("name", EDGE_ZONES)
def test_local_hours_equal_the_zone_databases_at_random_times_and_around_every_change(name: str) -> None:
    rng = np.random.default_rng(len(name))
    seconds = rng.integers(int(datetime(2015, 1, 1, tzinfo=UTC).timestamp()),
                           int(datetime(2031, 1, 1, tzinfo=UTC).timestamp()), 2_000)
    # every offset change of 2017-2027: each second before, at and after it (and the year's ends)
    grid = np.arange(int(datetime(2017, 1, 1, tzinfo=UTC).timestamp()),
                     int(datetime(2028, 1, 1, tzinfo=UTC).timestamp()), 900)
    here = zone(name)
    offsets = np.array([datetime.fromtimestamp(int(t), here).utcoffset().total_seconds() for t in grid])
    changes = grid[1:][offsets[1:] != offsets[:-1]]
    assert name in ("Asia/Shanghai", "Asia/Kolkata") or len(changes) >= 5  # the edges are there
    near = (changes[:, None] + np.arange(-900, 901)[None, :]).ravel()
    seconds = np.concatenate([seconds, near, [int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) - 1]])
    expected = [datetime.fromtimestamp(int(t), here).hour for t in seconds]
    sent = pd.Series(pd.to_datetime(seconds, unit="s", utc=True))
    assert local_hours(sent, np.full(len(seconds), name, dtype=object), "UTC").tolist() == expected


def test_cells_split_on_bars_and_drop_blanks() -> None:
    cells = pd.Series(["gold| platinum", "", None, "dining||weekend "])
    assert split_list(cells).tolist() == [["gold", "platinum"], [], [], ["dining", "weekend"]]
