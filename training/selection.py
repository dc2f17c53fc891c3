"""Settings `recsys train` chooses on a validation window before the holdout, from one sampled fit:
the number of epochs, the item appeal weight, the weight of the wide part and how its low-rank term
reads the item features.

The model is fitted once, on a seeded sample of at most `max_users` cardholders at `split -
holdout_days`, scored after every epoch on what they did up to `split` (the window and objective of
`--tune`), and rewound to the fewest epochs whose objective is within `EPOCH_TOLERANCE` of the best;
every item appeal x wide weight pair is then applied to that state and scored, for each reading of
the item features the wide part is fitted with, and the best is kept. No holdout event is seen.
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
from recsys.models import Recommender
from recsys.models.lightfm_hybrid import LightFMHybrid
from training.config import ModelSpec, TrainConfig
from training.evaluate import Holdout, make_holdout, recommend_holdout
from training.tune import objective_replicates, sampled

logger = logging.getLogger(__name__)

SELECTION_MAX_USERS = 20_000
# objective units (a mean of two gains over no skill, ~0.5-0.8 on the worlds measured); seeds of the
# same configuration differ by about this much, so fewer epochs within it are not worse
EPOCH_TOLERANCE = 0.01
MIN_EPOCHS = 3


@dataclass(frozen=True)
class Selection:
    """What was chosen and the validation objective of every option tried."""

    epochs: int
    item_appeal_weight: float
    wide_weight: float
    window: tuple[str, str]
    users: int
    wide_choice_items: str | None = None  # None: not chosen (the wide part does not read item features)
    epoch_objectives: list[float] = field(default_factory=list)
    # "appeal:A wide:W" (with "items:R " in front when readings were compared) -> objective
    objectives: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready, for the bundle, the report and MLflow."""
        chosen = {} if self.wide_choice_items is None else {"wide_choice_items": self.wide_choice_items}
        return {"epochs": self.epochs, "item_appeal_weight": self.item_appeal_weight,
                "wide_weight": self.wide_weight, **chosen, "window": list(self.window), "users": self.users,
                "epoch_objectives": [round(value, 4) for value in self.epoch_objectives],
                "objectives": {key: round(value, 4) for key, value in self.objectives.items()}}

    def apply(self, config: TrainConfig) -> TrainConfig:
        """`config` with the chosen epochs and weights in its model parameters."""
        params = {**config.model.params, "epochs": self.epochs, "item_appeal_weight": self.item_appeal_weight,
                  "wide_weight": self.wide_weight}
        if self.wide_choice_items is not None:
            params["wide_choice_items"] = self.wide_choice_items
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


def best_pair(objectives: dict[tuple[float, float], float]) -> tuple[float, float]:
    """(appeal, wide) with the best objective; an objective that could not be measured (NaN) is never
    preferred, and of equal ones the lower wide weight, then the lower appeal, is kept."""
    return max(objectives, key=lambda pair: (objectives[pair] == objectives[pair], objectives[pair],
                                             -pair[1], -pair[0]))


@dataclass(frozen=True)
class ValidationFit:
    """The choice with the sampled fit it was made on and its window (`fit_on_validation` sets the fit to
    the chosen settings)."""

    selection: Selection
    model: Recommender
    validation: Holdout


def choose_on_validation(dataset: Dataset, split: pd.Timestamp, base: TrainConfig,
                         max_users: int = SELECTION_MAX_USERS,
                         echo: Callable[[str], None] = logger.info) -> Selection:
    """Epochs (when `base.choose_epochs`), item appeal weight among `base.appeal_choices` and wide
    weight among `base.wide_choices`, each the best on the validation window (see the module)."""
    return _scored_fit(dataset, split, base, max_users, echo).selection


def fit_on_validation(dataset: Dataset, split: pd.Timestamp, base: TrainConfig,
                      max_users: int = SELECTION_MAX_USERS,
                      echo: Callable[[str], None] = logger.info) -> ValidationFit:
    """`choose_on_validation`, keeping the validation fit (left at the chosen epochs and weights) and
    the window it was scored on, for diagnostics that study that fit further."""
    fitted = _scored_fit(dataset, split, base, max_users, echo)
    chosen, model, train = fitted.selection, fitted.model, fitted.validation.train
    if chosen.wide_choice_items is not None:
        model.set_wide_items(chosen.wide_choice_items)
    model.set_wide(chosen.wide_weight, train)
    model.set_item_appeal(chosen.item_appeal_weight, train)
    return fitted


def _scored_fit(dataset: Dataset, split: pd.Timestamp, base: TrainConfig, max_users: int,
                echo: Callable[[str], None]) -> ValidationFit:
    """The choice with the validation fit left at the last option scored: setting it back to the chosen
    one may fit the wide part again, which only `fit_on_validation`'s callers need."""
    from training.job import POPULARITY

    params = base.model.params
    appeals = tuple(dict.fromkeys(float(value) for value in base.appeal_choices)) or (
        float(params.get("item_appeal_weight", 0.0)),)
    wides = tuple(dict.fromkeys(float(value) for value in base.wide_choices)) or (
        float(params.get("wide_weight", 0.0)),)
    validation = make_holdout(sampled(dataset, max_users, base.seed), split, base.holdout_days, base.features)
    popularity = base.baselines.get(POPULARITY, ModelSpec("popularity", {"by_segment": False}))
    popular = popularity.build().fit(validation.train)
    reference_ndcg = metrics.per_user("ndcg", recommend_holdout(popular, validation, base.k),
                                      validation.relevant, base.k)
    train = validation.train
    unit = np.ones((1, train.n_users))  # every cardholder weighed once: the objective itself
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
        curve.append(float(objective_replicates(fitted, validation, reference_ndcg, unit, base.k)[0]))

    model.fit(train, callback=after_epoch)
    epochs = model.epochs
    if base.choose_epochs:
        epochs = fewest_good_epochs(curve)
        model.rewind(states[epochs - 1], epochs, train)
    readings = wide_readings(model, base, wides)
    by_reading: dict[str | None, dict[tuple[float, float], float]] = {}
    for reading in readings:
        if reading is not None:
            model.set_wide_items(reading)
        objectives = by_reading[reading] = {}
        for wide in wides:
            if not wide and len(by_reading) > 1:
                # without the wide part the reading changes nothing: the first reading's figures stand
                first = by_reading[readings[0]]
                objectives.update({pair: value for pair, value in first.items() if not pair[1]})
                continue
            model.set_wide(wide, train)
            for appeal in appeals:
                model.set_item_appeal(appeal, train)
                objectives[(appeal, wide)] = float(
                    objective_replicates(model, validation, reference_ndcg, unit, base.k)[0])
    reading, (appeal, wide) = best_reading(by_reading)
    prefix = (lambda name: "") if len(readings) == 1 else (lambda name: f"items:{name} ")
    selection = Selection(epochs=int(epochs), item_appeal_weight=appeal, wide_weight=wide,
                          window=(validation.split.isoformat(), validation.as_of.isoformat()),
                          users=train.n_users, wide_choice_items=reading, epoch_objectives=curve,
                          objectives={f"{prefix(name)}appeal:{a:g} wide:{w:g}": v
                                      for name, objectives in by_reading.items()
                                      for (a, w), v in objectives.items()})
    items = "" if reading is None else f", items read as {reading}"
    echo(f"  chosen on {validation.split:%Y-%m-%d} .. {validation.as_of:%Y-%m-%d} ({train.n_users:,} "
         f"cardholders): {epochs} epochs, item appeal {appeal:g}, wide {wide:g}{items} (objective "
         f"{by_reading[reading][(appeal, wide)]:.4f}; by epoch " + " ".join(f"{value:.3f}" for value in curve)
         + "; " + ", ".join(f"{key} {value:.4f}" for key, value in selection.objectives.items()) + ")")
    return ValidationFit(selection=selection, model=model, validation=validation)


def wide_readings(model: LightFMHybrid, base: TrainConfig,
                  wides: tuple[float, ...]) -> tuple[str | None, ...]:
    """The readings of the item features to compare (`base.wide_item_choices`), or (None,) when there
    is nothing to compare: no wide weight above 0, or a wide part that does not read item features."""
    if not (model.reads_item_features and any(wides) and base.wide_item_choices):
        return (None,)
    return tuple(dict.fromkeys(base.wide_item_choices))


def best_reading(by_reading: dict[str | None, dict[tuple[float, float], float]]
                 ) -> tuple[str | None, tuple[float, float]]:
    """The reading whose best pair (`best_pair`) has the best objective, with that pair; of equal ones
    (or unmeasured, NaN) the first reading is kept."""
    best = {reading: best_pair(objectives) for reading, objectives in by_reading.items()}
    score = {reading: by_reading[reading][pair] for reading, pair in best.items()}
    order = list(by_reading)
    reading = max(order, key=lambda name: (score[name] == score[name], score[name], -order.index(name)))
    return reading, best[reading]
