"""Pacing on content that becomes valid later in the month (`recsys.decision.Upcoming`, `day_best`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from recsys.caps.policy import Decision, Pacing, QuietHours
from recsys.decision import (
    HOLD,
    SEND,
    Upcoming,
    count_runs,
    day_best,
    day_values,
    decide,
    is_quiet,
    projected_recents,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 9, 10, 10, 0, tzinfo=SHANGHAI)
SETTINGS = Decision(mute_weight=10, min_value=0.0, hour_margin=0.1, pacing=Pacing(margin=0.1))


def upcoming(content_id: str, days: list[float], first_hour: int = 19) -> Upcoming:
    """Values on each later day (NaN before the content starts), each at `first_hour` local that day."""
    seconds = [int(NOW.replace(hour=first_hour).timestamp()) + 86_400 * (d + 1) for d in range(len(days))]
    return Upcoming(content_id, np.asarray(days, dtype=np.float64), np.asarray(seconds, dtype=np.int64))


def test_better_content_later_holds_with_its_start_as_send_at() -> None:
    nan = float("nan")
    # the top push is worth 0.03 now and on every later day; a new offer starts in 3 days worth 0.08
    own = [0.03] * 6
    offer = upcoming("offer-7", [nan, nan, 0.08, 0.08, 0.07, 0.07])
    held = decide(SETTINGS, 0.03, [], NOW, 4, own, [offer])
    assert held.decision == HOLD and held.reason.startswith("better content later: offer-7 on day 3")
    assert held.send_at == datetime(2026, 9, 13, 19, 0, tzinfo=SHANGHAI).astimezone(UTC)
    # as many slots as better days: the offer can still be sent then, so send now
    assert decide(SETTINGS, 0.03, [], NOW, 5, own, [offer]).decision == SEND
    # the same offer worth no more than now (within the margin) does not hold
    small = upcoming("offer-7", [nan, nan, 0.032, 0.032, 0.032, 0.032])
    assert decide(SETTINGS, 0.03, [], NOW, 1, own, [small]).decision == SEND
    # without pacing the upcoming content changes nothing
    off = SETTINGS.model_copy(update={"pacing": None})
    assert decide(off, 0.03, [], NOW, 1, own, [offer]).decision == SEND


def test_upcoming_content_counts_only_where_it_beats_the_top_push() -> None:
    nan = float("nan")
    own = [0.05, 0.09, 0.09]  # the top push itself is worth more in two days
    offer = upcoming("offer-2", [nan, 0.06, 0.06])
    held = decide(SETTINGS, 0.03, [], NOW, 3, own, [offer])
    # three better days (0.05, 0.09, 0.09), none of them thanks to the offer: the old reason, no send_at
    assert held.decision == HOLD and held.reason.startswith("slots worth more later: 3 later days")
    assert held.send_at is None
    # an offer lasting past the top push's end fills later days the top push no longer has
    longer = upcoming("offer-9", [nan, nan, 0.2, 0.2])
    verdict = decide(SETTINGS, 0.03, [], NOW, 4, own[:2], [longer])
    assert verdict.decision == HOLD and "offer-9 on day 3" in verdict.reason


def test_every_upcoming_candidate_counts_on_its_own_days() -> None:
    nan = float("nan")
    own = [0.01, 0.01, 0.01]  # the top push is worth less later
    first, second = upcoming("offer-a", [nan, 0.05, nan]), upcoming("offer-b", [0.06, nan, nan, 0.07])
    # two better days, one from each offer (and a fourth day only the second offer has): three, for three
    # slots left, hold for the earliest, the second offer's day 1
    held = decide(SETTINGS, 0.03, [], NOW, 3, own, [first, second])
    assert held.decision == HOLD and held.reason.startswith("better content later: offer-b on day 1")
    assert "3 later days worth more for 3 slot(s)" in held.reason
    assert decide(SETTINGS, 0.03, [], NOW, 4, own, [first, second]).decision == SEND
    # either offer alone gives fewer better days than slots left
    assert decide(SETTINGS, 0.03, [], NOW, 3, own, [first]).decision == SEND
    assert decide(SETTINGS, 0.03, [], NOW, 3, own, [second]).decision == SEND


def test_day_best_respects_each_candidates_usable_hours_and_matches_day_values(handmade) -> None:
    model = handmade.model
    users, items = model.user_rows(["c01", "g03"]), model.item_rows(["p01", "p02"])
    hours = np.array([9, 12, 15, 20])
    grid = (users.take(np.repeat([0, 1], 4)), items.take(np.repeat([0, 1], 4)), np.tile(hours, 2),
            np.full(8, 3))
    open_logit = model.logit("open", *grid).reshape(2, 4)
    mute_logit = model.logit("mute", *grid).reshape(2, 4)
    counts = np.array([[3, 3, 2, 1], [3, 3, 3, 3]])
    every = np.ones((2, 3, 4), dtype=bool)
    values, column = day_best(model, open_logit, mute_logit, counts, 10.0, every)
    np.testing.assert_allclose(values, day_values(model, open_logit, mute_logit, counts, 10.0,
                                                  np.ones(4, dtype=bool)))
    # the same push on a day with fewer recent pushes is worth more (fatigue leaves with them)
    assert values[0, 2] > values[0, 0]
    usable = every.copy()
    usable[0, 0, :] = False  # not valid yet tomorrow
    usable[0, 1, :2] = False  # valid from the third hour the day after
    later, where = day_best(model, open_logit, mute_logit, counts, 10.0, usable)
    assert np.isnan(later[0, 0]) and where[0, 0] == -1
    assert where[0, 1] >= 2 and later[0, 1] <= values[0, 1]
    assert later[0, 2] == pytest.approx(values[0, 2]) and where[0, 2] == column[0, 2]


def day_best_per_day(model, open_logit, mute_logit, counts, mute_weight, usable):
    """The day grids calibrated day by day (before runs of equal counts): the reference `day_best` and
    `day_values` are held against."""
    values = []
    for target, logit in (("open", open_logit), ("mute", mute_logit)):
        terms = model.recent_logit(target, np.asarray(counts))
        shifted = logit[:, None, :] + (terms[:, 1:] - terms[:, :1])[:, :, None]
        values.append(model.calibration[target].apply(shifted))
    value = np.where(usable, values[0] - mute_weight * values[1], -np.inf)
    column = value.argmax(axis=2)
    best = np.take_along_axis(value, column[:, :, None], axis=2)[:, :, 0]
    found = np.isfinite(best)
    return np.where(found, best, np.nan), np.where(found, column, -1)


def test_day_grids_by_runs_of_equal_counts_match_day_by_day(handmade) -> None:
    """Bit for bit the values and hours of calibrating every later day: decision times at month ends and
    mid-month in four zones (New York's months with a clock change: March and November), pushes leaving
    the 30-day window on several days, quiet windows, candidates valid from and to a later hour."""
    model = handmade.model
    users = model.user_rows(["c01", "g03", "c01", "g03"])
    items = model.item_rows(["p01", "p02", "p02", "p01"])
    quiet_windows = [None, QuietHours(start="22:00", end="08:00"), QuietHours(start="01:00", end="05:30")]
    zones = [SHANGHAI, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), UTC]
    moments = [datetime(2026, 1, 31, 20, 15), datetime(2026, 2, 1, 9, 0), datetime(2026, 2, 27, 23, 40),
               datetime(2026, 3, 2, 12, 0), datetime(2026, 10, 20, 10, 0), datetime(2026, 10, 30, 7, 5),
               datetime(2026, 11, 1, 0, 30), datetime(2026, 12, 6, 10, 0)]
    rng = np.random.default_rng(13)
    checked = 0
    for zone in zones:
        for wall in moments:
            local = wall.replace(tzinfo=zone)
            next_month = (local.replace(day=28) + timedelta(days=4)).replace(day=1)
            days = (next_month.date() - local.date()).days - 1
            now = int(local.timestamp())
            # each row's pushes of the trailing 30 days: none, one, a few on one day, several days apart
            pushes = [[], [now - 86_400 * 29], [now - 86_400 * 3] * 3,
                      (now - 3_600 * rng.integers(1, 30 * 24, size=6)).tolist()]
            counts = projected_recents([np.asarray(p, np.int64) for p in pushes], np.full(len(pushes), now),
                                       days)
            counts[3] += 2  # pushes of the response model's own history, also leaving the window
            counts[3, 1 + days // 2:] -= 2
            for quiet in quiet_windows:
                open_hours = np.array([h for h in range(24) if not is_quiet(quiet, datetime(2000, 1, 1, h))])
                grid = (users.take(np.repeat(np.arange(4), len(open_hours))),
                        items.take(np.repeat(np.arange(4), len(open_hours))),
                        np.tile(open_hours, 4), np.repeat(counts[:, 0], len(open_hours)))
                logits = model.logits(*grid)
                open_logit = logits["open"].reshape(4, -1)
                mute_logit = logits["mute"].reshape(4, -1)
                # valid from a later day's hour to another's, as `serving.ranker.upcoming_values` builds it
                midnight = local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
                moment = (midnight + 86_400 * np.arange(1, days + 1)[None, :, None]
                          + 3_600 * open_hours[None, None, :])
                starts = now + 3_600 * rng.integers(0, 24 * max(days, 1), size=(4, 1, 1))
                usable = (moment >= starts) & (moment < starts + 86_400 * rng.integers(1, 9, size=(4, 1, 1)))
                usable[1] = True
                for mute_weight in (0.0, 10.0):
                    got = day_best(model, open_logit, mute_logit, counts, mute_weight, usable)
                    want = day_best_per_day(model, open_logit, mute_logit, counts, mute_weight, usable)
                    np.testing.assert_array_equal(got[0], want[0])
                    np.testing.assert_array_equal(got[1], want[1])
                    reachable = rng.random((4, len(open_hours))) < 0.5
                    reachable[0] = False  # a scheduler with no slot at an open hour: NaN every day
                    for hours in (np.ones(len(open_hours), dtype=bool), reachable):
                        every = np.broadcast_to(hours if hours.ndim == 1 else hours[:, None, :],
                                                (4, days, len(open_hours)))
                        np.testing.assert_array_equal(
                            day_values(model, open_logit, mute_logit, counts, mute_weight, hours),
                            day_best_per_day(model, open_logit, mute_logit, counts, mute_weight, every)[0])
                    checked += 1
    assert checked == len(zones) * len(moments) * len(quiet_windows) * 2


def test_count_runs_group_equal_neighbouring_days() -> None:
    runs = count_runs(np.array([[3, 3, 2, 2, 2, 1], [1, 1, 1, 1, 1, 1], [2, 1, 2, 2, 4, 4]]))
    assert runs.of_day.tolist() == [[0, 0, 1, 1, 1, 2], [3] * 6, [4, 5, 6, 6, 7, 7]]
    assert runs.row.tolist() == [0, 0, 0, 1, 2, 2, 2, 2]
    assert runs.count.tolist() == [3, 2, 1, 1, 2, 1, 2, 4]
    empty = count_runs(np.zeros((2, 0), dtype=np.int64))
    assert empty.of_day.shape == (2, 0) and len(empty.row) == len(empty.count) == 0
