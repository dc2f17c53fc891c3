"""The observed window as a grid of days, card-cycle arithmetic and local-time sampling.

Times are int64 microseconds since the epoch, UTC. Day ``d`` of the window is a calendar date; an
event on day ``d`` at local time ``t`` for a cardholder whose zone is UTC+h happens at
``day0 + d days + t - h hours`` (standard offsets, see `catalog.TIMEZONES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAY_US = 86_400 * 1_000_000
HOUR_US = 3_600 * 1_000_000

# Relative activity by local hour of day.
DAYTIME = np.array([0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.8, 1.2, 1.3, 1.3, 1.4,
                    1.8, 1.5, 1.2, 1.2, 1.2, 1.4, 1.7, 1.9, 1.9, 1.6, 1.1, 0.6])
MEALS = np.array([0.1, 0.05, 0.02, 0.02, 0.02, 0.05, 0.3, 1.0, 1.0, 0.5, 0.6, 2.2,
                  3.2, 1.6, 0.5, 0.5, 0.7, 1.5, 3.0, 3.0, 1.8, 1.2, 0.8, 0.4])
PUSH_HOURS = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0.3, 0.6, 1.0, 1.0,
                       1.2, 0.6, 0.4, 0.4, 0.4, 0.6, 1.2, 1.5, 1.5, 0.8, 0, 0])


@dataclass(frozen=True)
class Clock:
    """The window [start_us, end_us]: ``days`` calendar days ending on the end date."""

    end_us: int
    days: int

    @classmethod
    def ending(cls, end: pd.Timestamp, days: int) -> Clock:
        return cls(end_us=int(end.value // 1_000), days=days)

    @property
    def day0_us(self) -> int:
        return (self.end_us // DAY_US - (self.days - 1)) * DAY_US

    @property
    def start_us(self) -> int:
        return self.day0_us

    def dates(self, first: int = 0) -> np.ndarray:
        """datetime64[D] of days ``first .. days-1`` (``first`` may be negative: before the window)."""
        return np.datetime64(self.day0_us // DAY_US, "D") + np.arange(first, self.days)

    def cycle_position(self, statement_day: np.ndarray, first: int = 0) -> np.ndarray:
        """[n, n_days] days since each cardholder's latest statement date (0 on the statement day)."""
        dates = self.dates(first)
        months = dates.astype("datetime64[M]")
        dom = (dates - months.astype("datetime64[D]")).astype(np.int64) + 1
        prev_len = (months.astype("datetime64[D]") - (months - 1).astype("datetime64[D]")).astype(np.int64)
        since = dom[None, :] - statement_day[:, None]
        return np.where(since >= 0, since, since + prev_len[None, :])


def local_seconds(rng: np.random.Generator, n: int, profile: np.ndarray) -> np.ndarray:
    """Microseconds after local midnight (whole seconds), hour drawn from ``profile``, uniform within it."""
    cum = np.cumsum(profile) / profile.sum()
    hour = np.minimum(np.searchsorted(cum, rng.random(n), side="right"), 23)
    return hour * HOUR_US + (rng.random(n) * 3_600).astype(np.int64) * 1_000_000


def event_times(
    rng: np.random.Generator, clock: Clock, day: np.ndarray, offset_hours: np.ndarray, profile: np.ndarray
) -> np.ndarray:
    """UTC microseconds of events on window days ``day`` in zones UTC+``offset_hours``."""
    return (
        clock.day0_us
        + day.astype(np.int64) * DAY_US
        + local_seconds(rng, len(day), profile)
        - (offset_hours * HOUR_US).astype(np.int64)
    )


def expand_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each event from a [n, n_days] count matrix."""
    flat = np.repeat(np.arange(counts.size, dtype=np.int64), counts.ravel())
    return flat // counts.shape[1], flat % counts.shape[1]
