"""Cardholders: visible attributes (the cardholders table) and hidden traits, one block at a time.

Generative story per cardholder:

1. age from a mixture dominated by 22-35; city tier; card tier more likely high for older cardholders
   in larger cities; a credit limit lognormal around the tier's median; a card opened years ago (or,
   for ~5%, during the observed window, so they activate it then); a time zone (mostly Asia/Shanghai,
   some empty, a few other Chinese and abroad zones); ~8% opted out of marketing pushes.
2. a persona (`catalog.PERSONAS`) chosen by age and tier; the hidden taste is the persona's leanings
   plus individual noise and small age effects: a log-interest per topic (spend categories and
   finance topics). Spend, menu use, article reads and push opens all derive from this one vector,
   which is what makes observed behaviour informative about push response. A scenario
   (`with_scenario`) may move that taste onto individual MCCs, let behaviour show a noisy copy of it
   (``shown_taste``) and give each cardholder a preferred hour for opening pushes.
3. scalar traits: engagement (general responsiveness), whether they read articles at all and how
   often, spend level and transaction rate, menu activity, autopay, statement day, the intensity of
   broadcast pushes the bank sent them in the past, and a personal mute propensity.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from worlds import catalog
from worlds.catalog import TOPIC_INDEX
from worlds.scenario import Scenario, merchant_taste, peak_hours, reader_threshold


@dataclass
class Cardholders:
    """One block of cardholders; visible columns first, then hidden traits. Arrays of length n."""

    index: np.ndarray  # global position in the world
    birth_year: np.ndarray
    birth_year_null: np.ndarray
    gender: np.ndarray  # "M", "F" or "" (null)
    city_tier: np.ndarray
    city_tier_null: np.ndarray
    tier: np.ndarray  # index into catalog.CARD_TIERS
    credit_limit: np.ndarray
    credit_limit_null: np.ndarray
    open_day: np.ndarray  # day index of card opening relative to the window's first day (<0: before)
    opened_at_null: np.ndarray
    timezone: np.ndarray  # index into catalog.TIMEZONES
    push_opt_in: np.ndarray  # 1 true, 0 false, -1 null (means true)
    # hidden
    age: np.ndarray
    persona: np.ndarray
    log_taste: np.ndarray  # [n, n_topics]
    engagement: np.ndarray
    reader: np.ndarray
    read_rate: np.ndarray  # reads per 30 days when a reader
    tx_rate: np.ndarray  # transactions per day
    spend_level: np.ndarray  # amount multiplier
    menu_activity: np.ndarray
    autopay: np.ndarray
    statement_day: np.ndarray  # 1..28
    push_intensity: np.ndarray  # past marketing pushes per 30 days
    mute_offset: np.ndarray
    online_pref: np.ndarray
    shown_taste: np.ndarray | None = None  # the log-taste behaviour shows (None: the true one)
    peak_hour: np.ndarray | None = None  # preferred local hour for opening pushes (None: none)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def utc_offset_hours(self) -> np.ndarray:
        return np.array([zone[1] for zone in catalog.TIMEZONES])[self.timezone]

    @property
    def abroad(self) -> np.ndarray:
        return self.timezone >= catalog.ABROAD_FROM

    @property
    def marketing_ok(self) -> np.ndarray:
        return self.push_opt_in != 0

    def centred_taste(self) -> np.ndarray:
        """The taste vector the response model uses: log-interest minus the cardholder's mean."""
        return (self.log_taste - self.log_taste.mean(axis=1, keepdims=True)).astype(np.float32)

    @property
    def shown_log_taste(self) -> np.ndarray:
        """The log-taste that spend, menu use and reads follow (the true one unless the world adds noise)."""
        return self.log_taste if self.shown_taste is None else self.shown_taste

    def behaviour_taste(self) -> np.ndarray:
        """`shown_log_taste` centred like `centred_taste`."""
        if self.shown_taste is None:
            return self.centred_taste()
        return (self.shown_taste - self.shown_taste.mean(axis=1, keepdims=True)).astype(np.float32)


def _categorical(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """One draw per row from softmax(logits) via the Gumbel-max trick."""
    return np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)


def _from_shares(rng: np.random.Generator, shares: np.ndarray, n: int) -> np.ndarray:
    return np.searchsorted(np.cumsum(shares) / np.sum(shares), rng.random(n), side="right")


def make_cardholders(
    rng: np.random.Generator, start: int, n: int, end_year: int, days: int, reader_share: float | None = None
) -> Cardholders:
    """Cardholders ``start .. start+n-1`` of the world, drawn from ``rng``.

    ``reader_share``: the share of them who read articles (the more engaged and younger first, with
    logistic noise); None draws each from the default engagement model (about 60% read).
    """
    index = np.arange(start, start + n, dtype=np.int64)

    band = _from_shares(rng, np.array([0.05, 0.60, 0.23, 0.12]), n)
    low = np.array([18, 22, 36, 51])[band]
    high = np.array([21, 35, 50, 68])[band]
    age = low + np.floor(rng.random(n) * (high - low + 1)).astype(np.int64)
    birth_year = end_year - age

    city = _from_shares(rng, catalog.CITY_TIER_SHARE, n) + 1
    steps = np.arange(len(catalog.CARD_TIERS))
    tier_logits = (
        np.log(catalog.TIER_SHARE)[None, :]
        + 0.03 * (age[:, None] - 33) * steps[None, :]
        + 0.12 * (3 - city[:, None]) * steps[None, :]
    )
    tier = _categorical(rng, tier_logits)
    credit_limit = np.round(catalog.TIER_LIMIT_MEDIAN[tier] * rng.lognormal(0.0, 0.45, n), -3)
    credit_limit = np.maximum(credit_limit, 2000.0)

    new_card = rng.random(n) < 0.05
    tenure = np.minimum(rng.lognormal(np.log(900.0), 0.9, n), np.maximum(age - 18, 0) * 365 + 30)
    open_day = np.where(new_card, np.floor(rng.random(n) * days), -np.ceil(tenure)).astype(np.int64)

    zone_shares = np.array([zone[2] for zone in catalog.TIMEZONES])
    timezone = _from_shares(rng, zone_shares, n)

    opt = rng.random(n)
    push_opt_in = np.where(opt < 0.08, 0, np.where(opt < 0.11, -1, 1)).astype(np.int8)

    gender = np.where(rng.random(n) < 0.02, "", np.where(rng.random(n) < 0.5, "F", "M"))

    personas = catalog.PERSONAS
    persona_logits = (
        np.log([p.weight for p in personas])[None, :]
        - 0.5 * ((age[:, None] - np.array([p.age_center for p in personas])[None, :]) / 9.0) ** 2
        - 2.5 * (tier[:, None] < np.array([p.min_tier for p in personas])[None, :])
    )
    persona = _categorical(rng, persona_logits)
    log_taste = catalog.persona_centers()[persona] + rng.normal(0.0, 0.9, (n, len(catalog.TOPICS)))
    young = (age < 28).astype(float)
    older = (age > 45).astype(float)
    log_taste[:, TOPIC_INDEX["digital"]] += 0.4 * young
    log_taste[:, TOPIC_INDEX["credit_limit"]] += 0.3 * young
    log_taste[:, TOPIC_INDEX["healthcare"]] += 0.6 * older
    log_taste[:, TOPIC_INDEX["utilities"]] += 0.3 * older
    log_taste[:, TOPIC_INDEX["travel_perks"]] += 0.3 * (tier >= 2)

    engagement = rng.normal(0.0, 0.6, n) + 0.15 * young
    reader_logit = 0.55 + 1.1 * engagement + 0.3 * young - 0.3 * older
    draw = rng.random(n)
    if reader_share is None:
        reader = draw < 1.0 / (1.0 + np.exp(-reader_logit))
    else:
        draw = np.clip(draw, 1e-12, 1.0 - 1e-12)
        reader = reader_threshold(reader_logit + np.log(draw) - np.log1p(-draw), reader_share)
    read_rate = rng.lognormal(np.log(2.2), 0.8, n) * np.exp(0.4 * engagement)

    spend_level = rng.lognormal(0.0, 0.45, n) * catalog.TIER_AMOUNT_FACTOR[tier]
    tx_rate = rng.lognormal(np.log(0.55), 0.55, n)
    menu_activity = rng.lognormal(0.0, 0.6, n) * np.exp(0.3 * engagement)
    autopay = rng.random(n) < 0.4
    statement_day = rng.integers(1, 29, n)
    push_intensity = np.array([1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0])[
        _from_shares(rng, np.array([0.15, 0.22, 0.18, 0.18, 0.12, 0.08, 0.04, 0.03]), n)
    ]
    mute_offset = rng.normal(0.0, 0.5, n)
    online_pref = rng.normal(0.0, 0.12, n) + 0.08 * young

    return Cardholders(
        index=index,
        birth_year=birth_year,
        birth_year_null=rng.random(n) < 0.01,
        gender=gender,
        city_tier=city,
        city_tier_null=rng.random(n) < 0.01,
        tier=tier,
        credit_limit=credit_limit,
        credit_limit_null=rng.random(n) < 0.005,
        open_day=open_day,
        opened_at_null=(rng.random(n) < 0.005) & ~new_card,
        timezone=timezone,
        push_opt_in=push_opt_in,
        age=age,
        persona=persona,
        log_taste=log_taste,
        engagement=engagement,
        reader=reader,
        read_rate=read_rate,
        tx_rate=tx_rate,
        spend_level=spend_level,
        menu_activity=menu_activity,
        autopay=autopay,
        statement_day=statement_day,
        push_intensity=push_intensity,
        mute_offset=mute_offset,
        online_pref=online_pref,
    )


def with_scenario(rng: np.random.Generator, people: Cardholders, scenario: Scenario) -> Cardholders:
    """The block's cardholders in the scenario's taste space, with shown-taste noise and peak hours.

    Draws from ``rng`` only for the parts the scenario turns on, in a fixed order (merchant taste,
    noise, peak hours); the default scenario returns ``people`` unchanged.
    """
    changes = {}
    log_taste = people.log_taste
    if scenario.space.fine:
        log_taste = changes["log_taste"] = merchant_taste(rng, people.log_taste, scenario.space)
    if scenario.noise:
        changes["shown_taste"] = log_taste + rng.normal(0.0, scenario.noise, log_taste.shape)
    if scenario.hour_preference:
        changes["peak_hour"] = peak_hours(rng, len(people))
    return replace(people, **changes) if changes else people
