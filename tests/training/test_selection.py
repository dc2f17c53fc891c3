"""Epochs, item appeal and wide weights chosen on the validation window before the holdout: nothing
after the split is used, every option is scored, and the choice travels into the model's settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.loader import load_dataset
from tests.training.test_tune import FAST, before
from training.selection import choose_on_validation, fewest_good_epochs, lightest_within_noise

pytestmark = pytest.mark.slow


def test_the_fewest_epochs_within_tolerance_of_the_best() -> None:
    assert fewest_good_epochs([0.1, 0.5, 0.6, 0.7, 0.705, 0.69], tolerance=0.01, minimum=3) == 4
    assert fewest_good_epochs([0.1, 0.5, 0.6, 0.7, 0.705, 0.69], tolerance=0.0, minimum=3) == 5
    assert fewest_good_epochs([0.9, 0.5, 0.6, 0.7], tolerance=0.01, minimum=3) == 4  # never fewer than 3
    assert fewest_good_epochs([0.9, 0.5], tolerance=0.01, minimum=3) == 2
    assert fewest_good_epochs([float("nan"), 0.4, 0.5], tolerance=0.0, minimum=1) == 3


def flipped(hits: np.ndarray, up: int, down: int) -> np.ndarray:
    """`hits` with its first `up` misses turned into hits and its first `down` hits into misses."""
    out = hits.copy()
    out[np.flatnonzero(hits == 0)[:up]] = 1.0
    out[np.flatnonzero(hits == 1)[:down]] = 0.0
    return out


BASE_HITS = (np.arange(2000) % 5 == 0).astype(np.float64)  # 400 of 2,000 cardholders hit


def test_a_heavier_pair_that_wins_for_many_cardholders_is_kept() -> None:
    # +30 hits and no loss: a paired difference of 0.015 against a standard error of ~0.003
    hits = {(0.25, 0.0): BASE_HITS, (0.25, 0.5): flipped(BASE_HITS, up=30, down=0)}
    assert lightest_within_noise(hits, seed=0) == (0.25, 0.5)


def test_a_heavier_pair_ahead_within_the_noise_loses_to_the_lightest() -> None:
    # +30 and -25 cardholders: 0.0025 ahead, against a standard error of ~0.0037
    hits = {(1.0, 0.5): flipped(BASE_HITS, up=30, down=25), (0.5, 0.125): BASE_HITS,
            (0.25, 0.125): BASE_HITS}
    assert lightest_within_noise(hits, seed=0) == (0.25, 0.125)
    # far enough ahead, the heavy pair wins whatever the seed
    hits[(1.0, 0.5)] = flipped(BASE_HITS, up=80, down=10)
    assert {lightest_within_noise(hits, seed=seed) for seed in range(5)} == {(1.0, 0.5)}


def test_ties_go_to_the_lowest_wide_weight_then_the_lowest_appeal() -> None:
    hits = {(0.25, 0.5): BASE_HITS, (1.0, 0.0): BASE_HITS, (0.5, 0.0): BASE_HITS}
    assert lightest_within_noise(hits, seed=0) == (0.5, 0.0)


def test_settings_are_chosen_on_validation_before_the_split(small_world: Path) -> None:
    dataset = load_dataset(small_world)
    split = dataset.time_range()[1] - pd.Timedelta(days=FAST.holdout_days)
    config = replace(FAST, appeal_choices=(0.0, 1.0), wide_choices=(0.0, 0.5))
    chosen = choose_on_validation(dataset, split, config, echo=lambda line: None)
    assert set(chosen.objectives) == {"appeal:0 wide:0", "appeal:1 wide:0", "appeal:0 wide:0.5",
                                      "appeal:1 wide:0.5"}
    # the objectives are top-1 hit rates; the pair kept is the best one or one lighter than it
    assert all(0.0 <= value <= 1.0 for value in chosen.objectives.values())
    best = max(chosen.objectives, key=chosen.objectives.get)
    best_appeal, best_wide = (float(part.split(":")[1]) for part in best.split())
    assert (chosen.wide_weight, chosen.item_appeal_weight) <= (best_wide, best_appeal)
    assert len(chosen.epoch_objectives) == FAST.model.params["epochs"]
    assert chosen.epochs == fewest_good_epochs(chosen.epoch_objectives)
    assert chosen.window[1] == split.isoformat()
    # nothing after the split is used: the same data cut at the split gives the same choice
    blind = choose_on_validation(before(dataset, split), split, config, echo=lambda line: None)
    assert blind == chosen
    # the choice becomes the model's settings
    params = chosen.apply(config).model.params
    assert (params["epochs"], params["item_appeal_weight"], params["wide_weight"]) == (
        chosen.epochs, chosen.item_appeal_weight, chosen.wide_weight)
    # a sample of the cardholders gives its own answer
    sampled = choose_on_validation(dataset, split, config, max_users=50, echo=lambda line: None)
    assert sampled.objectives != chosen.objectives and sampled.users < chosen.users
    # without epoch choice the configured number is kept
    fixed = choose_on_validation(dataset, split, replace(config, choose_epochs=False), echo=lambda line: None)
    assert fixed.epochs == FAST.model.params["epochs"] and not fixed.epoch_objectives
    assert np.isfinite(list(fixed.objectives.values())).all()
