"""Menu clicks on the official account, driven by needs and the monthly card cycle.

Every cardholder has a statement day (1-28); payment is due 20 days after it. Per cardholder, day
and menu key the number of clicks is Poisson with a rate that is the cardholder's menu activity
times:

- ``bill_query``: high on the statement day and the three days after, a little before the due date;
- ``repayment``: rising in the week before the due date, peaking in its last three days (cardholders
  on autopay rarely click it);
- ``installment``: grows with utilisation (expected monthly spend / credit limit) and instalment
  taste, mostly in the days after the statement;
- ``limit_increase``: for cardholders spending close to their limit, more with credit-limit taste;
- ``points_mall``: for points-rich cardholders (long tenure x spend x tier rate), more with points taste;
- ``card_activation``: in the first week after a card opened within the window;
- ``customer_service``: a low base rate, higher for cardholders living abroad;
- ``promotions``: with cashback taste and general engagement.

A topic's taste enters a rate as ``min(exp(leaning * taste), cap)`` with the scenario's leaning and
cap (`Scenario.menu_leaning`: 0.6 and 6 by default, stronger in a ``needs`` world).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.contract import MENU_KEYS
from worlds import catalog
from worlds.event_clock import DAYTIME, Clock, event_times, expand_counts
from worlds.population import Cardholders
from worlds.scenario import Scenario
from worlds.spend import expected_monthly_spend

_DEFAULT = Scenario()

DUE_AFTER_DAYS = 20


@dataclass
class MenuClicks:
    user: np.ndarray
    ts: np.ndarray
    key: np.ndarray  # index into MENU_KEYS


def _window(since: np.ndarray, low: int, high: int) -> np.ndarray:
    return ((since >= low) & (since <= high)).astype(np.float64)


def click_rates(people: Cardholders, clock: Clock, scenario: Scenario = _DEFAULT) -> list[np.ndarray]:
    """One [n, days] expected-click matrix per menu key, in `MENU_KEYS` order."""
    days = np.arange(clock.days)
    active = (days[None, :] >= people.open_day[:, None]).astype(np.float64)
    act = people.menu_activity[:, None] * active
    since = clock.cycle_position(people.statement_day)
    taste = people.behaviour_taste()
    exponent, cap = scenario.menu_leaning
    index = scenario.space.index

    def leaning(topic: str) -> np.ndarray:
        return np.minimum(np.exp(exponent * taste[:, index[topic]]), cap)[:, None]

    monthly = expected_monthly_spend(people, scenario)
    utilisation = monthly / people.credit_limit
    tenure_months = np.maximum(-people.open_day, 0) / 30.0 + 1.0
    points = tenure_months * monthly * catalog.TIER_POINTS_RATE[people.tier]
    points_rich = (1.0 / (1.0 + np.exp(-(np.log(points + 1.0) - np.log(60_000.0)))))[:, None]
    manual_pay = np.where(people.autopay, 0.15, 1.0)[:, None]
    opened = people.open_day[:, None]
    new_card = ((days[None, :] >= opened) & (days[None, :] <= opened + 6)).astype(np.float64)

    rates = {
        "bill_query": act * (0.012 + 0.22 * (since == 0) + 0.12 * _window(since, 1, 3)
                             + 0.04 * _window(since, DUE_AFTER_DAYS - 5, DUE_AFTER_DAYS)),
        "repayment": act * manual_pay * (0.003 + 0.06 * _window(since, DUE_AFTER_DAYS - 7, DUE_AFTER_DAYS - 3)
                                         + 0.22 * _window(since, DUE_AFTER_DAYS - 2, DUE_AFTER_DAYS)),
        "installment": act * (0.002 + 0.03 * np.minimum(utilisation, 1.5)[:, None] * leaning("installment"))
        * (1.0 + 2.5 * _window(since, 0, 5)),
        "limit_increase": act * 0.035 / (1.0 + np.exp(-6.0 * (utilisation - 0.6)))[:, None]
        * leaning("credit_limit"),
        "points_mall": act * 0.03 * points_rich * leaning("points"),
        "card_activation": 0.45 * new_card + 0.0003 * active,
        "customer_service": act * (0.004 + 0.012 * people.abroad[:, None]),
        "promotions": act * 0.012 * leaning("cashback") * np.exp(0.3 * people.engagement)[:, None],
    }
    return [rates[key] for key in MENU_KEYS]


def make_menu_clicks(
    rng: np.random.Generator, people: Cardholders, clock: Clock, scenario: Scenario = _DEFAULT
) -> MenuClicks:
    users, days, keys = [], [], []
    for key, rate in enumerate(click_rates(people, clock, scenario)):
        user, day = expand_counts(rng.poisson(rate))
        users.append(user)
        days.append(day)
        keys.append(np.full(len(user), key, dtype=np.int8))
    user = np.concatenate(users)
    day = np.concatenate(days)
    key = np.concatenate(keys)
    ts = event_times(rng, clock, day, people.utc_offset_hours[user], DAYTIME)
    keep = (ts >= clock.start_us) & (ts <= clock.end_us)
    return MenuClicks(user=user[keep], ts=ts[keep], key=key[keep])
