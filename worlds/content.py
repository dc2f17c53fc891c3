"""The content catalogue: articles, promotions, activities and transactional reminders.

Each marketing item has a primary topic and up to two secondary topics (its hidden topic mix; a
secondary topic is occasionally left out of the tags, as real tagging is incomplete), sometimes a
context tag without taste signal (``weekend``, ``guide``...), a hidden appeal (item quality) and an
exposure weight (how prominently the account showed it: popularity bias for reads and past pushes).
Articles are published over the window and mostly stay valid; promotions and activities run for
weeks, some ending before or starting after the end date; some promotions are tier restricted.
Reminders (bill due, statement ready, ...) are transactional, have no topic and a high appeal.
`upcoming_content` carries the schedule of promotions and activities further past the end date, for
benchmarks that replay more than the first weeks after it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from worlds import catalog
from worlds.catalog import TOPICS

DAY_US = 86_400 * 1_000_000
# promotions and activities of `make_content` start up to this many days after the end date
AHEAD_DAYS = 14

REMINDERS: tuple[tuple[str, str, float], ...] = (
    ("bill_due", "Your payment is due in 3 days", 2.6),
    ("statement_ready", "Your monthly statement is ready", 2.0),
    ("payment_received", "We have received your payment", 1.4),
    ("points_expiring", "Some of your points expire this month", 1.8),
)

_TOPIC_LABEL = {
    "dining": "Dining", "groceries": "Groceries", "fuel": "Fuel", "airlines": "Flights", "hotels": "Hotels",
    "travel_agency": "Holidays", "transport": "Commuting", "department_store": "Department stores",
    "electronics": "Electronics", "digital": "Apps and streaming", "education": "Education",
    "healthcare": "Health", "entertainment": "Cinema and shows", "utilities": "Utility bills",
    "telecom": "Mobile plans", "fashion": "Fashion", "luxury": "Jewellery and watches",
    "installment": "Instalments", "points": "Reward points", "credit_limit": "Credit limit",
    "travel_perks": "Travel perks", "cashback": "Cashback",
}
_PHRASES = {
    "article": ("a practical guide", "five things to know", "how cardholders save more",
                "what changed this season", "questions answered"),
    "promotion": ("up to 20% off", "spend and get 50 CNY back", "double points this month",
                  "interest-free offer", "weekend special price"),
    "activity": ("join the challenge", "lucky draw", "check in and win", "members' day",
                 "invite friends, earn rewards"),
}


@dataclass
class Content:
    """The catalogue; arrays of length n_items, timestamps as int64 microseconds UTC (-1 = null)."""

    content_id: np.ndarray
    title: np.ndarray
    kind: np.ndarray
    tags: np.ndarray  # "" = null
    valid_from: np.ndarray
    valid_to: np.ndarray
    card_tiers: np.ndarray  # "" = all
    min_tier: np.ndarray  # lowest tier index allowed
    transactional: np.ndarray
    reminder: np.ndarray  # reminder name or ""
    topics: np.ndarray  # [n_items, n_topics] hidden topic mix
    appeal: np.ndarray
    exposure: np.ndarray

    def __len__(self) -> int:
        return len(self.content_id)

    def window(self, start_us: int, end_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Each item's validity clipped to [start_us, end_us] (from > to when it does not overlap)."""
        low = np.where(self.valid_from < 0, start_us, np.maximum(self.valid_from, start_us))
        high = np.where(self.valid_to < 0, end_us, np.minimum(self.valid_to, end_us))
        return low, high

    def tier_allowed(self) -> np.ndarray:
        """[n_tiers, n_items] whether each card tier may receive each item."""
        return np.arange(len(catalog.CARD_TIERS))[:, None] >= self.min_tier[None, :]


def make_content(
    rng: np.random.Generator,
    n_items: int,
    start_us: int,
    end_us: int,
    days: int,
    primary_weights: np.ndarray | None = None,
) -> Content:
    """The catalogue; ``primary_weights`` (probability per topic of being an item's primary topic)
    replaces the default balanced spread of primary topics."""
    n_rem = min(len(REMINDERS), max(1, n_items // 40))
    n_mkt = n_items - n_rem
    n_art = int(round(0.5 * n_mkt))
    n_pro = int(round(0.3 * n_mkt))
    kinds = np.array(["article"] * n_art + ["promotion"] * n_pro + ["activity"] * (n_mkt - n_art - n_pro))

    n_topics = len(TOPICS)
    if primary_weights is None:
        primary = np.concatenate([rng.permutation(n_topics) for _ in range(n_mkt // n_topics + 1)])[:n_mkt]
        primary = rng.permutation(primary)
    else:
        primary = rng.choice(n_topics, n_mkt, p=primary_weights)
    topics = np.zeros((n_items, n_topics))
    topics[np.arange(n_mkt), primary] = 1.0
    n_secondary = np.searchsorted([0.4, 0.8, 1.0], rng.random(n_mkt), side="right")
    tagged = np.zeros((n_mkt, n_topics), dtype=bool)
    tagged[np.arange(n_mkt), primary] = True
    for slot in range(2):
        has = n_secondary > slot
        other = rng.integers(0, n_topics, n_mkt)
        fresh = has & (topics[np.arange(n_mkt), other] == 0)
        topics[np.flatnonzero(fresh), other[fresh]] = 0.5
        tagged[np.flatnonzero(fresh), other[fresh]] = rng.random(int(fresh.sum())) < 0.85
    topics[:n_mkt] /= topics[:n_mkt].sum(axis=1, keepdims=True)

    context = np.where(rng.random(n_mkt) < 0.3, rng.integers(0, len(catalog.CONTEXT_TAGS), n_mkt), -1)
    tags = []
    for row in range(n_mkt):
        names = [TOPICS[primary[row]]] + [TOPICS[k] for k in np.flatnonzero(tagged[row]) if k != primary[row]]
        if context[row] >= 0:
            names.append(catalog.CONTEXT_TAGS[context[row]])
        tags.append("|".join(names))

    kind_shift = np.select([kinds == "promotion", kinds == "activity"], [0.2, 0.1], 0.0)
    appeal = np.concatenate([rng.normal(0.0, 0.5, n_mkt) + kind_shift, [r[2] for r in REMINDERS[:n_rem]]])
    exposure = np.exp(0.8 * appeal[:n_mkt] + rng.normal(0.0, 0.6, n_mkt))
    exposure = np.concatenate([exposure, np.zeros(n_rem)])

    end_day = end_us // DAY_US * DAY_US
    u = rng.random(n_mkt)
    is_art = kinds == "article"
    offset_days = np.where(is_art, np.floor(u * (days + 60)), np.floor(u * (days + AHEAD_DAYS)) - AHEAD_DAYS)
    valid_from = end_day - offset_days.astype(np.int64) * DAY_US
    duration = np.where(kinds == "promotion", rng.integers(14, 61, n_mkt), rng.integers(7, 46, n_mkt))
    open_ended = is_art & (rng.random(n_mkt) < 0.7)
    art_duration = rng.integers(30, 181, n_mkt)
    length_days = np.where(is_art, art_duration, duration).astype(np.int64)
    valid_to = np.where(open_ended, -1, valid_from + length_days * DAY_US - 1_000_000)

    restricted_p = np.select([kinds == "promotion", kinds == "activity"], [0.25, 0.15], 0.03)
    premium = np.isin(primary, [catalog.TOPIC_INDEX[t] for t in ("luxury", "travel_perks", "hotels")])
    restricted_p = np.where(premium & (kinds != "article"), 0.6, restricted_p)
    level = np.searchsorted([0.6, 0.9, 1.0], rng.random(n_mkt), side="right") + 1
    min_tier = np.where(rng.random(n_mkt) < restricted_p, level, 0)
    card_tiers = np.array(["|".join(catalog.CARD_TIERS[t:]) if t else "" for t in min_tier], dtype=object)

    phrase_pick = rng.integers(0, 5, n_mkt)
    titles = [
        f"{_TOPIC_LABEL[TOPICS[primary[r]]]}: {_PHRASES[kinds[r]][phrase_pick[r]]}" for r in range(n_mkt)
    ]

    prefix = {"article": "art", "promotion": "pro", "activity": "act"}
    counters: dict[str, int] = {}
    ids = []
    for kind in kinds:
        counters[kind] = counters.get(kind, 0) + 1
        ids.append(f"{prefix[kind]}{counters[kind]:04d}")
    ids += [f"rem{k + 1:04d}" for k in range(n_rem)]

    return Content(
        content_id=np.array(ids, dtype=object),
        title=np.array(titles + [r[1] for r in REMINDERS[:n_rem]], dtype=object),
        kind=np.concatenate([kinds, np.array(["reminder"] * n_rem)]).astype(object),
        tags=np.array(tags + [""] * n_rem, dtype=object),
        valid_from=np.concatenate([valid_from, np.full(n_rem, -1, dtype=np.int64)]),
        valid_to=np.concatenate([valid_to, np.full(n_rem, -1, dtype=np.int64)]),
        card_tiers=np.concatenate([card_tiers, np.array([""] * n_rem, dtype=object)]),
        min_tier=np.concatenate([min_tier, np.zeros(n_rem, dtype=np.int64)]),
        transactional=np.concatenate([np.zeros(n_mkt, dtype=bool), np.ones(n_rem, dtype=bool)]),
        reminder=np.array([""] * n_mkt + [r[0] for r in REMINDERS[:n_rem]], dtype=object),
        topics=topics,
        appeal=appeal,
        exposure=exposure,
    )


def upcoming_content(
    rng: np.random.Generator,
    base: Content,
    days: int,
    end_us: int,
    horizon_days: int,
    primary_weights: np.ndarray | None = None,
) -> Content:
    """Promotions and activities that start after `base`'s last possible start (`AHEAD_DAYS` after the
    end date) and up to `horizon_days` after it, at `base`'s rate of starts (its promotions and
    activities over its `days + AHEAD_DAYS` days of starts, rounded), each drawn as `make_content` draws
    one (topics, tags, appeal, exposure, duration, tiers) and given a start day uniform over those
    days; ids continue `base`'s. Empty when `horizon_days` <= `AHEAD_DAYS`."""
    extra_days = horizon_days - AHEAD_DAYS
    scheduled = np.isin(base.kind, ("promotion", "activity"))
    count = int(round(scheduled.sum() * extra_days / (days + AHEAD_DAYS))) if extra_days > 0 else 0
    # a catalogue of the same mix with at least `count` promotions and activities (half its items)
    drawn = make_content(rng, 2 * count + 10, end_us - days * DAY_US, end_us, days,
                         primary_weights=primary_weights)
    pool = np.flatnonzero(np.isin(drawn.kind, ("promotion", "activity")))
    pick = np.sort(rng.choice(pool, size=count, replace=False))
    end_day = end_us // DAY_US * DAY_US
    length = drawn.valid_to[pick] - drawn.valid_from[pick]
    start = end_day + (AHEAD_DAYS + 1 + rng.integers(0, max(extra_days, 1), count)) * DAY_US
    kinds = drawn.kind[pick]
    ids = []
    for kind, prefix in (("promotion", "pro"), ("activity", "act")):
        first = int((base.kind == kind).sum())
        ids.append([f"{prefix}{first + k + 1:04d}" for k in range(int((kinds == kind).sum()))])
    numbered = {"promotion": iter(ids[0]), "activity": iter(ids[1])}
    return Content(
        content_id=np.array([next(numbered[kind]) for kind in kinds], dtype=object),
        title=drawn.title[pick],
        kind=kinds,
        tags=drawn.tags[pick],
        valid_from=start.astype(np.int64),
        valid_to=(start + length).astype(np.int64),
        card_tiers=drawn.card_tiers[pick],
        min_tier=drawn.min_tier[pick],
        transactional=drawn.transactional[pick],
        reminder=drawn.reminder[pick],
        topics=drawn.topics[pick],
        appeal=drawn.appeal[pick],
        exposure=drawn.exposure[pick],
    )


def joined(first: Content, second: Content) -> Content:
    """`first`'s items, then `second`'s."""
    return Content(**{f.name: np.concatenate([getattr(first, f.name), getattr(second, f.name)])
                      for f in fields(Content)})
