"""The closed-loop month's scheduler habits: when a `send` goes out for a scheduler that follows
`send_at`, ignores it, or switches on a given day of the month (explicit local times, no month run), and
which habit each engine of a run (its sweeps included) has."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import month  # noqa: E402

SHANGHAI = ZoneInfo("Asia/Shanghai")


def asked(day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


LATER = datetime(2026, 11, 10, 13, 0, tzinfo=UTC)  # 21:00 Shanghai on the 10th


def test_a_follower_sends_at_send_at_and_an_ignorer_at_once() -> None:
    assert month.SendAtHabit().delivery(asked(10), LATER) == LATER
    assert month.SendAtHabit(follows=False).delivery(asked(10), LATER) == asked(10)


def test_without_send_at_or_with_one_already_past_the_push_goes_at_once() -> None:
    habit = month.SendAtHabit()
    assert habit.delivery(asked(10), None) == asked(10)
    assert habit.delivery(asked(10, 22), LATER) == asked(10, 22)


def test_ignoring_until_a_day_follows_from_that_day_on() -> None:
    habit = month.SendAtHabit(follows=False, switch_day=11)
    assert habit.delivery(asked(10, 19, 30), LATER) == asked(10, 19, 30)
    on_the_day = datetime(2026, 11, 11, 13, 0, tzinfo=UTC)
    assert habit.delivery(asked(11), on_the_day) == on_the_day
    assert [habit.follows_on(asked(day)) for day in (1, 10, 11, 12, 30)] == [False, False, True, True, True]


def test_following_until_a_day_ignores_from_that_day_on() -> None:
    habit = month.SendAtHabit(follows=True, switch_day=11)
    assert habit.delivery(asked(10, 19, 30), LATER) == LATER
    assert habit.delivery(asked(11), datetime(2026, 11, 11, 13, 0, tzinfo=UTC)) == asked(11)
    assert [habit.follows_on(asked(day)) for day in (1, 10, 11, 12, 30)] == [True, True, False, False, False]


def test_the_day_is_the_local_day_asked() -> None:
    # 07:00 Shanghai on the 11th is still the 10th in UTC
    habit = month.SendAtHabit(follows=False, switch_day=11)
    assert habit.follows_on(asked(11, 7))
    assert not habit.follows_on(asked(10, 23, 59))


def test_names_say_the_habit_and_the_day() -> None:
    assert month.SendAtHabit(follows=False, switch_day=11).name() == (
        "value-aware, scheduler ignores send_at until day 11")
    assert month.SendAtHabit(follows=True, switch_day=11).name() == (
        "value-aware, scheduler follows send_at until day 11")


def rows(*options: str) -> list[tuple[str, bool, dict, month.SendAtHabit]]:
    return month.engine_rows(month.command_line().parse_args(list(options)))


def test_without_the_ignoring_sweep_the_engines_are_as_before() -> None:
    follows, ignores = month.SendAtHabit(), month.SendAtHabit(follows=False)
    assert rows() == [("value-aware engine", True, {}, follows), ("send-all engine", False, {}, follows)]
    assert rows("--ignore-send-at", "--sweep", '[{"hour_margin": 0}]')[2:] == [
        (month.IGNORING, True, {}, ignores),
        ('value-aware, {"hour_margin":0}', True, {"hour_margin": 0}, follows)]


def test_the_ignoring_sweep_adds_engines_whose_scheduler_ignores_send_at() -> None:
    engines = rows("--decision", '{"hour_margin": 0}', "--ignore-send-at",
                   "--sweep", '[{"pacing": {"margin": 0}}]',
                   "--sweep-ignoring", '[{"pacing": {"margin": 0.1}}, {"pacing": {"margin": 0.4}}]')
    assert [(name, habit.follows) for name, _, _, habit in engines] == [
        ("value-aware engine", True), ("send-all engine", True), (month.IGNORING, False),
        ('value-aware, {"pacing":{"margin":0}}', True),
        ('value-aware, scheduler ignores send_at, {"pacing":{"margin":0.1}}', False),
        ('value-aware, scheduler ignores send_at, {"pacing":{"margin":0.4}}', False)]
    assert engines[-1][1:3] == (True, {"hour_margin": 0, "pacing": {"margin": 0.4}})
    assert all(habit.switch_day is None for *_, habit in engines)
