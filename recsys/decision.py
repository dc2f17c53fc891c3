"""Send or hold a ranked push: its value now against a price on disturbance, later hours, the month's slots.

value = P(open) - mute_weight x P(mute), both at the local send hour with `recent` = the cardholder's
marketing pushes in the trailing 30 days plus this one: those of the push log the response model was
fitted on and those the caps state holds after it (`recsys.caps.policy.Decision` holds the settings):

1. the send time: a later whole hour of the cardholder's local day, outside quiet hours, when it is worth
   more than (1 + hour_margin) x the value now ("better hour later", `send_at` that hour), else now. The
   answer is then `send` at that time, not a hold: a scheduler asks at a few slots a day, and a hold for an
   hour it never asks at loses the push (in simulation: value per 1,000 cardholders 89 with such holds,
   132 without the hour rule);
2. hold when the value at the send time is below `min_value` ("below threshold");
3. pacing, looking ahead over the rest of the calendar month: each later local day is valued at its best
   hour outside quiet hours, with the recent count that day will have as older pushes leave the 30-day
   window, and only while the content is still valid. Hold when at least as many later days are worth
   more than (1 + pacing.margin) x the value now as the cardholder has monthly slots left ("slots worth
   more later"): a cardholder pushed often last month is worth pushing once those pushes age out, and
   spending the four slots in the first days stacks them into the same window. A later day's value is
   the best of the top push (while still valid) and of the cardholder's best candidates that become
   valid later this month (`Upcoming`, from their first valid hour on). When such content is what makes
   the later days worth more, the hold names it and its `send_at` is its first valid day at its best
   hour there ("better content later");
4. otherwise send; but when the better hour later today is at or after one of the scheduler's slots
   (`slots`: the times of day it asks at, learned from its calls or set in the policy) and that slot is
   itself worth more than (1 + hour_margin) x now, hold until the latest such slot ("better hour later:
   ask again at 19:30", `send_at` that slot, nothing reserved): a scheduler that sends at once on `send`
   and ignores `send_at` then still gets the better hour's slot. With no slots known, send as above;
   but while the scheduler's habit is not known either (`hold_for_hour`, its first day), hold until the
   better hour ("ask again at or after 13:00"): one that sends at once would push now at the worse hour.

A scheduler known not to honour `send_at` (learned from its `sent` events, or set in the policy) with its
slots known gets `decide_at_slots` instead: the push can only go now or when it asks again, so the
send time is chosen among now, its later slots today and its first slot tomorrow (while the month has
a later day for the content and at least as many later days as slots left), each at its local hour's
value, a slot worth more than now at all winning (no hour margin: it is known to ask then); `send`
means now, `hold` names the slot to ask again at. Steps 2 and 3 apply to that value, with every later
day valued at the best of the slots' hours (the caller's `later_days` and `upcoming`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np

from recsys.caps.policy import Decision, Policy, QuietHours
from recsys.caps.rules import CardholderRecord

if TYPE_CHECKING:
    from recsys.response_model import PushResponseModel

SEND, HOLD = "send", "hold"
RECENT_DAYS = 30
NO_RESPONSE_MODEL = "no response model"
DECISIONS_OFF = "decisions disabled by the policy"


@dataclass(frozen=True)
class Verdict:
    decision: str  # SEND or HOLD
    reason: str
    # UTC: when to send (now, or the better hour later today); on hold, when to ask again (a scheduler slot
    # before a better hour, or better content later), else None
    send_at: datetime | None
    value: float  # the value at send_at (or now, on hold)


@dataclass(frozen=True)
class Upcoming:
    """A candidate valid later this month: its best value on each later local day (tomorrow first; NaN
    while not yet or no longer valid) and the epoch second of that day's best hour."""

    content_id: str
    days: np.ndarray  # float [d]
    seconds: np.ndarray  # int [d]

    def moment(self, day: int) -> datetime:
        return datetime.fromtimestamp(int(self.seconds[day]), UTC)


# Built once: CPython's timedelta constructor costs about 1 us, and a batch asks for ~14 per cardholder.
_HOUR_STEPS = tuple(timedelta(hours=step) for step in range(24))


def is_quiet(quiet: QuietHours | None, local: datetime) -> bool:
    """Whether a local time falls in the policy's quiet hours (which may cross midnight)."""
    if quiet is None:
        return False
    return _quiet_minute(quiet.start_minute, quiet.end_minute, local.hour * 60 + local.minute)


def _quiet_minute(start: int, end: int, minute: int) -> bool:
    return start <= minute < end if start < end else minute >= start or minute < end


def later_hours(now_local: datetime, quiet: QuietHours | None) -> list[datetime]:
    """The whole local hours after `now_local` on its local day that are outside quiet hours."""
    start = now_local.replace(minute=0, second=0, microsecond=0)
    # an aware datetime plus a timedelta is wall-clock arithmetic: the local day's last step is hour 23
    steps = range(1, 24 - start.hour)
    if quiet is None:
        return [start + _HOUR_STEPS[step] for step in steps]
    begin, end = quiet.start_minute, quiet.end_minute  # each reading parses "HH:MM"
    return [start + _HOUR_STEPS[step] for step in steps
            if not _quiet_minute(begin, end, (start.hour + step) * 60)]


def marketing_times(record: CardholderRecord, now_ms: int, since_ms: int) -> np.ndarray:
    """int64 epoch seconds of the marketing pushes sent, or reserved and not expired, in (since, now]."""
    out = [push.ts // 1000 for push in record.pushes.values()
           if not push.transactional and since_ms < push.ts <= now_ms
           and (push.status == "confirmed" or (push.status == "reserved" and push.expires > now_ms))]
    return np.asarray(out, dtype=np.int64)


def recent_marketing(record: CardholderRecord, now_ms: int, days: int = RECENT_DAYS) -> int:
    """Marketing pushes sent, or reserved and not expired, in the `days` before `now_ms`."""
    return len(marketing_times(record, now_ms, now_ms - days * 86_400_000 - 1))


def monthly_cap(policy: Policy) -> int | None:
    """The policy's calendar-month limit on every marketing push (the smallest; None: no such limit)."""
    limits = [limit.max for limit in policy.limits
              if limit.window == "calendar_month" and not limit.kinds and not limit.tags]
    return min(limits) if limits else None


def monthly_slots_left(policy: Policy, record: CardholderRecord, month_start_ms: int,
                       now_ms: int) -> int | None:
    """Remaining slots of `monthly_cap` this local month (None: no such limit)."""
    cap = monthly_cap(policy)
    if cap is None:
        return None
    used = sum(1 for push in record.pushes.values()
               if not push.transactional and month_start_ms <= push.ts <= now_ms
               and (push.status == "confirmed" or (push.status == "reserved" and push.expires > now_ms)))
    return max(0, cap - used)


def projected_recents(times: Sequence[np.ndarray], now: np.ndarray, days: int) -> np.ndarray:
    """int [n, days + 1]: for each of n cardholders, the recent count of a push now (offset 0) and on each
    of the next `days` days at the same time, from the pushes known at `now[i]` (epoch seconds `times[i]`),
    this push included: older pushes leave the `RECENT_DAYS` window and no other push is assumed in
    between. One numpy pass, the rows padded with a time before any window."""
    now = np.asarray(now, dtype=np.int64)
    lengths = np.array([len(row) for row in times], dtype=np.int64)
    padded = np.full((len(times), int(lengths.max(initial=0))), np.iinfo(np.int64).min, dtype=np.int64)
    if padded.size:
        padded[np.arange(padded.shape[1])[None, :] < lengths[:, None]] = np.concatenate(
            [np.asarray(row, dtype=np.int64) for row in times])
    at = (now[:, None] + 86_400 * np.arange(days + 1, dtype=np.int64)[None, :])[:, :, None]
    inside = (padded[:, None, :] > at - RECENT_DAYS * 86_400) & (padded[:, None, :] <= at)
    return 1 + inside.sum(axis=2)


def day_values(model: PushResponseModel, open_logit: np.ndarray, mute_logit: np.ndarray, counts: np.ndarray,
               mute_weight: float, hours: np.ndarray) -> np.ndarray:
    """float [n, d]: each cardholder's best value on each later day among the hours where `hours` is True.

    `open_logit`, `mute_logit` [n, h] are the push's uncalibrated logits at h local hours with the recent
    count of now, `counts` [n, d + 1] the recent count now and on each later day (`projected_recents`);
    the recent terms enter the logit additively, so only their change is added. `hours` is [h], or
    [n, h] for hours of each cardholder's own (NaN where none)."""
    runs = count_runs(np.asarray(counts)[:, 1:])
    by_run = run_values(model, open_logit, mute_logit, counts, mute_weight, runs)
    mask = np.asarray(hours, dtype=bool)
    # the usable hours are the same on every day: the best hour is chosen once per run of days
    usable = np.broadcast_to(mask[None, :] if mask.ndim == 1 else mask[runs.row], by_run.shape)
    best = _best_hour(by_run[:, None, :], usable[:, None, :])[0][:, 0]
    return best[runs.of_day]


def day_best(model: PushResponseModel, open_logit: np.ndarray, mute_logit: np.ndarray, counts: np.ndarray,
             mute_weight: float, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`day_values` hour by hour for candidates with their own usable hours: float [n, d] best values
    (NaN where no hour is usable) and int [n, d] the column of that hour (-1 where none).

    `usable` is bool [n, d, h]: whether the candidate may go on each later day at each hour (valid then,
    outside quiet hours)."""
    runs = count_runs(np.asarray(counts)[:, 1:])
    by_run = run_values(model, open_logit, mute_logit, counts, mute_weight, runs)
    return _best_hour(by_run[runs.of_day], usable)


def _best_hour(value: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    value = np.where(usable, value, -np.inf)
    column = value.argmax(axis=2)
    best = np.take_along_axis(value, column[:, :, None], axis=2)[:, :, 0]
    found = np.isfinite(best)
    return np.where(found, best, np.nan), np.where(found, column, -1)


@dataclass(frozen=True)
class CountRuns:
    """The runs of later days with the same recent count, of all cardholders in one flat list."""

    of_day: np.ndarray  # int [n, d]: each later day's run
    row: np.ndarray  # int [runs]: the cardholder of each run
    count: np.ndarray  # [runs]: its recent count


def count_runs(counts: np.ndarray) -> CountRuns:
    """The runs of equal neighbouring counts in `counts` [n, d] (each row's later days, tomorrow first)."""
    counts = np.asarray(counts)
    n, days = counts.shape
    starts = np.ones((n, days), dtype=bool)
    starts[:, 1:] = counts[:, 1:] != counts[:, :-1]
    flat = starts.ravel()
    return CountRuns((np.cumsum(flat) - 1).reshape(n, days), np.flatnonzero(flat) // max(days, 1),
                     counts.ravel()[flat])


def run_values(model: PushResponseModel, open_logit: np.ndarray, mute_logit: np.ndarray, counts: np.ndarray,
               mute_weight: float, runs: CountRuns) -> np.ndarray:
    """float [runs, h]: the push's value at each of the h hours on the days of each run (`count_runs` of
    `counts[:, 1:]`), calibrated once per run rather than once per day.

    Older pushes leave the 30-day window on a few days of a month, so most later days repeat a neighbour's
    count, and calibrating them again would repeat its `exp`."""
    values = []
    for target, logit in (("open", open_logit), ("mute", mute_logit)):
        now = model.recent_logit(target, np.asarray(counts)[:, 0])[runs.row]
        shifted = logit[runs.row] + (model.recent_logit(target, runs.count) - now)[:, None]
        values.append(model.calibration[target].apply(shifted))
    return values[0] - mute_weight * values[1]


def slot_moments(minutes: Sequence[int], now: datetime, zone: str) -> tuple[datetime, ...]:
    """The scheduler's slots (`minutes` of the day in its time zone `zone`) in the 24 hours after `now`."""
    local = now.astimezone(ZoneInfo(zone))
    out = []
    for day in (local.date(), local.date() + timedelta(days=1)):
        for minute in minutes:
            moment = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=local.tzinfo)
            if now < moment <= now + timedelta(days=1):
                out.append(moment)
    return tuple(sorted(out))


def slot_to_wait_for(later: Sequence[tuple[datetime, float]], best: datetime, bar: float,
                     slots: Sequence[datetime]) -> tuple[datetime, float] | None:
    """The latest of the scheduler's `slots` on `best`'s local day whose local hour is at or before the
    better hour `best` and is worth more than `bar` (its value is its local hour's in `later`), with that
    value; None when there is none."""
    worth = {moment.hour: value for moment, value in later}
    found = None
    for slot in slots:
        local = slot.astimezone(best.tzinfo)
        value = worth.get(local.hour)
        if local.date() == best.date() and local.hour <= best.hour and value is not None and value > bar:
            found = (local, value)
    return found


def decide(settings: Decision, value_now: float, later: Sequence[tuple[datetime, float]], now: datetime,
           slots_left: int | None, later_days: Sequence[float] | np.ndarray = (),
           upcoming: Sequence[Upcoming] = (), slots: Sequence[datetime] = (),
           follows_send_at: bool | None = None, hold_for_hour: bool = False) -> Verdict:
    """The verdict for one cardholder's top push (see the module docstring); `later` pairs each later
    local hour of the day with the push's value then, `later_days` holds the best value of each later day
    of the local month, tomorrow first, while the content is still valid; `upcoming` the candidates that
    become valid later this month; `slots` the scheduler's next times of asking (`slot_moments`);
    `follows_send_at` whether the scheduler sends at `send_at` (None: not known); `hold_for_hour`: a
    better hour later today with no slot to wait for is a `hold` until it, not a `send` at it (neither
    the scheduler's habit nor its slots known). `now` is the decision time in the cardholder's zone."""
    if follows_send_at is False and slots:
        return decide_at_slots(settings, value_now, later, now, slots_left, later_days, upcoming, slots)
    value, send_at, why = value_now, now.astimezone(UTC), f"value {value_now:.4f} now"
    wait = None
    better = None
    if later:
        values = np.asarray([v for _, v in later])
        best = int(values.argmax())
        bar = value_now + settings.hour_margin * abs(value_now)
        if values[best] > bar:
            moment = better = later[best][0]
            value, send_at = float(values[best]), moment.astimezone(UTC)
            why = (f"better hour later: send at {moment.strftime('%H:%M')} local, value {value:.4f} "
                   f"against {value_now:.4f} now")
            wait = slot_to_wait_for(later, moment, bar, slots)
            if wait is not None:
                why = (f"better hour later: ask again at {wait[0].strftime('%H:%M')} local, value "
                       f"{wait[1]:.4f} then and {value:.4f} at {moment.strftime('%H:%M')} against "
                       f"{value_now:.4f} now")
    verdict = _send_or_hold(settings, value, send_at, why, slots_left, later_days, upcoming)
    if wait is not None and verdict.decision == SEND:
        return Verdict(HOLD, why, wait[0].astimezone(UTC), value)
    if hold_for_hour and better is not None and verdict.decision == SEND:
        why = (f"better hour later: ask again at or after {better.strftime('%H:%M')} local, value "
               f"{value:.4f} then against {value_now:.4f} now")
        return Verdict(HOLD, why, send_at, value)
    return verdict


def decide_at_slots(settings: Decision, value_now: float, later: Sequence[tuple[datetime, float]],
                    now: datetime, slots_left: int | None, later_days: Sequence[float] | np.ndarray,
                    upcoming: Sequence[Upcoming], slots: Sequence[datetime]) -> Verdict:
    """`decide` for a scheduler that sends at once on `send` (see the module docstring): `later_days` and
    `upcoming` value each later day at the best of the scheduler's slot hours."""
    worth = {moment.hour: value for moment, value in later}
    options: list[tuple[datetime, float, str]] = []
    for slot in slots:
        local = slot.astimezone(now.tzinfo)
        if local.date() == now.date() and local.hour in worth:
            options.append((local, worth[local.hour], "later"))
    days = np.asarray(later_days, dtype=np.float64)
    tomorrow = next((slot.astimezone(now.tzinfo) for slot in slots
                     if slot.astimezone(now.tzinfo).date() > now.date()), None)
    if (tomorrow is not None and len(days) and np.isfinite(days[0])
            and (slots_left is None or slots_left <= len(days))):
        options.append((tomorrow, float(days[0]), "tomorrow"))
    # no hour margin: the margin guards against waiting for an hour the scheduler may never ask at, and
    # this one is known to ask again at each of these slots
    bar = value_now
    wait = max(options, key=lambda option: option[1], default=None)
    if wait is None or wait[1] <= bar:
        why = f"value {value_now:.4f} now; no later slot of the scheduler worth more"
        return _send_or_hold(settings, value_now, now.astimezone(UTC), why, slots_left, later_days, upcoming)
    moment, value, when = wait
    why = (f"better hour {when}: ask again at {moment.strftime('%H:%M')} local, value {value:.4f} then "
           f"against {value_now:.4f} now")
    verdict = _send_or_hold(settings, value, moment.astimezone(UTC), why, slots_left, later_days, upcoming)
    if verdict.decision == SEND:
        return Verdict(HOLD, why, moment.astimezone(UTC), value)
    return verdict


_LARGEST = float(np.finfo(np.float64).max)


def nan_as_lowest(values: np.ndarray) -> np.ndarray:
    """`np.nan_to_num(values, nan=-np.inf)` (NaN to -inf, infinities to the largest finite values) in
    three ufuncs: nan_to_num's own checks cost twice as much, and it runs for every cardholder's
    upcoming candidate."""
    return np.where(np.isnan(values), -np.inf, np.minimum(np.maximum(values, -_LARGEST), _LARGEST))


def _send_or_hold(settings: Decision, value: float, send_at: datetime, why: str, slots_left: int | None,
                  later_days: Sequence[float] | np.ndarray, upcoming: Sequence[Upcoming]) -> Verdict:
    """Steps 2-4 for the value at the send time."""
    if value < settings.min_value:
        return Verdict(HOLD, f"value {value:.4f} below threshold {settings.min_value:g}", None, value)
    pacing = settings.pacing
    days = np.asarray(later_days, dtype=np.float64)
    horizon = max([len(days), *(len(u.days) for u in upcoming)])
    if pacing is None or slots_left is None or slots_left <= 0 or not horizon:
        return Verdict(SEND, why, send_at, value)
    bar = value + pacing.margin * abs(value)
    own = days
    if len(days) < horizon:
        own = np.full(horizon, -np.inf)
        own[:len(days)] = days
    others = np.full((len(upcoming), horizon), -np.inf)
    for row, item in enumerate(upcoming):
        others[row, :len(item.days)] = nan_as_lowest(np.asarray(item.days, np.float64))
    # one upcoming candidate (the usual case, `serving.ranker.UPCOMING`) is its own maximum
    best_day = (own if not len(upcoming) else np.maximum(own, others[0] if len(upcoming) == 1
                                                         else others.max(axis=0)))
    better = int(np.count_nonzero(best_day > bar))
    if better < slots_left:
        return Verdict(SEND, why, send_at, value)
    beats = others > np.maximum(own, bar)[None, :]  # upcoming content worth more than now and the top push
    if beats.any():
        day = int(np.flatnonzero(beats.any(axis=0))[0])
        row = int(np.where(beats[:, day], others[:, day], -np.inf).argmax())
        item, moment = upcoming[row], upcoming[row].moment(day)
        return Verdict(HOLD, f"better content later: {item.content_id} on day {int(day) + 1} worth "
                       f"{others[row, day]:.4f} against {value:.4f} now; {better} later days worth more "
                       f"for {slots_left} slot(s) left", moment, value)
    best = int(best_day.argmax())
    return Verdict(HOLD, f"slots worth more later: {better} later days this month worth more than "
                   f"{value:.4f} now for {slots_left} slot(s) left (best {best_day[best]:.4f} in "
                   f"{best + 1} day(s))", None, value)
