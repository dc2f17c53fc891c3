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
from training.selection import choose_on_validation, fewest_good_epochs

pytestmark = pytest.mark.slow


def test_the_fewest_epochs_within_tolerance_of_the_best() -> None:
    assert fewest_good_epochs([0.1, 0.5, 0.6, 0.7, 0.705, 0.69], tolerance=0.01, minimum=3) == 4
    assert fewest_good_epochs([0.1, 0.5, 0.6, 0.7, 0.705, 0.69], tolerance=0.0, minimum=3) == 5
    assert fewest_good_epochs([0.9, 0.5, 0.6, 0.7], tolerance=0.01, minimum=3) == 4  # never fewer than 3
    assert fewest_good_epochs([0.9, 0.5], tolerance=0.01, minimum=3) == 2
    assert fewest_good_epochs([float("nan"), 0.4, 0.5], tolerance=0.0, minimum=1) == 3


def test_settings_are_chosen_on_validation_before_the_split(small_world: Path) -> None:
    dataset = load_dataset(small_world)
    split = dataset.time_range()[1] - pd.Timedelta(days=FAST.holdout_days)
    config = replace(FAST, appeal_choices=(0.0, 1.0), wide_choices=(0.0, 0.5))
    chosen = choose_on_validation(dataset, split, config, echo=lambda line: None)
    assert set(chosen.objectives) == {"appeal:0 wide:0", "appeal:1 wide:0", "appeal:0 wide:0.5",
                                      "appeal:1 wide:0.5"}
    best = max(chosen.objectives.values())
    assert chosen.objectives[f"appeal:{chosen.item_appeal_weight:g} wide:{chosen.wide_weight:g}"] == best
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
