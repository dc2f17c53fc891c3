"""Hours learned live: the pushes sent since the fit, and their opens, move a cardholder's daily wave."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from recsys.response_model import HOURS, PushResponseModel
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


def moved(model: PushResponseModel, user: str, hours: list[int], opened: list[bool]) -> np.ndarray:
    """The cardholder's open hour effects at SLOTS after the live pushes, less those before."""
    rows = model.user_rows([user])
    wave = model.live_wave(rows, [np.array(hours)], [np.array(opened)], typical_logits(model, [user]))
    return (model.hour_effects(rows, wave=wave) - model.hour_effects(rows))[0, SLOTS]


def test_the_fit_keeps_each_cardholders_precision_of_level_and_wave(handmade: Fitted) -> None:
    model = handmade.model
    precision = model.wave_precision
    assert precision.shape == (len(model.user_ids), 3, 3)
    np.testing.assert_allclose(precision, np.transpose(precision, (0, 2, 1)), rtol=1e-5)
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
    wave = model.live_wave(rows, [np.array([20, 9] * 4)], [np.array([True, False] * 4)],
                           typical_logits(model, ["c00"]))
    assert model.best_hours(rows, k=1, allowed=SLOTS, wave=wave) == [[20]]


def test_a_few_live_pushes_do_not_undo_a_long_history(handmade: Fitted) -> None:
    """The owl opened every 20:00 push of four months: two opens at 09:00 leave 20:00 first."""
    model = handmade.model
    rows = model.user_rows(["owl"])
    wave = model.live_wave(rows, [np.array([9, 9, 20])], [np.array([True, True, False])],
                           typical_logits(model, ["owl"]))
    assert model.best_hours(rows, k=1, allowed=SLOTS, wave=wave) == [[20]]
    # a month of it does
    wave = model.live_wave(rows, [np.array([9, 20] * 15)], [np.array([True, False] * 15)],
                           typical_logits(model, ["owl"]))
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
    hours = [np.array([], dtype=np.int64), np.array([20]), np.array([20])]
    opened = [np.array([], dtype=bool), np.array([True]), np.array([True])]
    np.testing.assert_array_equal(model.live_wave(rows, hours, opened, logits), np.zeros((3, 2)))
    old = replace(model, wave_precision=None)
    assert not old.live_wave(old.user_rows(["c00"]), [np.array([20])], [np.array([True])],
                             logits[:1]).any()


def test_the_precision_is_saved_and_a_model_saved_without_it_loads(handmade: Fitted, tmp_path: Path) -> None:
    model = handmade.model
    loaded = PushResponseModel.load(model.save(tmp_path / "with"))
    np.testing.assert_array_equal(loaded.wave_precision, model.wave_precision)
    older = PushResponseModel.load(replace(model, wave_precision=None).save(tmp_path / "without"))
    assert older.wave_precision is None
