"""`recsys.decision`: send or hold from values, later hours, quiet hours and the month's slots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from recsys.caps.decisions import ReservationStatus, to_ms
from recsys.caps.policy import Decision, Pacing, QuietHours, default_policy
from recsys.caps.rules import CardholderRecord, PushRecord
from recsys.decision import (
    HOLD,
    RECENT_DAYS,
    SEND,
    decide,
    is_quiet,
    later_hours,
    marketing_sends,
    marketing_times,
    monthly_cap,
    monthly_slots_left,
    nan_as_lowest,
    projected_recents,
    slot_moments,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 9, 10, 10, 0, tzinfo=SHANGHAI)


def test_threshold_hour_and_pacing_holds_in_order() -> None:
    settings = Decision(mute_weight=10, min_value=0.0, hour_margin=0.1, pacing=Pacing(margin=0.1))
    evening = NOW.replace(hour=19)
    below = decide(settings, -0.01, [(evening, -0.005)], NOW, 4)
    assert below.decision == HOLD and "below threshold" in below.reason and below.send_at is None
    # a better hour later today: send then (a hold would wait for a slot the scheduler may never ask at)
    later = decide(settings, 0.10, [(evening, 0.12)], NOW, 4)
    assert later.decision == SEND and later.send_at == evening.astimezone(UTC) and later.value == 0.12
    assert "better hour later: send at 19:00" in later.reason
    rescued = decide(settings, -0.01, [(evening, 0.2)], NOW, 4)
    assert rescued.decision == SEND and rescued.send_at == evening.astimezone(UTC)
    within_margin = decide(settings, 0.10, [(evening, 0.105)], NOW, 4)
    assert within_margin.decision == SEND and within_margin.send_at == NOW.astimezone(UTC)


def test_pacing_holds_when_enough_later_days_are_worth_more_than_the_slots_left() -> None:
    settings = Decision(mute_weight=10, min_value=0.0, hour_margin=0.1, pacing=Pacing(margin=0.1))
    days = [0.05, 0.06, 0.02, 0.054]  # tomorrow first
    paced = decide(settings, 0.03, [], NOW, 3, days)  # three later days beat 0.03 x 1.1: hold
    assert paced.decision == HOLD and "slots worth more later: 3 later days" in paced.reason
    assert "best 0.0600 in 2 day(s)" in paced.reason and paced.send_at is None
    assert decide(settings, 0.03, [], NOW, 4, days).decision == SEND  # four slots, three better days
    assert decide(settings, 0.05, [], NOW, 2, days).decision == SEND  # 0.054 is within the margin
    assert decide(settings, 0.03, [], NOW, 0, days).decision == SEND  # no slot left: the caps decide
    assert decide(settings.model_copy(update={"pacing": None}), 0.03, [], NOW, 1, days).decision == SEND
    # the better hour today is what later days are compared with
    assert decide(settings, 0.03, [(NOW.replace(hour=19), 0.07)], NOW, 1, days).decision == SEND


def test_projected_recents_drop_pushes_as_they_leave_the_window() -> None:
    now = int(NOW.timestamp())
    times = np.array([now - 29 * 86400 - 60, now - 20 * 86400, now - 3600])
    assert projected_recents([times], np.array([now]), 11)[0].tolist() == [4, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2]
    assert projected_recents([np.zeros(0, np.int64)], np.array([now]), 2)[0].tolist() == [1, 1, 1]


def test_projected_recents_of_a_batch_match_each_cardholder_alone() -> None:
    """One pass for a batch, rows of different lengths (none included) padded: each row the same counts as
    asking for that cardholder alone, the window's edges exactly (30 days, to the second) included."""
    rng = np.random.default_rng(13)
    window = 30 * 86_400
    nows = np.array([int(NOW.timestamp()), int(datetime(2026, 2, 28, 23, 59, tzinfo=UTC).timestamp()),
                     int(datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo("America/New_York")).timestamp())] * 4)
    rows = []
    for index, now in enumerate(nows):
        times = now - rng.integers(0, window + 1, size=index % 5)
        edges = [now, now - window, now - window + 86_400, now - window + 1] if index % 3 == 0 else []
        rows.append(np.concatenate([times, np.asarray(edges, np.int64)]).astype(np.int64))
    got = projected_recents(rows, nows, 31)
    assert got.shape == (len(nows), 32) and got.dtype == np.int64
    for row, now, counts in zip(rows, nows, got, strict=True):
        at = now + 86_400 * np.arange(32)
        want = 1 + ((row[None, :] > at[:, None] - window) & (row[None, :] <= at[:, None])).sum(axis=1)
        assert counts.tolist() == want.tolist()
    assert projected_recents([], np.zeros(0, np.int64), 3).shape == (0, 4)
    assert projected_recents([np.zeros(0, np.int64)] * 2, nows[:2], 1).tolist() == [[1, 1], [1, 1]]


def test_later_hours_skip_quiet_hours_and_stop_at_midnight() -> None:
    quiet = QuietHours(start="22:00", end="08:00")
    hours = [moment.hour for moment in later_hours(NOW.replace(hour=19, minute=30), quiet)]
    assert hours == [20, 21]
    assert is_quiet(quiet, NOW.replace(hour=23)) and is_quiet(quiet, NOW.replace(hour=7, minute=59))
    assert not is_quiet(quiet, NOW.replace(hour=8)) and not is_quiet(None, NOW.replace(hour=3))


def test_later_hours_match_hour_steps_in_every_zone_and_quiet_window() -> None:
    """The hours are whole-hour steps of the local wall clock up to 23:00, each tested against the quiet
    window: the same datetimes (zone, fold) as adding `timedelta(hours=step)` and testing each one."""
    def reference(now_local: datetime, quiet: QuietHours | None) -> list[datetime]:
        start = now_local.replace(minute=0, second=0, microsecond=0)
        moments = [start + timedelta(hours=step) for step in range(1, 24)]
        return [m for m in moments if m.date() == now_local.date() and not is_quiet(quiet, m)]

    windows = [None, QuietHours(start="22:00", end="08:00"), QuietHours(start="01:00", end="05:30"),
               QuietHours(start="12:15", end="12:45")]
    zones = [SHANGHAI, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), UTC]
    # 2026-11-01 01:30 in New York happens twice (fold 0 and 1); 2026-03-08 02:30 does not exist
    days = [datetime(2026, 11, 1, 1, 30), datetime(2026, 11, 1, 1, 30, fold=1), datetime(2026, 3, 8, 1, 59)]
    for zone in zones:
        for day in days:
            for hour in range(24):
                now_local = day.replace(hour=hour, tzinfo=zone)
                for quiet in windows:
                    got = later_hours(now_local, quiet)
                    want = reference(now_local, quiet)
                    assert got == want and [m.fold for m in got] == [m.fold for m in want]
                    assert all(m.tzinfo is now_local.tzinfo for m in got)
    assert later_hours(NOW.replace(hour=23, minute=59), None) == []


def push(push_id: str, when: datetime, status: ReservationStatus, transactional: bool = False,
         expires: datetime | None = None) -> PushRecord:
    return PushRecord(push_id, status, to_ms(when), to_ms(expires or when), "c" + push_id, "article", (),
                      transactional, None)


def test_recent_and_monthly_counts_from_the_caps_record() -> None:
    record = CardholderRecord(pushes={p.push_id: p for p in (
        push("1", datetime(2026, 8, 20, tzinfo=UTC), ReservationStatus.CONFIRMED),
        push("2", datetime(2026, 9, 2, tzinfo=UTC), ReservationStatus.CONFIRMED),
        push("3", datetime(2026, 9, 5, tzinfo=UTC), ReservationStatus.CONFIRMED, transactional=True),
        push("4", datetime(2026, 9, 6, tzinfo=UTC), ReservationStatus.RELEASED),
        push("5", datetime(2026, 8, 1, tzinfo=UTC), ReservationStatus.CONFIRMED),  # 40 days ago
        push("6", datetime(2026, 9, 8, tzinfo=UTC), ReservationStatus.RESERVED,
             expires=NOW + timedelta(hours=1)),
        push("7", datetime(2026, 9, 8, tzinfo=UTC), ReservationStatus.RESERVED,
             expires=datetime(2026, 9, 8, 0, 1, tzinfo=UTC)),  # expired
        push("8", NOW + timedelta(hours=1), ReservationStatus.CONFIRMED),  # after now
    )})
    now_ms = to_ms(NOW)
    month_start = to_ms(datetime(2026, 9, 1, tzinfo=SHANGHAI))
    sends = marketing_sends(default_policy(), record, now_ms)
    # 40 days back is past the caps' history horizon: it counts toward no window
    assert sorted(sends) == [to_ms(datetime(2026, month, day, tzinfo=UTC))
                             for month, day in ((8, 20), (9, 2), (9, 8))]
    assert len(marketing_times(sends, now_ms - RECENT_DAYS * 86_400_000 - 1)) == 3
    assert monthly_slots_left(monthly_cap(default_policy()), sends, month_start) == 2
    no_monthly = default_policy().model_copy(update={"limits": ()})
    assert monthly_slots_left(monthly_cap(no_monthly), sends, month_start) is None


def test_a_better_hour_after_a_scheduler_slot_holds_for_that_slot_and_reserves_nothing() -> None:
    settings = Decision(mute_weight=10, min_value=0.0, hour_margin=0.1, pacing=None)
    hours = [(NOW.replace(hour=hour), value) for hour, value in ((13, 0.09), (19, 0.11), (20, 0.13))]
    slots = slot_moments([10 * 60, 19 * 60 + 30], NOW, "Asia/Shanghai")
    assert slots == (NOW.replace(hour=19, minute=30), NOW.replace(day=11))
    # 20:00 is best; 19:30 is the last slot before it and itself worth more than now: ask again then
    held = decide(settings, 0.08, hours, NOW, 4, slots=slots)
    assert held.decision == HOLD and held.send_at == NOW.replace(hour=19, minute=30).astimezone(UTC)
    assert held.reason.startswith("better hour later: ask again at 19:30 local")
    # no slot known (a new deployment, an irregular scheduler): send, delivered at the better hour
    unknown = decide(settings, 0.08, hours, NOW, 4)
    assert unknown.decision == SEND and unknown.send_at == NOW.replace(hour=20).astimezone(UTC)
    # the slot's own hour not worth more than now by the margin: send as without slots
    flat = [(NOW.replace(hour=19), 0.085), (NOW.replace(hour=20), 0.13)]
    assert decide(settings, 0.08, flat, NOW, 4, slots=slots).decision == SEND
    # the better hour comes before the next slot: waiting would miss it
    early = [(NOW.replace(hour=13), 0.13), (NOW.replace(hour=19), 0.11)]
    sent = decide(settings, 0.08, early, NOW, 4, slots=slots)
    assert sent.decision == SEND and sent.send_at == NOW.replace(hour=13).astimezone(UTC)
    # at the last slot of the day there is none left to wait for: send at the better hour
    evening = NOW.replace(hour=19, minute=30)
    last = decide(settings, 0.08, [(NOW.replace(hour=20), 0.13)], evening, 4,
                  slots=slot_moments([600, 1170], evening, "Asia/Shanghai"))
    assert last.decision == SEND and last.send_at == NOW.replace(hour=20).astimezone(UTC)


def test_a_hold_below_the_threshold_or_for_pacing_wins_over_waiting_for_a_slot() -> None:
    settings = Decision(mute_weight=10, min_value=0.5, hour_margin=0.1, pacing=None)
    hours = [(NOW.replace(hour=19), 0.11), (NOW.replace(hour=20), 0.13)]
    slots = slot_moments([600, 1170], NOW, "Asia/Shanghai")
    low = decide(settings, 0.08, hours, NOW, 4, slots=slots)
    assert low.decision == HOLD and "below threshold" in low.reason and low.send_at is None
    paced = decide(Decision(pacing=Pacing(margin=0.1)), 0.08, hours, NOW, 1, [0.5], slots=slots)
    assert paced.decision == HOLD and paced.reason.startswith("slots worth more later")


def test_with_neither_habit_nor_slots_known_a_better_hour_later_is_a_hold_until_it() -> None:
    settings = Decision(mute_weight=10, min_value=0.0, hour_margin=0.1, pacing=None)
    hours = [(NOW.replace(hour=13), 0.09), (NOW.replace(hour=20), 0.13)]
    held = decide(settings, 0.08, hours, NOW, 4, hold_for_hour=True)
    assert held.decision == HOLD and held.send_at == NOW.replace(hour=20).astimezone(UTC)
    assert held.value == 0.13
    assert held.reason.startswith("better hour later: ask again at or after 20:00 local")
    # no later hour worth more than now by the margin: send now, as for any scheduler
    flat = decide(settings, 0.08, [(NOW.replace(hour=20), 0.085)], NOW, 4, hold_for_hour=True)
    assert flat.decision == SEND and flat.send_at == NOW.astimezone(UTC)
    # the threshold's and pacing's holds keep their reasons
    low = decide(settings.model_copy(update={"min_value": 0.5}), 0.08, hours, NOW, 4, hold_for_hour=True)
    assert low.decision == HOLD and "below threshold" in low.reason and low.send_at is None
    paced = decide(Decision(pacing=Pacing(margin=0.1)), 0.08, hours, NOW, 1, [0.5], hold_for_hour=True)
    assert paced.decision == HOLD and paced.reason.startswith("slots worth more later")
    # without the rule (a habit or slots known) the answer is `send` at the better hour
    assert decide(settings, 0.08, hours, NOW, 4).decision == SEND


def test_slots_are_read_in_the_schedulers_zone_for_a_cardholder_elsewhere() -> None:
    london = ZoneInfo("Europe/London")
    now = datetime(2026, 9, 10, 9, 0, tzinfo=london)  # 16:00 in Shanghai
    slots = slot_moments([1170], now, "Asia/Shanghai")  # 19:30 Shanghai is 12:30 in London
    assert [s.astimezone(london).strftime("%H:%M") for s in slots] == ["12:30"]
    settings = Decision(pacing=None)
    hours = [(now.replace(hour=12), 0.2), (now.replace(hour=15), 0.3)]
    held = decide(settings, 0.1, hours, now, 4, slots=slots)
    assert held.decision == HOLD and "ask again at 12:30 local" in held.reason


def test_a_scheduler_that_ignores_send_at_gets_now_or_one_of_its_slots() -> None:
    settings = Decision(mute_weight=10, min_value=0.0, hour_margin=0.1, pacing=None)
    slots = slot_moments([10 * 60, 19 * 60 + 30], NOW, "Asia/Shanghai")
    # 13:00 is best but the scheduler never asks then; 19:30 is the best time it can get
    hours = [(NOW.replace(hour=hour), value) for hour, value in ((13, 0.2), (19, 0.11), (21, 0.15))]
    held = decide(settings, 0.08, hours, NOW, 4, slots=slots, follows_send_at=False)
    assert held.decision == HOLD and held.send_at == NOW.replace(hour=19, minute=30).astimezone(UTC)
    assert held.reason.startswith("better hour later: ask again at 19:30 local, value 0.1100")
    # the same hours for a scheduler that follows send_at (or is not known): send, at 13:00
    for follows in (True, None):
        sent = decide(settings, 0.08, hours, NOW, 4, slots=slots, follows_send_at=follows)
        assert sent.decision == SEND and sent.send_at == NOW.replace(hour=13).astimezone(UTC)
    # a slot of its worth more than now, if less than the hour margin more: it asks again then, so hold
    between = [(NOW.replace(hour=13), 0.2), (NOW.replace(hour=19), 0.085)]
    held = decide(settings, 0.08, between, NOW, 4, slots=slots, follows_send_at=False)
    assert held.decision == HOLD and held.send_at == NOW.replace(hour=19, minute=30).astimezone(UTC)
    # no slot of its worth more than now: send now, whatever a between-slot hour is worth
    between = [(NOW.replace(hour=13), 0.2), (NOW.replace(hour=19), 0.08)]
    now_sent = decide(settings, 0.08, between, NOW, 4, slots=slots, follows_send_at=False)
    assert now_sent.decision == SEND and now_sent.send_at == NOW.astimezone(UTC)
    assert "no later slot of the scheduler worth more" in now_sent.reason
    # slots not known: answered as for a scheduler not known to ignore send_at
    assert decide(settings, 0.08, between, NOW, 4, follows_send_at=False).send_at == \
        NOW.replace(hour=13).astimezone(UTC)


def test_at_its_last_slot_a_scheduler_that_ignores_send_at_may_be_asked_again_tomorrow() -> None:
    settings = Decision(mute_weight=10, min_value=0.0, hour_margin=0.1, pacing=None)
    evening = NOW.replace(hour=19, minute=30)
    slots = slot_moments([10 * 60, 19 * 60 + 30], evening, "Asia/Shanghai")
    tomorrow = NOW.replace(day=11).astimezone(UTC)
    hours = [(NOW.replace(hour=21), 0.3)]  # after its last slot: out of reach
    # tomorrow's best slot hour worth more than now: ask again at tomorrow's first slot
    days = [0.09, 0.2, 0.1, 0.1]
    held = decide(settings, 0.05, hours, evening, 4, days, slots=slots, follows_send_at=False)
    assert held.decision == HOLD and held.send_at == tomorrow
    assert held.reason.startswith("better hour tomorrow: ask again at 10:00 local")
    # worth more tomorrow at all, if by less than the hour margin: still ask again tomorrow
    assert decide(settings, 0.085, hours, evening, 4, days, slots=slots,
                  follows_send_at=False).send_at == tomorrow
    # not worth more, or the content no longer valid tomorrow (no later day): send now
    assert decide(settings, 0.09, hours, evening, 4, days, slots=slots,
                  follows_send_at=False).send_at == evening.astimezone(UTC)
    assert decide(settings, 0.05, hours, evening, 4, [], slots=slots, follows_send_at=False).decision == SEND
    # as many slots left as later days: a day given up would be a slot lost, so send now
    assert decide(settings, 0.05, hours, evening, 2, [0.09, 0.2], slots=slots,
                  follows_send_at=False).decision == HOLD
    assert decide(settings, 0.05, hours, evening, 3, [0.09, 0.2], slots=slots,
                  follows_send_at=False).decision == SEND
    # the threshold and pacing still hold first, with the value of the slot waited for
    low = decide(Decision(min_value=0.5, pacing=None), 0.05, hours, evening, 4, days, slots=slots,
                 follows_send_at=False)
    assert low.decision == HOLD and "below threshold" in low.reason and low.send_at is None
    paced = decide(Decision(pacing=Pacing(margin=0.1)), 0.05, hours, evening, 1, [0.09, 0.2], slots=slots,
                   follows_send_at=False)
    assert paced.decision == HOLD and paced.reason.startswith("slots worth more later")


def test_nan_as_lowest_is_nan_to_num_with_nan_as_minus_infinity() -> None:
    values = np.array([0.25, np.nan, np.inf, -np.inf, -0.0, 1e308, -5e-324, np.nan])
    got, want = nan_as_lowest(values), np.nan_to_num(values, nan=-np.inf)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    assert nan_as_lowest(np.zeros(0)).shape == (0,)
