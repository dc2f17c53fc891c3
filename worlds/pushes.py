"""The push log: past broadcast pushes and transactional reminders, answered by the response model.

Past policy (not personalised): every day the account ran a few broadcast campaigns
(`CampaignPlan`: marketing items valid that day, picked by exposure, i.e. popularity, each at its
own local send hour; the first one open to every tier). Each opted-in cardholder received marketing
pushes at a personal intensity (1 to 12 per 30 days: the bank's old segments pushed some people far
more than others) on random days, each carrying one of that day's campaigns allowed for their tier,
never the same item twice. In a world with campaign targeting (`worlds.scenario`, ``campaign_targeting``)
that share of the marketing sends instead carries, of the day's campaigns allowed for the cardholder and
not yet sent to them, the one whose topics best match their true taste (`ResponseModel.affinity`): the
campaign reaches the cardholders likeliest to like it, and its open rate over its sends overstates what
everyone else would do. The push log records no such propensity. Transactional reminders go to
everyone following the card cycle (statement ready on the statement day, bill due three days before
the due date, payment received, points expiring near month end).

The answers come from `worlds.response.ResponseModel`: a push is opened with the fatigued open
probability (``recent`` = marketing pushes in the trailing window, this one included; pushes from a
burn-in month before the window count too; at the cardholder's local send hour, which matters when the
world has a time-of-day preference) and muted with the mute probability, which rises with
``recent``. A cardholder who mutes receives nothing afterwards. Opens come after a lognormal delay
(median ~40 minutes); an open that would fall after the end date is not observed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worlds.content import Content
from worlds.event_clock import DAY_US, HOUR_US, PUSH_HOURS, Clock, event_times, expand_counts
from worlds.menu import DUE_AFTER_DAYS
from worlds.population import Cardholders
from worlds.response import ResponseModel
from worlds.sampling import draw_from_rows, row_cdf

_SECOND_US = 1_000_000
# reminder name -> (days since statement it goes out, share of cardholders it goes to)
_REMINDER_SCHEDULE = {
    "statement_ready": (0, 0.35),
    "bill_due": (DUE_AFTER_DAYS - 3, 0.6),
    "payment_received": (DUE_AFTER_DAYS - 1, 0.3),
}


@dataclass
class Pushes:
    user: np.ndarray
    item: np.ndarray
    sent: np.ndarray
    opened: np.ndarray  # -1 = not opened
    muted: np.ndarray
    recent: np.ndarray  # marketing pushes in the trailing window at send time (diagnostics)


@dataclass(frozen=True)
class CampaignPlan:
    """The broadcast campaigns of each day from ``first_day`` (negative: burn-in before the window)."""

    first_day: int
    items: np.ndarray  # [n_days, CAMPAIGNS_PER_DAY] content index, -1 = no campaign in that slot
    hours: np.ndarray  # [n_days, CAMPAIGNS_PER_DAY] local send hour


CAMPAIGNS_PER_DAY = 3


@dataclass(frozen=True)
class Targeting:
    """Campaign targeting by taste: ``share`` (0-1] of the marketing sends chosen by true affinity."""

    share: float
    rng: np.random.Generator  # its own stream, so the rest of the block's draws do not shift with the share

    def __post_init__(self) -> None:
        if not 0.0 < self.share <= 1.0:
            raise ValueError(f"campaign targeting share must be in (0, 1], got {self.share}")


def plan_campaigns(rng: np.random.Generator, content: Content, clock: Clock, burn_in: int) -> CampaignPlan:
    """Pick each day's campaigns among the marketing items valid that day, by exposure."""
    days = np.arange(-burn_in, clock.days)
    day_start = clock.day0_us + days * DAY_US
    starts, ends = content.valid_from[None, :], content.valid_to[None, :]
    started = (starts < 0) | (starts < day_start[:, None] + DAY_US)
    valid = started & ((ends < 0) | (ends >= day_start[:, None]))
    valid &= ~content.transactional[None, :]
    # exposure-weighted sampling without replacement (Gumbel top-k); the first slot is open to all tiers
    keys = np.where(valid, np.log(np.maximum(content.exposure, 1e-12))[None, :]
                    + rng.gumbel(size=valid.shape), -np.inf)
    open_keys = np.where(content.min_tier[None, :] == 0, keys, -np.inf)
    first = np.argmax(open_keys, axis=1)
    has_first = np.isfinite(open_keys[np.arange(len(days)), first])
    keys[np.arange(len(days)), first] = -np.inf
    rest = np.argsort(-keys, axis=1, kind="stable")[:, : CAMPAIGNS_PER_DAY - 1]
    rest = np.where(np.isfinite(np.take_along_axis(keys, rest, axis=1)), rest, -1)
    items = np.concatenate([np.where(has_first, first, -1)[:, None], rest], axis=1)
    if items.shape[1] < CAMPAIGNS_PER_DAY:  # catalogues smaller than a day's campaigns
        items = np.pad(items, ((0, 0), (0, CAMPAIGNS_PER_DAY - items.shape[1])), constant_values=-1)
    cum = np.cumsum(PUSH_HOURS) / PUSH_HOURS.sum()
    hours = np.searchsorted(cum, rng.random(items.shape), side="right")
    return CampaignPlan(first_day=-burn_in, items=items.astype(np.int64), hours=np.minimum(hours, 23))


def targeted_slots(
    rng: np.random.Generator,
    user: np.ndarray,
    col: np.ndarray,
    slot: np.ndarray,
    allowed: np.ndarray,
    plan: CampaignPlan,
    model: ResponseModel,
    share: float,
) -> np.ndarray:
    """``slot`` with ``share`` of the sends moved to the cardholder's best-matching campaign of the day.

    Days are walked in order so a targeted send skips campaigns the cardholder already received (a
    cardholder's favourite item runs on many days); when every allowed campaign was received, the send
    keeps its random slot and is dropped later as a repeat, as untargeted repeats are.
    """
    targeted = rng.random(len(user)) < share
    items = plan.items[col]
    match = np.where(allowed, model.affinity(user[:, None], np.maximum(items, 0)), -np.inf)
    received = np.zeros((model.n_users, model.n_items), dtype=bool)
    slot = slot.copy()
    order = np.argsort(col, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(col[order]) != 0])
    for day in np.split(order, starts[1:]):
        chosen = day[targeted[day]]
        if len(chosen):
            seen = received[user[chosen, None], np.maximum(items[chosen], 0)]
            score = np.where(seen, -np.inf, match[chosen])
            best = np.argmax(score, axis=1)
            fresh = np.isfinite(score[np.arange(len(chosen)), best])
            slot[chosen[fresh]] = best[fresh]
        received[user[day], items[day, slot[day]]] = True
    return slot


def _marketing(
    rng: np.random.Generator,
    people: Cardholders,
    content: Content,
    clock: Clock,
    plan: CampaignPlan,
    model: ResponseModel,
    targeting: Targeting | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    days = np.arange(plan.first_day, clock.days)
    active = (days[None, :] >= people.open_day[:, None]) & people.marketing_ok[:, None]
    rate = (people.push_intensity / 30.0)[:, None] * active
    user, col = expand_counts(rng.poisson(rate))

    slots = plan.items[col]
    allowed = (slots >= 0) & content.tier_allowed()[people.tier[user][:, None], np.maximum(slots, 0)]
    slot = draw_from_rows(rng, row_cdf(allowed.astype(np.float64)), np.arange(len(user)))
    found = slot >= 0
    user, col, slot = user[found], col[found], slot[found]
    if targeting is not None:
        slot = targeted_slots(targeting.rng, user, col, slot, allowed[found], plan, model, targeting.share)
    item = plan.items[col, slot]
    local = plan.hours[col, slot] * HOUR_US + (rng.random(len(user)) * 3_600).astype(np.int64) * _SECOND_US
    offset = (people.utc_offset_hours[user] * HOUR_US).astype(np.int64)
    sent = clock.day0_us + days[col] * DAY_US + local - offset
    return user, item, sent


def _reminders(
    rng: np.random.Generator, people: Cardholders, content: Content, clock: Clock
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    since = clock.cycle_position(people.statement_day)
    active = np.arange(clock.days)[None, :] >= people.open_day[:, None]
    users, items, sent = [], [], []
    for item in np.flatnonzero(content.transactional):
        name = content.reminder[item]
        if name in _REMINDER_SCHEDULE:
            position, share = _REMINDER_SCHEDULE[name]
            if name == "payment_received":
                share = np.where(people.autopay, 0.8, share)[:, None]
            due = (since == position) & active & (rng.random(since.shape) < share)
        else:  # points expiring: a notice near the end of some months
            dates = clock.dates()
            dom = (dates - dates.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
            due = (dom == 25)[None, :] & active & (rng.random(since.shape) < 0.1)
        user, day = np.nonzero(due)
        users.append(user)
        items.append(np.full(len(user), item, dtype=np.int64))
        sent.append(event_times(rng, clock, day, people.utc_offset_hours[user], PUSH_HOURS))
    if not users:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(users), np.concatenate(items), np.concatenate(sent)


def _trailing_counts(
    user: np.ndarray, sent: np.ndarray, marketing: np.ndarray, window_us: int, origin_us: int
) -> np.ndarray:
    """Marketing pushes to the same cardholder within (sent - window, sent], for every push."""
    seconds = (sent - origin_us) // _SECOND_US
    key = user.astype(np.int64) * (1 << 34) + seconds
    marketing_keys = np.sort(key[marketing])
    window = window_us // _SECOND_US
    upper = np.searchsorted(marketing_keys, key, side="right")
    lower = np.searchsorted(marketing_keys, key - window, side="right")
    return upper - lower


def make_pushes(
    rng: np.random.Generator,
    people: Cardholders,
    content: Content,
    clock: Clock,
    model: ResponseModel,
    plan: CampaignPlan,
    targeting: Targeting | None = None,
) -> Pushes:
    """The block's push log; ``plan`` must start ``model.params.window_days`` days before the window.

    ``targeting`` (None: every campaign send at random) moves a share of the marketing sends to the
    cardholder's best-matching campaign of the day.
    """
    window_days = model.params.window_days
    m_user, m_item, m_sent = _marketing(rng, people, content, clock, plan, model, targeting)
    order = np.lexsort((m_sent, m_user))
    m_user, m_item, m_sent = m_user[order], m_item[order], m_sent[order]
    _, first_time = np.unique(m_user * len(content) + m_item, return_index=True)
    once = np.sort(first_time)  # a campaign reaches a cardholder at most once
    r_user, r_item, r_sent = _reminders(rng, people, content, clock)
    user = np.concatenate([m_user[once], r_user])
    item = np.concatenate([m_item[once], r_item])
    sent = np.concatenate([m_sent[once], r_sent])
    order = np.lexsort((item, sent, user))
    user, item, sent = user[order], item[order], sent[order]
    marketing = ~content.transactional[item]
    origin = clock.start_us - (window_days + 2) * DAY_US
    recent = _trailing_counts(user, sent, marketing, window_days * DAY_US, origin)

    n = len(user)
    local_hours = None
    if model.params.hour_weight:
        local_us = sent + (people.utc_offset_hours[user] * HOUR_US).astype(np.int64)
        local_hours = (local_us % DAY_US) / HOUR_US
    opened, muted = model.draw(rng, user, item, recent, local_hours)
    delay = np.ceil(rng.lognormal(np.log(40 * 60.0), 1.3, n)).astype(np.int64) * _SECOND_US
    opened_ts = np.where(opened, sent + delay, -1)
    opened_ts = np.where(opened_ts > clock.end_us, -1, opened_ts)

    # nothing reaches a cardholder after they muted (mutes during the burn-in month count too)
    muted_before = np.cumsum(muted) - muted
    start_of_user = np.searchsorted(user, user, side="left")
    muted_before = muted_before - (np.cumsum(muted) - muted)[start_of_user]
    keep = (muted_before == 0) & (sent >= clock.start_us) & (sent <= clock.end_us)
    return Pushes(user=user[keep], item=item[keep], sent=sent[keep], opened=opened_ts[keep],
                  muted=muted[keep], recent=recent[keep])
