"""`recsys.decision.decide_many`: a batch decided at once gives each cardholder the verdict of deciding it
alone, held against the one-cardholder rule as it was written before the batch version (a slow reference
kept here) over generated cases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from recsys.caps.policy import Decision, Pacing, QuietHours
from recsys.decision import (
    HOLD,
    SEND,
    Upcoming,
    Verdict,
    decide,
    decide_many,
    later_hours,
    nan_as_lowest,
    slot_moments,
    slot_to_wait_for,
)

NAN = float("nan")


def reference(settings: Decision, value_now: float, later: Sequence[tuple[datetime, float]], now: datetime,
              slots_left: int | None, later_days: Sequence[float], upcoming: Sequence[Upcoming],
              slots: Sequence[datetime], follows_send_at: bool | None, hold_for_hour: bool) -> Verdict:
    """One cardholder's verdict, row by row (the module docstring's steps as first written)."""
    if follows_send_at is False and slots:
        return _reference_at_slots(settings, value_now, later, now, slots_left, later_days, upcoming, slots)
    value, send_at, why = value_now, now.astimezone(UTC), f"value {value_now:.4f} now"
    wait = better = None
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
    verdict = _reference_send_or_hold(settings, value, send_at, why, slots_left, later_days, upcoming)
    if wait is not None and verdict.decision == SEND:
        return Verdict(HOLD, why, wait[0].astimezone(UTC), value)
    if hold_for_hour and better is not None and verdict.decision == SEND:
        why = (f"better hour later: ask again at or after {better.strftime('%H:%M')} local, value "
               f"{value:.4f} then against {value_now:.4f} now")
        return Verdict(HOLD, why, send_at, value)
    return verdict


def _reference_at_slots(settings: Decision, value_now: float, later: Sequence[tuple[datetime, float]],
                        now: datetime, slots_left: int | None, later_days: Sequence[float],
                        upcoming: Sequence[Upcoming], slots: Sequence[datetime]) -> Verdict:
    worth = {moment.hour: value for moment, value in later}
    options = [(slot.astimezone(now.tzinfo), worth[slot.astimezone(now.tzinfo).hour], "later")
               for slot in slots if slot.astimezone(now.tzinfo).date() == now.date()
               and slot.astimezone(now.tzinfo).hour in worth]
    days = np.asarray(later_days, dtype=np.float64)
    tomorrow = next((slot.astimezone(now.tzinfo) for slot in slots
                     if slot.astimezone(now.tzinfo).date() > now.date()), None)
    if (tomorrow is not None and len(days) and np.isfinite(days[0])
            and (slots_left is None or slots_left <= len(days))):
        options.append((tomorrow, float(days[0]), "tomorrow"))
    bar = value_now  # no hour margin at a slot the scheduler is known to ask at
    wait = max(options, key=lambda option: option[1], default=None)
    if wait is None or wait[1] <= bar:
        why = f"value {value_now:.4f} now; no later slot of the scheduler worth more"
        return _reference_send_or_hold(settings, value_now, now.astimezone(UTC), why, slots_left, later_days,
                                       upcoming)
    moment, value, when = wait
    why = (f"better hour {when}: ask again at {moment.strftime('%H:%M')} local, value {value:.4f} then "
           f"against {value_now:.4f} now")
    verdict = _reference_send_or_hold(settings, value, moment.astimezone(UTC), why, slots_left, later_days,
                                      upcoming)
    return Verdict(HOLD, why, moment.astimezone(UTC), value) if verdict.decision == SEND else verdict


def _reference_send_or_hold(settings: Decision, value: float, send_at: datetime, why: str,
                            slots_left: int | None, later_days: Sequence[float],
                            upcoming: Sequence[Upcoming]) -> Verdict:
    if value < settings.min_value:
        return Verdict(HOLD, f"value {value:.4f} below threshold {settings.min_value:g}", None, value)
    days = np.asarray(later_days, dtype=np.float64)
    horizon = max([len(days), *(len(u.days) for u in upcoming)])
    if settings.pacing is None or slots_left is None or slots_left <= 0 or not horizon:
        return Verdict(SEND, why, send_at, value)
    bar = value + settings.pacing.margin * abs(value)
    own = np.full(horizon, -np.inf)
    own[:len(days)] = days
    others = np.full((len(upcoming), horizon), -np.inf)
    for row, item in enumerate(upcoming):
        others[row, :len(item.days)] = np.nan_to_num(np.asarray(item.days, np.float64), nan=-np.inf)
    best_day = np.maximum(own, others.max(axis=0)) if len(upcoming) else own
    better = int(np.count_nonzero(best_day > bar))
    if better < slots_left:
        return Verdict(SEND, why, send_at, value)
    beats = others > np.maximum(own, bar)[None, :]
    if beats.any():
        day = int(np.flatnonzero(beats.any(axis=0))[0])
        row = int(np.where(beats[:, day], others[:, day], -np.inf).argmax())
        item = upcoming[row]
        return Verdict(HOLD, f"better content later: {item.content_id} on day {day + 1} worth "
                       f"{others[row, day]:.4f} against {value:.4f} now; {better} later days worth more "
                       f"for {slots_left} slot(s) left", item.moment(day), value)
    best = int(best_day.argmax())
    return Verdict(HOLD, f"slots worth more later: {better} later days this month worth more than "
                   f"{value:.4f} now for {slots_left} slot(s) left (best {best_day[best]:.4f} in "
                   f"{best + 1} day(s))", None, value)


ZONES = [ZoneInfo(name) for name in ("Asia/Shanghai", "America/New_York", "Europe/London", "Asia/Kolkata",
                                     "Australia/Lord_Howe", "UTC")]
# clock changes (New York 8 March / 1 November, London 29 March / 25 October, Lord Howe's half hour on
# 5 April / 4 October), month ends, a leap-free February and an ordinary day
DAYS = [(2026, 3, 8), (2026, 11, 1), (2026, 3, 29), (2026, 10, 25), (2026, 4, 5), (2026, 10, 4),
        (2026, 1, 31), (2026, 2, 28), (2026, 4, 30), (2026, 12, 31), (2026, 9, 10)]
QUIET = [None, QuietHours(start="22:00", end="08:00"), QuietHours(start="01:00", end="05:30"),
         QuietHours(start="12:15", end="12:45")]
SETTINGS = [Decision(mute_weight=10, min_value=minimum, hour_margin=margin, pacing=pacing)
            for minimum in (0.0, 0.02) for margin in (0.0, 0.1)
            for pacing in (None, Pacing(margin=0.0), Pacing(margin=0.1))]
# few distinct values, so that hours, days and candidates tie with each other and with the bars
VALUES = np.array([-0.01, 0.0, 0.02, 0.03, 0.033, 0.05, 0.055, 0.08])


def generated_cases(rng: np.random.Generator, n: int) -> list[tuple]:
    cases = []
    for _ in range(n):
        zone = ZONES[rng.integers(len(ZONES))]
        year, month, day = DAYS[rng.integers(len(DAYS))]
        now = datetime(year, month, day, int(rng.integers(24)), int(rng.choice([0, 30, 59])), tzinfo=zone,
                       fold=int(rng.integers(2)))
        value_now = float(rng.choice(VALUES))
        quiet = QUIET[rng.integers(len(QUIET))]
        hours = later_hours(now, quiet)
        hour_values = rng.choice(VALUES, size=len(hours))
        hour_values[rng.random(len(hours)) < 0.2] = value_now  # ties with now (the bar without a margin)
        later = [(moment, float(v)) for moment, v in zip(hours, hour_values, strict=True)]
        days_left = int(rng.integers(0, 32))
        later_days = rng.choice(VALUES, size=int(rng.integers(0, days_left + 1)))
        later_days[rng.random(len(later_days)) < 0.1] = NAN  # a day without a usable hour
        upcoming = []
        for index in range(int(rng.choice([0, 0, 1, 1, 2]))):
            days = rng.choice(VALUES, size=int(rng.integers(0, days_left + 1)))
            days[:int(rng.integers(0, len(days) + 1))] = NAN  # not yet valid
            seconds = int(now.timestamp()) + 86_400 * np.arange(1, len(days) + 1) + 3_600 * rng.integers(
                0, 24, size=len(days))
            upcoming.append(Upcoming(f"offer-{index}", days, seconds.astype(np.int64)))
        slots = ()
        if rng.random() < 0.6:
            minutes = sorted(set(rng.choice([8 * 60, 10 * 60, 12 * 60 + 30, 19 * 60 + 30, 21 * 60],
                                            size=int(rng.integers(1, 4))).tolist()))
            slots = slot_moments(minutes, now, "Asia/Shanghai" if rng.random() < 0.5 else zone.key)
        slots_left = [None, 0, 1, 2, 3, 4][rng.integers(6)]
        follows = [None, True, False][rng.integers(3)]
        cases.append((value_now, later, now, slots_left, later_days, upcoming, slots, follows,
                      bool(rng.random() < 0.5)))
    return cases


def fields(verdict: Verdict) -> tuple:
    return verdict.decision, verdict.reason, verdict.send_at, verdict.value


def test_a_batch_decides_each_cardholder_as_the_row_by_row_rule() -> None:
    rng = np.random.default_rng(14)
    kinds: dict[str, int] = {}
    for settings in SETTINGS:
        cases = generated_cases(rng, 250)
        got = decide_many(settings, *map(list, zip(*cases, strict=True)))
        assert len(got) == len(cases)
        for case, verdict in zip(cases, got, strict=True):
            want = reference(settings, *case)
            assert fields(verdict) == fields(want), case
            assert fields(decide(settings, *case)) == fields(want)
            kind = verdict.decision + ": " + verdict.reason.split(":")[0].split(" now")[0].split(" below")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
    # every branch of the rule was reached, each many times
    for kind in ("send: better hour later", "hold: better hour later", "hold: better hour tomorrow",
                 "hold: better content later", "hold: slots worth more later"):
        assert kinds.get(kind, 0) >= 20, kinds
    assert sum(count for kind, count in kinds.items() if "value" in kind and kind.startswith(SEND)) >= 20
    assert sum(count for kind, count in kinds.items() if "value" in kind and kind.startswith(HOLD)) >= 20


def test_a_batch_of_rows_without_later_hours_days_or_candidates() -> None:
    now = datetime(2026, 9, 10, 23, 30, tzinfo=ZONES[0])
    settings = Decision(pacing=Pacing(margin=0.1))
    got = decide_many(settings, [0.05, -0.01], [[], []], [now, now], [0, None])
    want = [reference(settings, value, [], now, left, [], [], (), None, False)
            for value, left in ((0.05, 0), (-0.01, None))]
    assert [fields(v) for v in got] == [fields(v) for v in want]
    assert decide_many(settings, [], [], [], []) == []


def test_nan_as_lowest_keeps_the_padding_apart() -> None:
    # the batch pads with -inf after nan_as_lowest, which would turn a padded -inf into the lowest float
    assert nan_as_lowest(np.array([-np.inf]))[0] == -np.finfo(np.float64).max
