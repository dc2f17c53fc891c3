"""Where a month loses value (`benchmarks/month_gaps.py`): schedules scored by a small generated world's
truth as the month's draws score them, and edits that keep the caps' rules."""

from __future__ import annotations

import sys
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import month  # noqa: E402
import month_gaps  # noqa: E402

DAYS = 30


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[month.Outcomes, month_gaps.MonthTruth]:
    from worlds import WorldConfig, generate_world
    from worlds.scenario import Scenario

    summary = generate_world(WorldConfig(users=300, items=40, days=60, seed=5,
                                         scenario=Scenario(hour_preference=1.0)),
                             tmp_path_factory.mktemp("gaps-world") / "data")
    outcomes = month.Outcomes(summary.truth, summary.out, seed=5)
    return outcomes, month_gaps.MonthTruth(summary.out, outcomes, DAYS, month.MUTE_PRICE)


def reachable_rows(outcomes: month.Outcomes, count: int) -> list[int]:
    return np.flatnonzero(outcomes.reachable & (outcomes.zones == "Asia/Shanghai"))[:count].tolist()


def at(outcomes: month.Outcomes, day: int, hour: int, minute: int = 0) -> datetime:
    return (outcomes.month + timedelta(days=day)).replace(hour=hour, minute=minute)


def best_items(truth: month_gaps.MonthTruth, row: int, count: int) -> list[str]:
    """`count` items the cardholder may get all month (open to the tier, unseen, valid throughout)."""
    start, end = float(truth.grid[0]), float(truth.grid[-1])
    valid = ~(truth.valid_from > start) & ~(truth.valid_to < end)
    return truth.item_ids[np.flatnonzero(truth.allowed[row] & valid)[:count]].tolist()


def test_a_schedule_with_its_items_is_worth_what_the_month_draws_score(world) -> None:
    outcomes, truth = world
    for row in reachable_rows(outcomes, 5):
        sent = [at(outcomes, 0, 10), at(outcomes, 6, 19, 30), at(outcomes, 13, 14, 17), at(outcomes, 25, 10)]
        items = best_items(truth, row, 4)
        sent_log: dict = defaultdict(list)
        expected = []
        for when, item in zip(sent, items, strict=True):
            p_open, p_mute = outcomes.probabilities(np.array([row]), [item], [when], sent_log)
            expected.append(float(p_open[0] - month.MUTE_PRICE * p_mute[0]))
            sent_log[row].append(when)
        seconds = np.array([int(t.timestamp()) for t in sent])
        assert truth.value(row, seconds, items) == pytest.approx(expected, rel=1e-6)


def test_the_best_item_is_worth_at_least_any_eligible_one_and_never_repeats(world) -> None:
    outcomes, truth = world
    for row in reachable_rows(outcomes, 5):
        seconds = np.array([int(at(outcomes, day, 10).timestamp()) for day in (0, 1, 2)])
        best = truth.value(row, seconds)
        for item in best_items(truth, row, 6):
            assert best[0] >= truth.value(row, seconds[:1], [item])[0] - 1e-12
        # with one item left eligible, the second and third push have nothing left
        only = truth.allowed[row].copy()
        truth.allowed[row] = False
        truth.allowed[row, np.flatnonzero(only)[0]] = True
        try:
            values = truth.value(row, seconds)
        finally:
            truth.allowed[row] = only
        assert np.isfinite(values[0]) and np.isneginf(values[1:]).all()


def assert_within_caps(outcomes: month.Outcomes, row: int, seconds: np.ndarray) -> None:
    local = sorted(datetime.fromtimestamp(int(t), ZoneInfo(outcomes.zones[row])) for t in seconds)
    assert len(local) <= 4
    assert len({t.date() for t in local}) == len(local)
    assert all(8 <= t.hour < 22 for t in local)
    assert all(b - a >= timedelta(hours=12) for a, b in zip(local, local[1:], strict=False))


@pytest.mark.parametrize("reach", ["slots", "any"])
def test_edits_keep_the_caps_rules_and_never_lose_value(world, reach: str) -> None:
    outcomes, truth = world
    for row in reachable_rows(outcomes, 8):
        editor = month_gaps.RowEditor(truth, row, reach)
        sent = np.array([int(at(outcomes, day, 10).timestamp()) for day in (0, 1, 2)])
        moved = editor.moved_to_best_hours(sent)
        assert_within_caps(outcomes, row, moved)
        assert (editor.day_of(moved) == editor.day_of(sent)).all()
        user = outcomes.truth_users[row]
        hours = truth.local(row, moved)[0].astype(float)
        before = truth.local(row, sent)[0].astype(float)
        assert (outcomes.response.hour_effect(user, hours)
                >= outcomes.response.hour_effect(user, before) - 1e-12).all()
        if reach == "slots":
            shanghai = [datetime.fromtimestamp(int(t), month.SHANGHAI) for t in moved]
            assert all((t.hour, t.minute) in outcomes.slots for t in shanghai)
        kept = editor.without_negative(moved)
        assert (truth.value(row, kept) >= 0).all()
        full = editor.filled(kept)
        paced = editor.paced(full)
        for schedule in (kept, full, paced):
            assert_within_caps(outcomes, row, schedule)
        assert editor.worth(kept) >= editor.worth(moved) - 1e-9
        assert editor.worth(full) >= editor.worth(kept) - 1e-9
        assert editor.worth(paced) >= editor.worth(full) - 1e-9


def test_a_bad_day_is_left_for_a_better_one(world) -> None:
    """Pacing: two pushes on the month's first days of a cardholder with October pushes in the truth's
    window move later once those pushes have left it, when that is worth more."""
    outcomes, truth = world
    rows = [r for r in reachable_rows(outcomes, 300) if len(outcomes.history.get(r, [])) >= 4]
    assert rows, "the world has cardholders pushed often in its last 30 days"
    moved_later = 0
    for row in rows[:10]:
        editor = month_gaps.RowEditor(truth, row, "slots")
        early = np.array([int(at(outcomes, day, 10).timestamp()) for day in (0, 1)])
        paced = editor.paced(early)
        assert editor.worth(paced) >= editor.worth(early) - 1e-9
        moved_later += int(paced.max() > early.max())
    assert moved_later > 0


def test_decompose_adds_up_and_report_prints_every_step(world) -> None:
    outcomes, truth = world
    rows = reachable_rows(outcomes, 20)
    times, contents, seconds = [], [], []
    for row in rows:
        for day, item in zip((0, 3), best_items(truth, row, 2), strict=False):
            times.append(row)
            contents.append(item)
            seconds.append(int(at(outcomes, day, 10).timestamp()))
    sends = month_gaps.Sends(np.array(times), np.array(seconds), contents, frozenset(rows[:1]))
    totals = month_gaps.decompose(truth, sends, "slots")
    steps = [totals[part] for part in month_gaps.PARTS[1:]]
    assert all(b >= a - 1e-9 for a, b in zip(steps, steps[1:], strict=False))
    assert totals["(b) at any half hour"] >= totals[month_gaps.PARTS[2]] - 1e-9
    lines = month_gaps.report("engine", totals, gap=100.0)
    assert len(lines) == 3 + len(month_gaps.PARTS) + 5
    added = sum(totals[b] - totals[a] for a, b in zip(month_gaps.PARTS, month_gaps.PARTS[1:], strict=False))
    assert added == pytest.approx(totals[month_gaps.PARTS[-1]] - totals[month_gaps.PARTS[0]])


def test_an_unknown_reach_is_refused_by_name(world) -> None:
    _, truth = world
    with pytest.raises(ValueError, match="reach must be one of slots, any, got 'noon'"):
        month_gaps.RowEditor(truth, 0, "noon")


def test_slot_choices_find_the_truths_better_slot_and_whom_the_learned_hours_follow(world) -> None:
    outcomes, truth = world
    rows = reachable_rows(outcomes, 12)
    users = outcomes.truth_users
    hours = np.arange(24, dtype=float)
    # a learned preference equal to the truth's hour term, and its opposite
    right = outcomes.response.hour_effect(users[:, None], hours[None, :])
    senders, contents, seconds = [], [], []
    for row in rows:
        for day, (item, hour) in enumerate(zip(best_items(truth, row, 2), (10, 19), strict=False)):
            senders.append(row)
            contents.append(item)
            seconds.append(int(at(outcomes, day, hour, 30 if hour == 19 else 0).timestamp()))
    sends = month_gaps.Sends(np.array(senders), np.array(seconds), contents, frozenset())
    choices = month_gaps.slot_choices(truth, sends, right)
    assert len(choices) == len(senders) and choices["model_right"].all()
    assert (choices["loss"] >= -1e-12).all()
    assert ((choices["loss"] > 1e-12) == ~choices["sent_right"]).all()
    assert (choices["sent_model"] == choices["sent_right"]).all()
    better_at_ten = right[users[choices["row"]], 10] > right[users[choices["row"]], 19]
    assert (choices["sent_right"] == (better_at_ten == (choices["day"] == 0))).all()
    wrong = month_gaps.slot_choices(truth, sends, -right)
    assert not wrong["model_right"].any()
    assert wrong["loss"].to_numpy() == pytest.approx(choices["loss"].to_numpy())
    evidence = pd.Series("some", index=pd.RangeIndex(len(outcomes.user_ids)))
    lines = month_gaps.slot_report(wrong, {"opens": evidence}, gap=100.0)
    # header, rule, the one evidence label, days 1-2 and all
    assert len(lines) == 5 and lines[2].startswith("| opens: some | 24 |")
    assert f"| {wrong['loss'].sum():,.1f} ({wrong['loss'].sum():.1f}) |" in lines[-1]


def test_the_peak_posterior_follows_the_hours_opened_and_is_flat_without_pushes() -> None:
    hours = np.array([20.0] * 6 + [9.0] * 6 + [8.0] * 6 + [21.0] * 6)
    opened = np.array([True] * 6 + [False] * 6 + [True] * 6 + [False] * 6)
    rows = np.array([0] * 12 + [1] * 12)
    post = month_gaps.peak_posterior(rows, hours, opened, np.full(24, -2.0), 1.0, n_rows=3)
    assert post.sum(axis=1) == pytest.approx(np.ones(3))
    peak = month_gaps.PEAKS[post.argmax(axis=1)]
    assert 18 <= peak[0] <= 23 and (peak[1] <= 10 or peak[1] >= 23)
    assert post[2] == pytest.approx(np.full(len(month_gaps.PEAKS), 1 / len(month_gaps.PEAKS)))


def test_the_slot_ceiling_knows_the_better_slot_more_often_with_more_opens(world) -> None:
    outcomes, truth = world
    right = month_gaps.slot_ceiling(truth, (10, 19))
    assert right.shape == (len(outcomes.user_ids),) and right.dtype == bool
    opens = month.opened_pushes(truth.world, outcomes.user_ids)
    assert right[opens >= 2].mean() > max(right[opens == 0].mean(), 0.6)
