"""The closed-loop month's `--slots`: the scheduler's times of asking, parsed and refused by name, and
the month's first slot (explicit times, no month run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import month  # noqa: E402


def test_the_default_is_ten_and_half_past_seven() -> None:
    assert month.DEFAULT_SLOTS == ((10, 0), (19, 30))
    assert month.parse_slots("10:00,19:30") == month.DEFAULT_SLOTS


def test_slots_come_back_in_order_of_the_day_whatever_order_given() -> None:
    assert month.parse_slots("20:00, 09:00,12:30") == ((9, 0), (12, 30), (20, 0))
    assert month.parse_slots("10:00") == ((10, 0),)
    every_two_hours = ",".join(f"{hour:02d}:00" for hour in range(8, 21, 2))
    assert month.parse_slots(every_two_hours) == tuple((hour, 0) for hour in range(8, 21, 2))


@pytest.mark.parametrize("bad", ["9:00", "24:00", "10:60", "10h", "", "10:00;19:30", "ten"])
def test_a_value_that_is_not_a_time_of_day_is_refused_by_name(bad: str) -> None:
    text = f"10:00,{bad}" if "," not in bad and ";" not in bad else bad
    with pytest.raises(argparse.ArgumentTypeError, match="is not a time of day: give HH:MM"):
        month.parse_slots(text)


def test_the_refusal_names_the_bad_value() -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        month.parse_slots("09:00,25:30,20:00")
    assert str(refused.value).startswith("'25:30' is not a time of day")


def test_a_time_given_twice_is_refused() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="10:00 is given twice"):
        month.parse_slots("10:00,19:30,10:00")


def test_the_command_line_refuses_a_bad_slot_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    parser = month.command_line()
    assert parser.parse_args([]).slots == month.DEFAULT_SLOTS
    assert parser.parse_args(["--slots", "09:00,12:30,20:00"]).slots == ((9, 0), (12, 30), (20, 0))
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--slots", "08:00,10:00,12:5"])
    assert stopped.value.code == 2
    assert "'12:5' is not a time of day" in capsys.readouterr().err


def test_slots_text_reads_back() -> None:
    assert month.slots_text(((9, 0), (12, 30), (20, 0))) == "09:00, 12:30, 20:00"
