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
slots known gets the send time of `_at_slots` instead: the push can only go now or when it asks again, so the
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

import numpy as np

from recsys.caps.policy import Decision, Policy, QuietHours
from recsys.caps.rules import CardholderRecord, counts
from recsys.times import zone

if TYPE_CHECKING:
    from recsys.response_model import PushResponseModel

SEND, HOLD = "send", "hold"
RECENT_DAYS = 30
NO_RESPONSE_MODEL = "no response model"
DECISIONS_OFF = "decisions disabled by the policy"


# slotted and not frozen, as the caps engines' per-cardholder results: one per cardholder of every batch,
# and a frozen dataclass sets each field through `object.__setattr__`
@dataclass(slots=True)
class Verdict:
    decision: str  # SEND or HOLD
    reason: str
    # UTC: when to send (now, or the better hour later today); on hold, when to ask again (a scheduler slot
    # before a better hour, or better content later), else None
    send_at: datetime | None
    value: float  # the value at send_at (or now, on hold)


@dataclass(slots=True)  # about one per cardholder of every batch, as `Verdict`
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


def marketing_sends(policy: Policy, record: CardholderRecord, now_ms: int) -> list[int]:
    """Epoch ms of the marketing pushes that count toward the caps (`rules.counts`: sent, or reserved and
    not expired) at or before `now_ms`: the one pass over a caps record that the recent count and the
    month's slots are both read from (the policy's history horizon covers both windows)."""
    if not record.pushes:  # most cardholders before a wave's first sends
        return []
    return [push.ts for push in record.pushes.values()
            if not push.transactional and push.ts <= now_ms and counts(push, policy, now_ms)]


def marketing_times(sends: Sequence[int], since_ms: int) -> np.ndarray:
    """int64 epoch seconds of `sends` (`marketing_sends`) after `since_ms`."""
    return np.asarray([ts // 1000 for ts in sends if ts > since_ms], dtype=np.int64)


def monthly_cap(policy: Policy) -> int | None:
    """The policy's calendar-month limit on every marketing push (the smallest; None: no such limit)."""
    limits = [limit.max for limit in policy.limits
              if limit.window == "calendar_month" and not limit.kinds and not limit.tags]
    return min(limits) if limits else None


def monthly_slots_left(cap: int | None, sends: Sequence[int], month_start_ms: int) -> int | None:
    """Remaining slots of the policy's `cap` (`monthly_cap`, read once for a batch) this local month, given
    the `sends` (`marketing_sends`) up to now (None: no such limit)."""
    if cap is None:
        return None
    return max(0, cap - sum(1 for ts in sends if ts >= month_start_ms))


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


def slot_moments(minutes: Sequence[int], now: datetime, timezone: str) -> tuple[datetime, ...]:
    """The scheduler's slots (`minutes` of the day in time zone `timezone`) in the 24 hours after `now`."""
    local = now.astimezone(zone(timezone))
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
    if not slots:
        return None
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
    """The verdict for one cardholder's top push: `decide_many` with a batch of one."""
    return decide_many(settings, [value_now], [later], [now], [slots_left], [later_days], [upcoming],
                       [slots], [follows_send_at], [hold_for_hour])[0]


def decide_many(settings: Decision, values_now: Sequence[float] | np.ndarray,
                later: Sequence[Sequence[tuple[datetime, float]]], now: Sequence[datetime],
                slots_left: Sequence[int | None],
                later_days: Sequence[Sequence[float] | np.ndarray] | None = None,
                upcoming: Sequence[Sequence[Upcoming]] | None = None,
                slots: Sequence[Sequence[datetime]] | None = None,
                follows_send_at: Sequence[bool | None] | None = None,
                hold_for_hour: Sequence[bool] | None = None) -> list[Verdict]:
    """The verdicts for a batch of cardholders' top pushes (see the module docstring), row i from the i-th
    of every sequence: `later[i]` pairs each later local hour of the day with the push's value then,
    `later_days[i]` holds the best value of each later day of the local month, tomorrow first, while the
    content is still valid; `upcoming[i]` the candidates that become valid later this month; `slots[i]`
    the scheduler's next times of asking (`slot_moments`); `follows_send_at[i]` whether the scheduler
    sends at `send_at` (None: not known); `hold_for_hour[i]`: a better hour later today with no slot to
    wait for is a `hold` until it, not a `send` at it (neither the scheduler's habit nor its slots known).
    `now[i]` is the decision time in the cardholder's zone. Omitted sequences: none for every row.

    The hour step and steps 2-4 run over the whole batch in numpy; only the reasons' text and the send
    times of the rows that need them are made one row at a time."""
    n = len(now)
    later_days = [()] * n if later_days is None else later_days
    upcoming = [()] * n if upcoming is None else upcoming
    slots = [()] * n if slots is None else slots
    follows_send_at = [None] * n if follows_send_at is None else follows_send_at
    hold_for_hour = [False] * n if hold_for_hour is None else hold_for_hour
    values_now = np.asarray(values_now, dtype=np.float64)
    # step 1 for every row: the best later hour (the first of equal ones) against the bar
    hour_counts = list(map(len, later))
    hour_values = padded(hour_counts, [value for hours in later for _, value in hours],
                         max(hour_counts, default=0), -np.inf)[0]
    best = hour_values.argmax(axis=1) if hour_values.shape[1] else np.zeros(n, dtype=np.int64)
    bars = values_now + settings.hour_margin * np.abs(values_now)
    if hour_values.shape[1]:
        better = (hour_values[np.arange(n), best] > bars).tolist()
    else:
        better = [False] * n
    # step 1's send time and reason are worked out only for the rows steps 2-4 send (the text and the UTC
    # time cost more than the step itself, and most rows of a batch are held)
    values = values_now.tolist()
    value, moments = list(values), [None] * n  # each row's better hour later (local), if any
    at_slots: dict[int, tuple[datetime, str, tuple[str, datetime] | None]] = {}
    for row in range(n):
        if follows_send_at[row] is False and slots[row]:
            value[row], send_at, reason, hold = _at_slots(
                values[row], later[row], now[row], slots_left[row], later_days[row], slots[row])
            at_slots[row] = (send_at, reason, hold)
        elif better[row]:
            moments[row] = later[row][best[row]][0]
            value[row] = float(hour_values[row, best[row]])
    verdicts = _held(settings, value, slots_left, later_days, upcoming)
    for row, verdict in enumerate(verdicts):
        if verdict is not None:
            continue
        moment, value_now = moments[row], values[row]
        if row in at_slots:
            send_at, reason, hold = at_slots[row]
        elif moment is None:
            send_at, reason, hold = now[row].astimezone(UTC), f"value {value_now:.4f} now", None
        else:
            send_at, clock = moment.astimezone(UTC), _clock(moment)
            reason = (f"better hour later: send at {clock} local, value {value[row]:.4f} "
                      f"against {value_now:.4f} now")
            hold = None
            wait = slot_to_wait_for(later[row], moment, float(bars[row]), slots[row])
            if wait is not None:
                hold = (f"better hour later: ask again at {_clock(wait[0])} local, value "
                        f"{wait[1]:.4f} then and {value[row]:.4f} at {clock} against {value_now:.4f} now",
                        wait[0].astimezone(UTC))
            elif hold_for_hour[row]:
                hold = (f"better hour later: ask again at or after {clock} local, "
                        f"value {value[row]:.4f} then against {value_now:.4f} now", send_at)
        # a hold that replaces the `send` of steps 2-4: its reason and time to ask again
        verdicts[row] = (Verdict(SEND, reason, send_at, value[row]) if hold is None
                         else Verdict(HOLD, hold[0], hold[1], value[row]))
    return verdicts


def _clock(moment: datetime) -> str:
    """`moment.strftime('%H:%M')` without strftime's format parsing: a third of its cost."""
    return f"{moment.hour:02d}:{moment.minute:02d}"


def _at_slots(value_now: float, later: Sequence[tuple[datetime, float]], now: datetime,
              slots_left: int | None, later_days: Sequence[float] | np.ndarray, slots: Sequence[datetime]
              ) -> tuple[float, datetime, str, tuple[str, datetime] | None]:
    """Step 1 for a scheduler that sends at once on `send` (see the module docstring): the value, send
    time and reason steps 2-4 decide on, and the hold that replaces their `send` (None: none)."""
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
    wait = max(options, key=lambda option: option[1], default=None)
    # no hour margin: the margin guards against waiting for an hour the scheduler may never ask at, and
    # this one is known to ask again at each of these slots
    if wait is None or wait[1] <= value_now:
        return (value_now, now.astimezone(UTC),
                f"value {value_now:.4f} now; no later slot of the scheduler worth more", None)
    moment, value, when = wait
    why = (f"better hour {when}: ask again at {_clock(moment)} local, value {value:.4f} then "
           f"against {value_now:.4f} now")
    return value, moment.astimezone(UTC), why, (why, moment.astimezone(UTC))


_LARGEST = float(np.finfo(np.float64).max)


def nan_as_lowest(values: np.ndarray) -> np.ndarray:
    """`np.nan_to_num(values, nan=-np.inf)` (NaN to -inf, infinities to the largest finite values) in
    three ufuncs: nan_to_num's own checks cost twice as much."""
    return np.where(np.isnan(values), -np.inf, np.minimum(np.maximum(values, -_LARGEST), _LARGEST))


def padded(lengths: Sequence[int], values: Sequence[float] | np.ndarray, width: int, fill: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """float [n, width]: row i's `lengths[i]` values (the next of the flat `values`, rows one after
    another) first, then `fill`; and bool [n, width] where a row's own values are. One assignment for
    the batch: a slice per row cost more than the rest of the step."""
    inside = np.arange(width)[None, :] < np.asarray(lengths, dtype=np.int64).reshape(-1, 1)
    out = np.full((len(lengths), width), fill)
    out[inside] = values
    return out, inside


def _joined(rows: Sequence[Sequence[float] | np.ndarray]) -> np.ndarray:
    return np.concatenate([np.zeros(0), *(np.asarray(row, dtype=np.float64) for row in rows if len(row))])


def _held(settings: Decision, value: Sequence[float], slots_left: Sequence[int | None],
          later_days: Sequence[Sequence[float] | np.ndarray], upcoming: Sequence[Sequence[Upcoming]]
          ) -> list[Verdict | None]:
    """Steps 2-4 for each row's value at its send time, over the batch at once: the hold of each row held
    (below threshold, slots worth more later, better content later), None for a row sent at step 1's time.
    Each row's later days and upcoming candidates are padded with -inf to the batch's longest (a day no
    row has is worth less than any), so padding never counts as a better day."""
    n = len(value)
    values = np.asarray(value, dtype=np.float64)
    lengths = [len(days) for days in later_days]
    horizon = max([*lengths, *(len(item.days) for items in upcoming for item in items)], default=0)
    own = padded(lengths, _joined(later_days), horizon, -np.inf)[0]
    width = max(map(len, upcoming), default=0)
    cells: list[Sequence[float] | np.ndarray] = [()] * (n * width)  # (row, column) in row-major order
    for row, items in enumerate(upcoming):
        for column, item in enumerate(items):
            cells[row * width + column] = item.days
    others, present = (part.reshape(n, width, horizon)
                       for part in padded(list(map(len, cells)), _joined(cells), horizon, np.nan))
    others = np.where(present, nan_as_lowest(others), -np.inf)
    pacing = settings.pacing
    left = np.array([-1 if slots is None else slots for slots in slots_left], dtype=np.int64)
    # rows with later days of their own or of a candidate (the batch's padding is not theirs)
    has_days = np.asarray(lengths, dtype=bool) | present.any(axis=(1, 2))
    bar = values + (pacing.margin if pacing is not None else 0.0) * np.abs(values)
    best_day = np.maximum(own, others.max(axis=1)) if width else own
    better = np.count_nonzero(best_day > bar[:, None], axis=1)
    paced = (pacing is not None) & (left > 0) & has_days & (better >= left)
    rows = np.arange(n)
    best_at = best_day.argmax(axis=1) if horizon else np.zeros(n, dtype=np.int64)
    best_value = best_day[rows, best_at] if horizon else np.full(n, np.nan)
    # the first day upcoming content is worth more than now and the top push, and the best such content
    beats = others > np.maximum(own, bar[:, None])[:, None, :]
    content = beats.any(axis=(1, 2))
    day = beats.any(axis=1).argmax(axis=1) if horizon else np.zeros(n, dtype=np.int64)
    worth = np.where(beats, others, -np.inf)[rows, :, day] if width and horizon else np.zeros((n, 0))
    column = worth.argmax(axis=1) if worth.shape[1] else np.zeros(n, dtype=np.int64)
    # as lists: indexing numpy per row cost a scalar look-up each
    better, best_value, best_at = better.tolist(), best_value.tolist(), best_at.tolist()
    out: list[Verdict | None] = []
    for row, (v, hold, pick, when, top) in enumerate(zip(
            value, paced.tolist(), content.tolist(), day.tolist(), column.tolist(), strict=True)):
        if v < settings.min_value:
            out.append(Verdict(HOLD, f"value {v:.4f} below threshold {settings.min_value:g}", None, v))
        elif not hold:
            out.append(None)
        elif pick:
            item = upcoming[row][top]
            out.append(Verdict(HOLD, f"better content later: {item.content_id} on day {when + 1} worth "
                               f"{worth[row, top]:.4f} against {v:.4f} now; {better[row]} later days worth "
                               f"more for {slots_left[row]} slot(s) left", item.moment(when), v))
        else:
            out.append(Verdict(HOLD, f"slots worth more later: {better[row]} later days this month worth "
                               f"more than {v:.4f} now for {slots_left[row]} slot(s) left (best "
                               f"{best_value[row]:.4f} in {best_at[row] + 1} day(s))", None, v))
    return out
