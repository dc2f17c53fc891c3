"""Article reads: drawn from hidden taste under popularity-biased exposure.

Only readers read (a hidden trait: roughly 40% of cardholders never open an article; a scenario's
``reader_share`` sets the share). A reader's number of reads is Poisson with their read rate over the
days their card was open. Each read picks a content item with probability proportional to::

    exposure[i] * kind_weight[i] * days_available[i] * exp(read_taste * taste[u] . topics[i])

(``taste`` is the taste behaviour shows, `Cardholders.behaviour_taste`; exposure is the account's
popularity bias; promotions and activities are read less than articles; reminders never), then a time
within the item's validity window. Dwell time grows with affinity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worlds.content import Content
from worlds.event_clock import DAY_US, DAYTIME, HOUR_US, Clock, local_seconds
from worlds.population import Cardholders
from worlds.sampling import draw_from_rows, row_cdf

READ_TASTE = 1.3
_SLICE = 1_000
_KIND_WEIGHT = {"article": 1.0, "promotion": 0.35, "activity": 0.35, "reminder": 0.0}


@dataclass
class ArticleReads:
    user: np.ndarray
    ts: np.ndarray
    item: np.ndarray
    dwell: np.ndarray
    dwell_null: np.ndarray


def make_reads(rng: np.random.Generator, people: Cardholders, content: Content, clock: Clock) -> ArticleReads:
    low, high = content.window(clock.start_us, clock.end_us)
    available_days = np.maximum(high - low, 0) / DAY_US
    kind_weight = np.array([_KIND_WEIGHT[k] for k in content.kind])
    base = content.exposure * kind_weight * available_days

    open_days = np.clip(clock.days - np.maximum(people.open_day, 0), 0, clock.days)
    count = rng.poisson(people.read_rate * open_days / 30.0) * people.reader
    user = np.repeat(np.arange(len(people)), count)
    n = len(user)
    if n == 0 or base.sum() == 0:
        empty = np.zeros(0, dtype=np.int64)
        return ArticleReads(empty, empty, empty, np.zeros(0), np.zeros(0, dtype=bool))

    taste = people.behaviour_taste()
    topics = content.topics.T.astype(np.float32)
    item = np.empty(n, dtype=np.int64)
    bounds = np.searchsorted(user, np.arange(0, len(people) + _SLICE, _SLICE))
    for first in range(0, len(people), _SLICE):
        # slices of cardholders keep the [cardholders, items] weight matrix small for large catalogues
        lo, hi = bounds[first // _SLICE], bounds[first // _SLICE + 1]
        weights = base[None, :] * np.exp(READ_TASTE * (taste[first : first + _SLICE] @ topics))
        item[lo:hi] = draw_from_rows(rng, row_cdf(weights), user[lo:hi] - first)

    first = np.maximum(low[item], clock.day0_us + np.maximum(people.open_day[user], 0) * DAY_US)
    last = high[item]
    offset = people.utc_offset_hours[user]
    span_days = np.maximum((last - first) // DAY_US, 0) + 1
    day_start = (first // DAY_US + np.floor(rng.random(n) * span_days).astype(np.int64)) * DAY_US
    ts = day_start + local_seconds(rng, n, DAYTIME) - (offset * HOUR_US).astype(np.int64)
    ts = np.clip(ts, first, last)
    keep = (first <= last) & (ts >= clock.start_us) & (ts <= clock.end_us)

    aff = np.einsum("nk,nk->n", taste[user], content.topics[item])
    dwell = np.round(rng.lognormal(np.log(50.0) + 0.25 * aff, 0.8), 1)
    return ArticleReads(
        user=user[keep],
        ts=ts[keep],
        item=item[keep],
        dwell=dwell[keep],
        dwell_null=(rng.random(n) < 0.03)[keep],
    )
