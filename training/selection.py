"""Settings `recsys train` chooses on a validation window before the holdout, from one sampled fit:
the number of epochs, the item appeal weight and the weight of the wide (ridge) part.

The model is fitted once, on a seeded sample of at most `max_users` cardholders at `split -
holdout_days`, scored after every epoch on what they did up to `split` (the window and objective of
`--tune`), and rewound to the fewest epochs whose objective is within `EPOCH_TOLERANCE` of the best.
Every item appeal x wide weight pair is then applied to that state and scored by its top-1 hit rate:
the share of the window's cardholders whose first eligible item at the window's start is one they read
or opened in it (the product pushes the first item). The pair kept is the lightest (lowest wide
weight, then lowest appeal) whose hit rate is within one bootstrap standard error of the best pair's,
resampling cardholders, so a heavier setting must win beyond the noise of a few thousand cardholders.
No holdout event is seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from features.loader import Dataset
from recsys import metrics
from training.config import ModelSpec, TrainConfig
from training.evaluate import Holdout, make_holdout, recommend_holdout
from training.tune import objective_value, sampled, validation_scores

logger = logging.getLogger(__name__)

SELECTION_MAX_USERS = 20_000
# objective units (a mean of two gains over no skill, ~0.5-0.8 on the worlds measured); seeds of the
# same configuration differ by about this much, so fewer epochs within it are not worse
EPOCH_TOLERANCE = 0.01
MIN_EPOCHS = 3
BOOTSTRAP_REPLICATES = 200


@dataclass(frozen=True)
class Selection:
    """What was chosen and the validation objective of every option tried."""

    epochs: int
    item_appeal_weight: float
    wide_weight: float
    window: tuple[str, str]
    users: int
    epoch_objectives: list[float] = field(default_factory=list)
    objectives: dict[str, float] = field(default_factory=dict)  # "appeal:A wide:W" -> top-1 hit rate

    def summary(self) -> dict[str, Any]:
        """JSON-ready, for the bundle, the report and MLflow."""
        return {"epochs": self.epochs, "item_appeal_weight": self.item_appeal_weight,
                "wide_weight": self.wide_weight, "window": list(self.window), "users": self.users,
                "epoch_objectives": [round(value, 4) for value in self.epoch_objectives],
                "objectives": {key: round(value, 4) for key, value in self.objectives.items()}}

    def apply(self, config: TrainConfig) -> TrainConfig:
        """`config` with the chosen epochs and weights in its model parameters."""
        params = {**config.model.params, "epochs": self.epochs, "item_appeal_weight": self.item_appeal_weight,
                  "wide_weight": self.wide_weight}
        return replace(config, model=ModelSpec(config.model.kind, params))


def fewest_good_epochs(objectives: list[float], tolerance: float = EPOCH_TOLERANCE,
                       minimum: int = MIN_EPOCHS) -> int:
    """The fewest epochs (counting from 1) whose objective is within `tolerance` of the best, among
    counts of at least `minimum` (or the last one when fewer were run); NaNs never qualify."""
    values = np.asarray(objectives, dtype=np.float64)
    first = min(minimum, values.size)
    if not values.size or np.isnan(values[first - 1:]).all():
        return int(values.size)
    best = np.nanmax(values[first - 1:])
    return int(first + np.flatnonzero(values[first - 1:] >= best - tolerance)[0])


def top1_hits(model, validation: Holdout) -> np.ndarray:
    """float [evaluated cardholders]: 1 where the first eligible item is one the cardholder read or
    opened in the validation window."""
    return metrics.per_user("precision", recommend_holdout(model, validation, 1), validation.relevant, 1)


def lightest_within_noise(hits: dict[tuple[float, float], np.ndarray], seed: int,
                          replicates: int = BOOTSTRAP_REPLICATES) -> tuple[float, float]:
    """The (appeal, wide) pair with the lowest wide weight, then the lowest appeal, whose mean hit rate is
    within one standard error of the best pair's; the error is that of the pair's paired difference
    with the best one over Poisson bootstrap replicates of the cardholders (seeded)."""
    pairs = list(hits)
    values = np.nan_to_num(np.stack([hits[pair] for pair in pairs]))
    weights = np.random.default_rng(seed).poisson(1.0, (replicates, values.shape[1])).astype(np.float64)
    resampled = values @ weights.T / np.maximum(weights.sum(axis=1), 1.0)
    means = values.mean(axis=1)
    best = int(np.argmax(means))
    spread = (resampled[best] - resampled).std(axis=1)
    close = [pair for pair, mean, error in zip(pairs, means, spread, strict=True)
             if mean >= means[best] - error]
    return min(close, key=lambda pair: (pair[1], pair[0]))


def choose_on_validation(dataset: Dataset, split: pd.Timestamp, base: TrainConfig,
                         max_users: int = SELECTION_MAX_USERS,
                         echo: Callable[[str], None] = logger.info) -> Selection:
    """Epochs (when `base.choose_epochs`), item appeal weight among `base.appeal_choices` and wide
    weight among `base.wide_choices`, each the best on the validation window (see the module)."""
    from training.job import POPULARITY

    params = base.model.params
    appeals = tuple(dict.fromkeys(float(value) for value in base.appeal_choices)) or (
        float(params.get("item_appeal_weight", 0.0)),)
    wides = tuple(dict.fromkeys(float(value) for value in base.wide_choices)) or (
        float(params.get("wide_weight", 0.0)),)
    validation = make_holdout(sampled(dataset, max_users, base.seed), split, base.holdout_days, base.features)
    popularity = base.baselines.get(POPULARITY, ModelSpec("popularity", {"by_segment": False}))
    reference = validation_scores(popularity.build().fit(validation.train), validation, base.k)
    train = validation.train
    start_appeal = float(params.get("item_appeal_weight", appeals[0]))
    model = ModelSpec(base.model.kind,
                      {**params, "wide_weight": 0.0, "item_appeal_weight": start_appeal}).build()
    states: list[dict[str, np.ndarray]] = []
    curve: list[float] = []

    def after_epoch(epoch: int, fitted) -> None:
        if not base.choose_epochs:
            return
        states.append(fitted.embedding_state())
        fitted.set_item_appeal(start_appeal, train)
        curve.append(objective_value(validation_scores(fitted, validation, base.k), reference, base.k))

    model.fit(train, callback=after_epoch)
    epochs = model.epochs
    if base.choose_epochs:
        epochs = fewest_good_epochs(curve)
        model.rewind(states[epochs - 1], epochs, train)
    hits: dict[tuple[float, float], np.ndarray] = {}
    for wide in wides:
        model.set_wide(wide, train)
        for appeal in appeals:
            model.set_item_appeal(appeal, train)
            hits[(appeal, wide)] = top1_hits(model, validation)
    appeal, wide = lightest_within_noise(hits, base.seed)
    selection = Selection(epochs=int(epochs), item_appeal_weight=appeal, wide_weight=wide,
                          window=(validation.split.isoformat(), validation.as_of.isoformat()),
                          users=train.n_users, epoch_objectives=curve,
                          objectives={f"appeal:{a:g} wide:{w:g}": float(np.nanmean(values))
                                      for (a, w), values in hits.items()})
    echo(f"  chosen on {validation.split:%Y-%m-%d} .. {validation.as_of:%Y-%m-%d} ({train.n_users:,} "
         f"cardholders): {epochs} epochs, item appeal {appeal:g}, wide {wide:g} (objective by epoch "
         + " ".join(f"{value:.3f}" for value in curve) + "; top-1 hit rate "
         + ", ".join(f"{key} {value:.4f}" for key, value in selection.objectives.items()) + ")")
    return selection
