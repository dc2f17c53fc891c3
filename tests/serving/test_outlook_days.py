"""The later days of the month an outlook weighs: the local month per decision time and zone
(`local_place`) and the days the top push stays valid for (`content_days`, the batch at once)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import numpy as np

from serving.ranker import content_days, local_place


def test_local_place_counts_the_later_days_of_the_local_month() -> None:
    cases = [  # (UTC decision time, zone, local date, later days this local month)
        (datetime(2027, 1, 31, 3, tzinfo=UTC), "Asia/Shanghai", (2027, 1, 31), 0),
        (datetime(2027, 1, 31, 20, tzinfo=UTC), "Asia/Shanghai", (2027, 2, 1), 27),  # already February
        (datetime(2027, 2, 27, 22, tzinfo=UTC), "UTC", (2027, 2, 27), 1),
        (datetime(2028, 2, 27, 22, tzinfo=UTC), "UTC", (2028, 2, 27), 2),  # a leap year
        (datetime(2026, 11, 1, 3, tzinfo=UTC), "America/New_York", (2026, 10, 31), 0),
        (datetime(2026, 3, 8, 12, tzinfo=UTC), "America/New_York", (2026, 3, 8), 23),  # clocks go forward
    ]
    for now, zone, date, days in cases:
        place = local_place(now, zone)
        local = now.astimezone(ZoneInfo(zone))
        assert (place.local.year, place.local.month, place.local.day) == date and place.local == now
        assert place.days == days
        assert place.now_ms == int(now.timestamp() * 1000)
        month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        assert place.month_start_ms == int(month_start.timestamp() * 1000)
        assert place.midnight == local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def test_content_days_is_the_row_by_row_rule() -> None:
    """Against each row's own rule: every later day without an end (NaN), none for transactional
    content, else the days up to the end counted from local midnight, clipped to the month."""
    rng = np.random.default_rng(5)
    midnight = 1_800_000_000.0 + 3_600 * rng.integers(-12, 14, 400)
    days = rng.integers(0, 31, 400)
    ends = midnight + rng.uniform(-3, 40, 400) * 86_400
    ends[rng.random(400) < 0.2] = np.nan
    ends[:3] = midnight[:3] + np.array([0.0, 86_399.0, 86_400.0])  # whole-day edges
    transactional = rng.random(400) < 0.15
    model = SimpleNamespace(valid_to=ends, transactional=transactional)
    items = np.arange(400)
    expected = []
    for row in range(400):
        if not days[row] or transactional[row]:
            expected.append(0)
        elif np.isnan(ends[row]):
            expected.append(int(days[row]))
        else:
            expected.append(int(np.clip((ends[row] - midnight[row]) // 86_400, 0, days[row])))
    assert content_days(model, items, midnight, days).tolist() == expected
    assert {0, 30} <= set(expected) and len(set(expected)) > 10
