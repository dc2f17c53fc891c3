"""Card spend: transactions driven by each cardholder's hidden taste.

Per cardholder and day (after the card was opened) the number of transactions is Poisson with the
cardholder's rate, 15% higher at weekends. Each transaction's spend topic is drawn from
``softmax(spend_taste * log_taste[spend topics] + log(topic frequency))``, so what a cardholder buys
reveals their taste (the taste their behaviour shows, see `population`). In the default topic space a
spend topic is a category and the MCC is one of the category's real ISO 18245 codes, drawn uniformly;
in a merchant space (`scenario.merchant_space`) each topic is a single MCC and a category's frequency
is split evenly between its codes. The amount is lognormal around
the category's median scaled by card tier and personal spend level; ~1.5% of retail purchases come
back as (partial) refunds with a negative amount. Online share depends on the category and the
cardholder; overseas spend is likelier for travel categories, travel-minded cardholders and those
living abroad.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worlds import catalog
from worlds.catalog import SPEND_CATEGORIES, TOPIC_INDEX
from worlds.event_clock import DAYTIME, MEALS, Clock, event_times, expand_counts
from worlds.population import Cardholders
from worlds.sampling import draw_from_rows, row_cdf
from worlds.scenario import Scenario

_DEFAULT = Scenario()

_MEDIAN = np.array([c.amount_median for c in SPEND_CATEGORIES])
_SIGMA = np.array([c.amount_sigma for c in SPEND_CATEGORIES])
_ONLINE = np.array([c.online_share for c in SPEND_CATEGORIES])
_LOG_SHARE = np.log([c.daily_share for c in SPEND_CATEGORIES])
_TRAVEL = np.isin([c.name for c in SPEND_CATEGORIES], ["airlines", "hotels", "travel_agency"])
_REFUNDABLE = np.isin(
    [c.name for c in SPEND_CATEGORIES],
    ["department_store", "electronics", "digital", "fashion", "luxury", "airlines", "hotels",
     "travel_agency"],
)
_DINING = TOPIC_INDEX["dining"]


@dataclass
class Transactions:
    user: np.ndarray  # position within the block
    ts: np.ndarray
    amount: np.ndarray
    mcc: np.ndarray
    online: np.ndarray
    channel_null: np.ndarray
    overseas: np.ndarray
    overseas_null: np.ndarray


def topic_probabilities(people: Cardholders, scenario: Scenario = _DEFAULT) -> np.ndarray:
    """[n, n_spend_topics] each cardholder's probability that a transaction falls in each spend topic."""
    space = scenario.space
    taste = people.shown_log_taste[:, : space.n_spend]
    if scenario.spend_taste != 1.0:
        taste = scenario.spend_taste * taste
    log_share = _LOG_SHARE[space.category]
    if space.fine:
        log_share = log_share - np.log(np.bincount(space.category)[space.category])
    logits = taste + log_share[None, :]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def category_probabilities(people: Cardholders, scenario: Scenario = _DEFAULT) -> np.ndarray:
    """[n, n_categories] each cardholder's probability that a transaction falls in each category."""
    probs = topic_probabilities(people, scenario)
    space = scenario.space
    if not space.fine:
        return probs
    return probs @ np.eye(catalog.N_SPEND)[space.category]


def expected_monthly_spend(people: Cardholders, scenario: Scenario = _DEFAULT) -> np.ndarray:
    """Expected spend per 30 days in CNY (drives utilisation, instalments and points)."""
    mean_amount = category_probabilities(people, scenario) @ (_MEDIAN * np.exp(_SIGMA**2 / 2))
    return 30.0 * people.tx_rate * people.spend_level * mean_amount


def make_transactions(
    rng: np.random.Generator, people: Cardholders, clock: Clock, scenario: Scenario = _DEFAULT
) -> Transactions:
    days = np.arange(clock.days)
    weekday = (clock.dates().astype("datetime64[D]").astype(np.int64) + 3) % 7  # 0 = Monday
    rate = people.tx_rate[:, None] * np.where(weekday >= 5, 1.15, 1.0)[None, :]
    rate = rate * (days[None, :] >= people.open_day[:, None])
    user, day = expand_counts(rng.poisson(rate))
    n = len(user)

    space = scenario.space
    topic = draw_from_rows(rng, row_cdf(topic_probabilities(people, scenario)), user)
    category = space.category[topic]

    amount = _MEDIAN[category] * people.spend_level[user] * rng.lognormal(0.0, _SIGMA[category])
    refund = _REFUNDABLE[category] & (rng.random(n) < 0.015)
    amount = np.where(refund, -amount * rng.uniform(0.3, 1.0, n), amount)
    amount = np.round(np.maximum(np.abs(amount), 1.0) * np.sign(amount), 2)

    codes, counts = catalog.mcc_table()
    mcc = codes[category, np.floor(rng.random(n) * counts[category]).astype(np.int64)]
    if space.fine:
        mcc = np.array(space.mcc, dtype=codes.dtype)[topic]

    online = rng.random(n) < np.clip(_ONLINE[category] + people.online_pref[user], 0.01, 0.99)

    travel_taste = people.behaviour_taste()[:, space.index["travel_perks"]]
    p_overseas = np.where(_TRAVEL[category], 0.2, 0.01) * np.exp(0.5 * travel_taste[user])
    p_overseas = np.where(people.abroad[user], 0.75, np.minimum(p_overseas, 0.9))
    overseas = rng.random(n) < p_overseas

    meals = category == _DINING
    ts = np.empty(n, dtype=np.int64)
    offsets = people.utc_offset_hours[user]
    ts[meals] = event_times(rng, clock, day[meals], offsets[meals], MEALS)
    ts[~meals] = event_times(rng, clock, day[~meals], offsets[~meals], DAYTIME)
    keep = (ts >= clock.start_us) & (ts <= clock.end_us)

    return Transactions(
        user=user[keep],
        ts=ts[keep],
        amount=amount[keep],
        mcc=mcc[keep],
        online=online[keep],
        channel_null=(rng.random(n) < 0.02)[keep],
        overseas=overseas[keep],
        overseas_null=(rng.random(n) < 0.01)[keep],
    )
