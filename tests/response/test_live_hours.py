"""Hours learned live: the pushes sent since the fit, and their opens, move a cardholder's daily wave."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from recsys.caps.rules import CardholderRecord
from recsys.live_hours import live_sends
from recsys.models.base import ARRAYS, IncompatibleModelError
from recsys.response_model import HOURS, PushResponseModel, wave_matrices
from tests.response.conftest import Fitted
from training.response import DEFAULT_PENALTIES

SLOTS = [9, 12, 15, 20]


def typical_logits(model: PushResponseModel, users: list[str]) -> np.ndarray:
    """The open logit of promotion p01 at every hour, three recent pushes: what the live pushes were."""
    n = len(users)
    rows = model.user_rows(np.repeat(users, HOURS))
    items = model.item_rows(["p01"] * n * HOURS)
    hours = np.tile(np.arange(HOURS), n)
    return model.logit("open", rows, items, hours, np.full(n * HOURS, 3)).reshape(n, HOURS)


def alone(hours: list[int], opened: list[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One cardholder's sends as `live_wave` takes a batch's: flat row, hour and opened."""
    return np.zeros(len(hours), dtype=np.int64), np.array(hours, dtype=np.int64), np.array(opened, dtype=bool)


def moved(model: PushResponseModel, user: str, hours: list[int], opened: list[bool]) -> np.ndarray:
    """The cardholder's open hour effects at SLOTS after the live pushes, less those before."""
    rows = model.user_rows([user])
    wave = model.live_wave(rows, *alone(hours, opened), typical_logits(model, [user]))
    return (model.hour_effects(rows, wave=wave) - model.hour_effects(rows))[0, SLOTS]


def test_the_fit_keeps_each_cardholders_precision_of_level_and_wave(handmade: Fitted) -> None:
    model = handmade.model
    # six floats a cardholder, the symmetric 3 x 3's upper triangle
    assert model.wave_precision.shape == (len(model.user_ids), 6) and model.wave_precision.dtype == np.float32
    precision = wave_matrices(model.wave_precision)
    assert (np.linalg.eigvalsh(precision.astype(np.float64)) > 0).all()
    pushed, new_gold = model.user_rows(["c00", "new_gold"]).index
    # new_gold was never pushed: the penalties alone; c00, pushed for four months, far more
    penalties = handmade.report.user_hour_penalty
    np.testing.assert_allclose(precision[new_gold], np.diag([DEFAULT_PENALTIES["open"]["user"], penalties,
                                                             penalties]), rtol=1e-6)
    assert precision[pushed, 1, 1] > 3 * precision[new_gold, 1, 1]


def test_opens_at_eight_pm_move_a_cardholder_who_opened_alike_at_every_hour_toward_it(
        handmade: Fitted) -> None:
    model = handmade.model
    rows = model.user_rows(["c00"])
    assert model.best_hours(rows, k=1, allowed=SLOTS) != [[20]]
    few = moved(model, "c00", [20, 9], [True, False])
    many = moved(model, "c00", [20, 9] * 4, [True, False] * 4)
    assert few[3] - few[0] > 0 and many[3] - many[0] > few[3] - few[0]
    wave = model.live_wave(rows, *alone([20, 9] * 4, [True, False] * 4), typical_logits(model, ["c00"]))
    assert model.best_hours(rows, k=1, allowed=SLOTS, wave=wave) == [[20]]


def test_a_few_live_pushes_do_not_undo_a_long_history(handmade: Fitted) -> None:
    """The owl opened every 20:00 push of four months: two opens at 09:00 leave 20:00 first."""
    model = handmade.model
    rows = model.user_rows(["owl"])
    wave = model.live_wave(rows, *alone([9, 9, 20], [True, True, False]), typical_logits(model, ["owl"]))
    assert model.best_hours(rows, k=1, allowed=SLOTS, wave=wave) == [[20]]
    # a month of it does
    wave = model.live_wave(rows, *alone([9, 20] * 15, [True, False] * 15), typical_logits(model, ["owl"]))
    assert model.best_hours(rows, k=1, allowed=SLOTS, wave=wave) == [[9]]


def test_opens_at_every_hour_alike_move_the_level_more_than_the_wave(handmade: Fitted) -> None:
    model = handmade.model
    alike = moved(model, "c00", SLOTS, [True] * 4)
    one_hour = moved(model, "c00", [20] * 4, [True] * 4)
    assert np.ptp(alike) < 0.5 * np.ptp(one_hour)


def test_nothing_moves_without_live_pushes_a_known_cardholder_or_the_fits_precision(handmade: Fitted) -> None:
    model = handmade.model
    rows = model.user_rows(["c00", "stranger", "c01"])
    logits = typical_logits(model, ["c00", "c00", "c01"])
    logits[2, 20] = np.nan  # a push at an hour whose logit is not known is left out
    # c00 has none, the stranger is unknown to the model, c01's one is at an hour of unknown logit
    row, hours, opened = np.array([1, 2]), np.array([20, 20]), np.array([True, True])
    np.testing.assert_array_equal(model.live_wave(rows, row, hours, opened, logits), np.zeros((3, 2)))
    old = replace(model, wave_precision=None)
    assert not old.live_wave(old.user_rows(["c00"]), *alone([20], [True]), logits[:1]).any()


def test_the_precision_is_saved_and_a_model_saved_without_it_loads(handmade: Fitted, tmp_path: Path) -> None:
    model = handmade.model
    loaded = PushResponseModel.load(model.save(tmp_path / "with"))
    np.testing.assert_array_equal(loaded.wave_precision, model.wave_precision)
    older = PushResponseModel.load(replace(model, wave_precision=None).save(tmp_path / "without"))
    assert older.wave_precision is None


def save_the_old_way(model: PushResponseModel, directory: Path) -> Path:
    """The model as code before the triangles saved it: the full float32 [n, 3, 3] under `wave_precision`."""
    path = model.save(directory)
    with np.load(path / ARRAYS, allow_pickle=False) as saved:
        arrays = {name: saved[name] for name in saved.files}
    full = wave_matrices(arrays.pop("wave_precision_upper")).astype(np.float32)
    np.savez(path / ARRAYS, wave_precision=full, **arrays)
    return path


def test_a_model_saved_with_full_matrices_loads_and_moves_the_same(handmade: Fitted, tmp_path: Path) -> None:
    model = handmade.model
    old = PushResponseModel.load(save_the_old_way(model, tmp_path / "old"))
    np.testing.assert_array_equal(old.wave_precision, model.wave_precision)
    assert old.wave_precision.nbytes == 24 * len(model.user_ids)  # 36 as the full matrices
    users = ["c00", "owl", "c01"]
    row, hours = np.array([0, 0, 1, 1, 2]), np.array([20, 9, 9, 20, 12])
    opened = np.array([True, False, True, False, True])
    logits = typical_logits(model, users)
    wave = model.live_wave(model.user_rows(users), row, hours, opened, logits)
    assert wave.any()
    np.testing.assert_array_equal(old.live_wave(old.user_rows(users), row, hours, opened, logits), wave)
    given_full = replace(model, wave_precision=wave_matrices(model.wave_precision))
    np.testing.assert_array_equal(given_full.wave_precision, model.wave_precision)
    with pytest.raises(IncompatibleModelError):
        replace(model, wave_precision=model.wave_precision[:, :5])


def test_a_batch_moves_each_cardholder_as_alone(handmade: Fitted) -> None:
    model = handmade.model
    users = ["owl", "stranger", "c00", "c01"]
    logits = typical_logits(model, users)
    sends = {0: ([9, 9, 20], [True, True, False]), 2: ([20, 9] * 4, [True, False] * 4), 3: ([12], [True])}
    row = np.concatenate([np.full(len(hours), i) for i, (hours, _) in sends.items()])
    hours = np.concatenate([hours for hours, _ in sends.values()])
    opened = np.concatenate([flags for _, flags in sends.values()])
    together = model.live_wave(model.user_rows(users), row, hours, opened, logits)
    for i, user in enumerate(users):
        each = model.live_wave(model.user_rows([user]), *alone(*sends.get(i, ([], []))), logits[i:i + 1])
        np.testing.assert_array_equal(together[i], each[0])
    assert not together[1].any() and together[[0, 2, 3]].all()


def per_cardholder(record: CardholderRecord, zone: str, since_ms: int, now_ms: int
                   ) -> tuple[list[int], list[bool]]:
    """The conversion the batch path replaced: each kept send's hour by `datetime.fromtimestamp`."""
    kept = [(sent, opened) for _, sent, opened in record.outcomes if since_ms < sent <= now_ms]
    return ([datetime.fromtimestamp(sent / 1000, ZoneInfo(zone)).hour for sent, _ in kept],
            [opened for _, opened in kept])


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_the_batch_conversion_equals_the_per_cardholder_one_across_zones_and_dst() -> None:
    since, now = ms("2026-03-01T00:00:00+00:00"), ms("2026-11-01T00:00:00+00:00")
    sends = {
        # New York springs forward at 07:00 UTC on 8 March: 01:59 EST, then 03:00 EDT
        "America/New_York": ["2026-03-08T06:59:59.999+00:00", "2026-03-08T07:00:00+00:00"],
        # London falls back at 01:00 UTC on 25 October: 01:30 BST, then 01:30 GMT
        "Europe/London": ["2026-10-25T00:30:00+00:00", "2026-10-25T01:30:00+00:00"],
        # half-hour offsets, one across local midnight; Lord Howe's clocks move by half an hour
        "Asia/Kolkata": ["2026-03-08T18:29:00+00:00", "2026-03-08T18:30:00+00:00"],
        "Australia/Lord_Howe": ["2026-04-04T14:59:00+00:00", "2026-04-04T15:00:00+00:00"],
        # no zone of their own: the default; sends at `since` and after `now` are not live
        "": ["2026-03-01T00:00:00+00:00", "2026-06-30T16:00:00+00:00", "2026-11-01T00:00:01+00:00"],
    }
    zones: list[str | None] = [*sends, None, "Asia/Shanghai"]
    records = [CardholderRecord(outcomes=[(f"p{n}", ms(at), n % 2 == 0) for n, at in enumerate(times)])
               for times in sends.values()]
    records += [CardholderRecord(outcomes=[("q", ms("2026-07-01T01:00:00+00:00"), True)]), CardholderRecord()]
    nows = [now] * len(records)
    nows[-2] = ms("2026-07-01T01:00:00+00:00")  # each cardholder's own time of asking; a send at it counts
    row, hour, opened = live_sends(records, zones, "Asia/Shanghai", since, nows)
    expected = [per_cardholder(record, zone or "Asia/Shanghai", since, at)
                for record, zone, at in zip(records, zones, nows, strict=True)]
    assert row.tolist() == [i for i, (hours, _) in enumerate(expected) for _ in hours]
    assert hour.tolist() == [h for hours, _ in expected for h in hours]
    assert opened.tolist() == [flag for _, flags in expected for flag in flags]
    assert hour.tolist() == [1, 3, 1, 1, 23, 0, 1, 1, 0, 9]
    empty = live_sends([CardholderRecord()], [None], "Asia/Shanghai", since, [now])
    assert [len(part) for part in empty] == [0, 0, 0]
