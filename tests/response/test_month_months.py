"""The closed-loop benchmark over more than one calendar month (`month.py --months N`): the days replayed,
caps violations counted per local calendar month (a new month's count starts again), the server's clock,
the world's content schedule, and `--months 1` left as it was."""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import month  # noqa: E402

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny world, and the same with its content schedule carried over two replayed months."""
    from worlds import WorldConfig, generate_world
    from worlds.generator import DEFAULT_END
    from worlds.scenario import Scenario

    root = tmp_path_factory.mktemp("months-worlds")
    config = WorldConfig(users=60, items=60, days=60, seed=3, scenario=Scenario(hour_preference=1.0))
    one = generate_world(config, root / "one").out
    two = generate_world(replace(config, content_horizon_days=month.content_horizon(DEFAULT_END, 2)),
                         root / "two").out
    return one, two


def outcomes_of(world: Path, months: int) -> month.Outcomes:
    return month.Outcomes(world.with_name(world.name + ".truth.npz"), world, seed=3, months=months)


def former_violations(sent_log: dict, zones: np.ndarray) -> int:
    """The count `month.violations` gave before it named the pushes (kept here to compare)."""
    count = 0
    for row, times in sent_log.items():
        local = sorted(t.astimezone(ZoneInfo(zones[row])) for t in times)
        days, months = defaultdict(int), defaultdict(int)
        for t in local:
            days[t.date()] += 1
            months[(t.year, t.month)] += 1
            count += int(t.hour >= 22 or t.hour < 8)
        count += sum(n - 1 for n in days.values() if n > 1) + sum(n - 4 for n in months.values() if n > 4)
        count += sum(1 for a, b in zip(local, local[1:], strict=False) if b - a < timedelta(hours=12))
    return count


def test_one_month_replays_the_days_it_did(worlds) -> None:
    outcomes = outcomes_of(worlds[0], 1)
    assert outcomes.month == datetime(2026, 11, 1, tzinfo=SHANGHAI)
    assert outcomes.replay() == [(0, day) for day in range(30)]
    assert outcomes.replay(7) == [(0, day) for day in range(7)]
    assert month.command_line().parse_args([]).months == 1
    assert month.command_line().parse_args([]).days is None
    # the server's clock and window as before: the 1st of the next month at 20:00, 40 days back
    assert month.month_after(outcomes.month, 1).replace(hour=20) == datetime(2026, 12, 1, 20, tzinfo=SHANGHAI)
    # the world of one month is generated as before: no content beyond the catalogue's own schedule
    assert month.content_horizon(pd.Timestamp("2026-10-31T23:59:59Z"), 1) == 30


def test_two_months_replay_each_calendar_month_with_the_draws_of_its_dates(worlds) -> None:
    outcomes = outcomes_of(worlds[1], 2)
    schedule = outcomes.replay()
    assert len(schedule) == 30 + 31
    assert schedule[29] == (0, 29) and schedule[30] == (1, 30) and schedule[-1] == (1, 60)
    assert outcomes.at(30, 10) == datetime(2026, 12, 1, 10, tzinfo=SHANGHAI)
    assert outcomes.replay(3) == [(0, 0), (0, 1), (0, 2), (1, 30), (1, 31), (1, 32)]
    # a date's uniforms do not depend on how many days were replayed before it
    assert np.array_equal(outcomes.draws(30, 0), outcomes_of(worlds[1], 1).draws(30, 0))
    assert month.month_after(outcomes.month, 2) == datetime(2027, 1, 1, tzinfo=SHANGHAI)
    assert outcomes.month_name(1) == "December 2026"
    late = [datetime(2026, 11, 30, 23, 30, tzinfo=SHANGHAI), datetime(2026, 12, 1, 0, 30, tzinfo=SHANGHAI),
            datetime(2027, 1, 1, 10, tzinfo=SHANGHAI)]
    assert outcomes.month_of(late).tolist() == [0, 1, 1]  # after the last month: counted in it


def test_caps_are_counted_per_local_calendar_month_and_start_again_on_the_first(worlds) -> None:
    outcomes = outcomes_of(worlds[1], 2)
    row = int(np.flatnonzero(outcomes.zones == "Asia/Shanghai")[0])
    # four pushes on November's last four days and four on December's first four: eight in eight days,
    # four a month
    pushes = [outcomes.at(day, 10) for day in (26, 27, 28, 29, 30, 31, 32, 33)]
    sent_log = {row: pushes}
    assert month.violations(sent_log, outcomes.zones) == 0
    assert month.violations_by_month(sent_log, outcomes) == [0, 0]
    # a fifth in November breaks the monthly cap there, a fifth in December there
    for extra, expected in ((outcomes.at(20, 10), [1, 0]), (outcomes.at(40, 10), [0, 1])):
        assert month.violations_by_month({row: [*pushes, extra]}, outcomes) == expected
    # a local month is the cardholder's: 10:00 Shanghai on December 1st is 21:00 on November 30th in
    # New York, a fifth push of that November (counted in the month replayed when it went, December)
    outcomes.zones = outcomes.zones.copy()
    outcomes.zones[row] = "America/New_York"
    york = [outcomes.at(day, 10) for day in (25, 26, 27, 28, 30)]
    assert month.violating({row: york}, outcomes.zones) == [datetime(2026, 11, 30, 21,
                                                                     tzinfo=ZoneInfo("America/New_York"))]
    assert month.violations_by_month({row: york}, outcomes) == [0, 1]


def test_the_count_is_the_former_one_on_any_schedule(worlds) -> None:
    outcomes = outcomes_of(worlds[1], 2)
    rng = np.random.default_rng(5)
    rows = np.flatnonzero(outcomes.reachable)[:20].tolist()
    for _ in range(20):
        sent_log = {row: [outcomes.at(int(day), int(hour), int(minute))
                          for day, hour, minute in zip(rng.integers(0, 61, 9), rng.integers(0, 24, 9),
                                                       rng.choice([0, 30], 9), strict=True)]
                    for row in rows}
        count = month.violations(sent_log, outcomes.zones)
        assert count == former_violations(sent_log, outcomes.zones)
        assert sum(month.violations_by_month(sent_log, outcomes)) == count


def test_the_world_of_two_months_has_the_same_history_and_a_schedule_over_both(worlds) -> None:
    one, two = worlds
    for table in ("cardholders", "transactions", "article_reads", "push_log", "menu_clicks"):
        assert (one / f"{table}.parquet").read_bytes() == (two / f"{table}.parquet").read_bytes(), table
    first, both = pd.read_parquet(one / "content.parquet"), pd.read_parquet(two / "content.parquet")
    pd.testing.assert_frame_equal(both.iloc[:len(first)].reset_index(drop=True), first)
    added = both.iloc[len(first):]
    assert len(added) and set(added["kind"]) <= {"promotion", "activity"}
    starts = pd.to_datetime(added["valid_from"], utc=True)
    assert starts.min() > pd.to_datetime(first["valid_from"], utc=True).max()
    assert starts.max() <= pd.Timestamp("2026-12-31T23:59:59Z")
    assert added["content_id"].is_unique and not set(added["content_id"]) & set(first["content_id"])
    # the truth knows the new items; the old ones' truth is unchanged
    from worlds.truth import WorldTruth

    truth_one = WorldTruth.load(one.with_name("one.truth.npz"))
    truth_two = WorldTruth.load(two.with_name("two.truth.npz"))
    users = truth_one.user_index(truth_one.user_ids)
    old = truth_two.content_index(first["content_id"].to_numpy())
    new = truth_two.content_index(added["content_id"].to_numpy())
    assert (new >= 0).all()
    model_one, model_two = truth_one.response_model(), truth_two.response_model()
    recent = np.ones(len(users), dtype=np.int64)
    before = truth_one.content_index(first["content_id"].to_numpy())
    for item, same in zip(before[:10], old[:10], strict=True):
        assert np.allclose(model_one.open_probability(users, np.full(len(users), item), recent),
                           model_two.open_probability(users, np.full(len(users), same), recent))


def test_a_retrain_reads_the_world_and_the_pushes_its_api_logged(worlds, tmp_path: Path) -> None:
    from features.loader import load_dataset
    from serving.event_log import EventLog

    _, world = worlds
    history = pd.read_parquet(world / "push_log.parquet")
    content = pd.read_parquet(world / "content.parquet")["content_id"].astype(str)
    user = str(history["user_id"].iloc[0])
    sent = datetime(2026, 11, 3, 10, tzinfo=SHANGHAI)
    events = [{"event_id": "a-s", "type": "sent", "user_id": user, "push_id": "a", "content_id": content[0],
               "ts": sent.isoformat()},
              {"event_id": "a-o", "type": "opened", "user_id": user, "push_id": "a",
               "ts": (sent + timedelta(minutes=20)).isoformat()},
              {"event_id": "b-s", "type": "sent", "user_id": user, "push_id": "b", "content_id": content[1],
               "ts": (sent + timedelta(days=1)).isoformat()},
              {"event_id": "b-m", "type": "muted", "user_id": user, "push_id": "b",
               "ts": (sent + timedelta(days=1, minutes=5)).isoformat()}]
    log_path = tmp_path / "events" / "push_log.jsonl"
    EventLog(log_path, clock=lambda: sent).append(events)

    data = month.with_event_log(world, load_dataset(world).push_log, log_path, tmp_path / "data")
    pushes = pd.read_parquet(data / "push_log.parquet")
    assert len(pushes) == len(history) + 2
    pd.testing.assert_frame_equal(pushes.iloc[:len(history)].reset_index(drop=True), history,
                                  check_dtype=False)
    logged = pushes.iloc[len(history):].set_index("push_id")
    assert logged.loc["a", "opened_ts"] == pd.Timestamp(sent + timedelta(minutes=20))
    assert not logged.loc["a", "muted"] and logged.loc["b", "muted"] and pd.isna(logged.loc["b", "opened_ts"])
    # the other tables are the world's own, and the whole passes the data contract as `recsys train` reads it
    assert (data / "content.parquet").resolve() == (world / "content.parquet").resolve()
    dataset = load_dataset(data)
    assert dataset.time_range()[1] == pd.Timestamp(sent + timedelta(days=1))  # the last push sent
    with pytest.raises(FileExistsError):  # a retrain never writes over an earlier one's data
        month.with_event_log(world, load_dataset(world).push_log, log_path, tmp_path / "data")


def test_a_retrain_needs_a_month_boundary(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["month.py", "--retrain"])
    with pytest.raises(SystemExit) as exit_info:
        month.main()
    assert exit_info.value.code == 2 and "--months 2 or more" in capsys.readouterr().err


def test_keeping_the_response_models_needs_a_retrain(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["month.py", "--months", "2", "--keep-response"])
    with pytest.raises(SystemExit) as exit_info:
        month.main()
    assert exit_info.value.code == 2 and "--keep-response" in capsys.readouterr().err


def test_a_control_share_outside_0_to_half_is_refused(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["month.py", "--control-share", "0.6"])
    with pytest.raises(SystemExit) as exit_info:
        month.main()
    assert exit_info.value.code == 2 and "--control-share must be in [0, 0.5]" in capsys.readouterr().err


def test_the_uplift_compares_treated_and_control_cardholders_of_each_month(worlds) -> None:
    from recsys.control import in_control

    outcomes = outcomes_of(worlds[1], 2)
    control = in_control(outcomes.user_ids, 0.5)
    assert 0 < control.sum() < len(control)
    # the value-aware engine: treated cardholders worth 3 in month 1 and 1 in month 2, control 1 and 1;
    # send-all: 1 everywhere. Cardholders the engines cannot reach are left out
    ours, base = np.ones((2, len(control), 2)), np.ones((2, len(control), 2))
    ours[0, ~control] = 3.0
    ours[:, ~outcomes.reachable] = 100.0
    results = {"value-aware engine": {"row values": ours}, "send-all engine": {"row values": base}}
    lines = month.control_uplift(results, outcomes, 0.5)
    first, second, run = lines[1:]
    assert first.startswith(f"  {outcomes.month_name(0)}: value-aware treated 3.000 / 3.000, control "
                            "1.000 / 1.000: uplift 3.00x expected, 3.00x (95% 3.00-3.00) drawn")
    assert "uplift 1.00x expected" in second and "uplift 2.00x expected" in run
    assert run.endswith("value-aware treated against send-all treated 2.00x expected")


def test_a_retrain_reads_a_world_whose_push_log_is_csv(worlds, tmp_path: Path) -> None:
    from features.loader import load_dataset

    _, world = worlds
    csv_world = tmp_path / "csv-world"
    csv_world.mkdir()
    for table in world.iterdir():
        if table.name != "push_log.parquet":
            (csv_world / table.name).symlink_to(table)
    history = pd.read_parquet(world / "push_log.parquet")
    history.to_csv(csv_world / "push_log.csv", index=False)
    # nothing logged yet: the world's own pushes alone
    data = month.with_event_log(csv_world, load_dataset(csv_world).push_log,
                                tmp_path / "events" / "push_log.jsonl", tmp_path / "data")
    assert not (data / "push_log.csv").exists()
    pushes = pd.read_parquet(data / "push_log.parquet")
    assert len(pushes) == len(history)
    assert (pushes["sent_ts"] == pd.to_datetime(history["sent_ts"], utc=True)).all()


def test_retrains_fall_on_each_new_month_and_every_nth_day_replayed(worlds) -> None:
    _, world = worlds
    schedule = outcomes_of(world, 2).replay()  # November (days 0-29), then December (30-60)
    assert month.retrain_days(schedule, at_months=True) == {30}
    assert month.retrain_days(schedule, at_months=True, every=14) == {14, 28, 30, 42, 56}
    assert month.retrain_days(schedule, at_months=False, every=30) == {30, 60}
    assert month.retrain_days(schedule, at_months=False) == frozenset()
    # with the first D days of each month replayed, the days are counted as replayed
    short = outcomes_of(world, 2).replay(3)  # days 0-2, then 30-32: six replayed days
    assert month.retrain_days(short, at_months=True, every=2) == {2, 30, 31}  # replayed days 3 and 5


def test_a_broadcast_over_days_without_a_monday_reports_zeros(worlds) -> None:
    """`--days 1` replays 1 November 2026, a Sunday: the weekly broadcast sends nothing, and its row is
    zeros rather than missing (the results table reads every count)."""
    one, _ = worlds
    outcomes = outcomes_of(one, 1)
    schedule = outcomes.replay(1)
    assert outcomes.at(schedule[0][1], 10).weekday() == 6
    result = month.weekly_broadcast(one, outcomes, schedule)
    assert {field: result[field] for field in month.MONTH_FIELDS} == dict.fromkeys(month.MONTH_FIELDS, 0)
    assert month.value_of(result) == 0 and result["violations"] == 0
