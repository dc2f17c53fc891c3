"""`recsys train --tune`: a seeded TPE search of feature families and model settings on a validation
split carved from the training period, scored on readers and non-readers alike.

The validation split ends where the holdout begins (`split`), so no trial sees a holdout event: it is
fitted at `split - validation_days` and scored on what happened up to `split`. The features are built
once with every family at weight 1; a trial rescales the columns by its own family weights, which is
what building them with those weights does. The objective is the mean of two gains over no skill on the
same validation window: readers' nDCG@k gain over popularity and non-readers' push-open Gini
(2 AUC - 1 over every push they were sent, opened or ignored): what the product promises, the right push
for cardholders who never read too, measured on far more of them than hold out an opened push.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from features.builder import ITEM_FAMILIES, USER_FAMILIES, family_weights, weighted
from features.config import FeatureConfig
from features.loader import Dataset
from recsys import metrics
from recsys.models import Recommender
from recsys.models.lightfm_hybrid import WIDE_FITS, WIDE_ITEM_READINGS
from training.config import APPEAL_CHOICES, WIDE_CHOICES, ModelSpec, TrainConfig
from training.evaluate import Holdout, make_holdout, push_auc, recommend_holdout

logger = logging.getLogger(__name__)

FAMILY_CHOICES: dict[str, tuple[float, ...]] = {
    "profile_weight": (0.0, 1.0),
    "spend_category_weight": (0.0, 1.0, 3.0),
    "spend_mcc_weight": (0.0, 1.0, 3.0, 6.0, 10.0),
    "spend_visits_weight": (0.0, 1.0, 3.0, 6.0, 10.0),
    "menu_weight": (0.0, 1.0, 3.0),
    "menu_share_weight": (0.0, 1.0, 3.0, 6.0),
    "read_topic_weight": (0.0, 1.0, 3.0),
    "open_topic_weight": (0.0, 1.0, 3.0),
    "item_tag_weight": (1.0, 3.0),  # items' tags are what most items have: never left out
    "item_title_weight": (0.0, 1.0),
}
COMPONENTS = (16, 32, 48, 64)
SEARCHED_LOSSES = ("warp", "bpr", "logistic")
DROPOUTS = (0.0, 0.5, 1.0)
MAX_TRIALS = 60


@dataclass(frozen=True)
class Trial:
    """One evaluated configuration: its number, settings, validation scores and fit time."""

    number: int
    params: dict[str, Any]
    objective: float
    scores: dict[str, float]
    seconds: float


@dataclass
class TuneResult:
    """The search: validation window, every trial, the winner and the configuration it gives."""

    validation_start: pd.Timestamp
    validation_end: pd.Timestamp
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None
    config: TrainConfig | None = None
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The chosen settings and how they were found (JSON-ready; saved in the bundle and the report)."""
        best = self.best
        return {
            "validation": [self.validation_start.isoformat(), self.validation_end.isoformat()],
            "trials": len(self.trials), "seconds": round(self.seconds, 1),
            "objective": "mean of readers' nDCG@k gain over popularity and non-readers' push-open Gini",
            "best_trial": None if best is None else best.number,
            "best_objective": None if best is None else best.objective,
            "best_scores": {} if best is None else best.scores,
            "chosen": {} if best is None else best.params,
        }


def suggest(trial: Any, base: TrainConfig) -> dict[str, Any]:
    """A trial's settings: family weights, dimensions, loss, epochs, learning rate, regularisation and
    the wide part (its weight, how its slopes are fitted and how they read the item features)."""
    params: dict[str, Any] = {f"features.{name}": trial.suggest_categorical(name, choices)
                              for name, choices in FAMILY_CHOICES.items()}
    params["model.no_components"] = trial.suggest_categorical("no_components", COMPONENTS)
    params["model.loss"] = trial.suggest_categorical("loss", SEARCHED_LOSSES)
    params["model.epochs"] = trial.suggest_int("epochs", 5, 30, step=5)
    params["model.learning_rate"] = trial.suggest_float("learning_rate", 0.01, 0.15, log=True)
    alpha = trial.suggest_float("alpha", 1e-8, 1e-3, log=True)
    params["model.item_alpha"] = params["model.user_alpha"] = alpha
    params["model.normalize_features"] = trial.suggest_categorical("normalize_features", (True, False))
    params["model.history_dropout"] = trial.suggest_categorical("history_dropout", DROPOUTS)
    params["model.item_appeal_weight"] = trial.suggest_categorical("item_appeal_weight", APPEAL_CHOICES)
    params["model.wide_weight"] = trial.suggest_categorical("wide_weight", WIDE_CHOICES)
    params["model.wide_fit"] = trial.suggest_categorical("wide_fit", WIDE_FITS)
    params["model.wide_choice_items"] = trial.suggest_categorical("wide_choice_items", WIDE_ITEM_READINGS)
    return params


def apply(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """`base` with a trial's `features.*` and `model.*` settings."""
    features = replace(base.features, **{key.split(".", 1)[1]: value for key, value in params.items()
                                          if key.startswith("features.")})
    model = dict(base.model.params)
    model.update({key.split(".", 1)[1]: value for key, value in params.items() if key.startswith("model.")})
    return replace(base, features=features, model=ModelSpec(base.model.kind, model))


def reweighted(validation: Holdout, features: FeatureConfig) -> Holdout:
    """The validation split with user and item feature columns scaled by `features`' family weights."""
    train = validation.train
    user = weighted(train.user_features, family_weights(train.user_feature_names, USER_FAMILIES, features))
    item = weighted(train.item_features, family_weights(train.item_feature_names, ITEM_FAMILIES, features))
    return replace(validation, train=replace(train, user_features=user, item_features=item))


def validation_scores(model: Recommender, holdout: Holdout, k: int) -> dict[str, float]:
    """nDCG@k of readers and of non-readers (on the pushes they opened) over the evaluated cardholders,
    and the pooled AUC of opened vs ignored pushes of non-readers (far more of them have pushes)."""
    values = metrics.per_user("ndcg", recommend_holdout(model, holdout, k), holdout.relevant, k)
    out = {}
    for name, members in (("readers", ~holdout.cold), ("non_readers", holdout.cold)):
        out[f"{name}.ndcg@{k}"] = float(np.nanmean(values[members])) if members.any() else float("nan")
        out[f"{name}.users"] = float(members.sum())
    out["non_readers.push_auc"], out["non_readers.push_users"] = push_auc(model, holdout, holdout.pushes.cold)
    return out


def objective_value(scores: dict[str, float], reference: dict[str, float], k: int) -> float:
    """Mean of two gains over no skill: readers' nDCG@k over popularity's, minus 1, and non-readers'
    push-open Gini (2 AUC - 1, 0 for a random order); a term that cannot be measured is left out."""
    readers = scores[f"readers.ndcg@{k}"] / reference[f"readers.ndcg@{k}"] - 1.0 \
        if reference[f"readers.ndcg@{k}"] > 0 else float("nan")
    gini = 2.0 * scores["non_readers.push_auc"] - 1.0
    return float(mean_of_gains(np.array([[readers], [gini]]))[0])


def objective_replicates(model: Recommender, validation: Holdout, reference_ndcg: np.ndarray,
                         weights: np.ndarray, k: int) -> np.ndarray:
    """`objective_value` under each row of `weights` [replicates, training rows] (bootstrap counts of
    the cardholders; a row of ones gives the objective itself), against popularity's per-cardholder
    nDCG@k `reference_ndcg`: each cardholder's terms are computed once for every row."""
    return mean_of_gains(objective_terms(model, validation, reference_ndcg, weights, k))


def objective_terms(model: Recommender, validation: Holdout, reference_ndcg: np.ndarray,
                    weights: np.ndarray, k: int) -> np.ndarray:
    """The objective's two terms [2, replicates] under each row of `weights` (see
    `objective_replicates`): readers' nDCG@k gain over popularity, then non-readers' push-open Gini;
    NaN where a term has nothing to measure."""
    terms = np.full((2, len(weights)), np.nan)
    readers = ~validation.cold
    if readers.any():
        ndcg = metrics.per_user("ndcg", recommend_holdout(model, validation, k), validation.relevant, k)
        defined = readers & ~np.isnan(ndcg) & ~np.isnan(reference_ndcg)
        reader_weights = weights[:, validation.rows[defined]]
        with np.errstate(invalid="ignore", divide="ignore"):
            terms[0] = reader_weights @ ndcg[defined] / (reader_weights @ reference_ndcg[defined]) - 1.0
    pushes = validation.pushes
    rows = pushes.rows[pushes.cold]
    if rows.size:
        factors = model.user_factors(rows, validation.train.user_features[rows])
        scores = np.einsum("ij,ij->i", factors, model.item_factors()[pushes.items[pushes.cold]])
        terms[1] = 2.0 * metrics.weighted_auc(scores, pushes.opened[pushes.cold], weights[:, rows]) - 1.0
    return terms


def mean_of_gains(terms: np.ndarray) -> np.ndarray:
    """The objective from its terms [terms, replicates]: their mean where measured (finite), NaN where
    no term is."""
    finite = np.isfinite(terms)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, terms, 0.0).sum(axis=0) / finite.sum(axis=0)


def tune(dataset: Dataset, split: pd.Timestamp, base: TrainConfig, budget_minutes: float,
         max_trials: int = MAX_TRIALS, validation_days: float | None = None,
         echo: Callable[[str], None] = logger.info) -> TuneResult:
    """Search settings on the window `(split - validation_days, split]` (default: the holdout length),
    for at most `budget_minutes` or `max_trials` trials; the first trial is `base` itself."""
    import optuna

    from training.job import POPULARITY

    started = time.perf_counter()
    days = base.holdout_days if validation_days is None else validation_days
    every_family = replace(base.features, **dict.fromkeys(FAMILY_CHOICES, 1.0))
    if base.model.kind != "lightfm_hybrid":
        raise ValueError(f"--tune searches lightfm_hybrid settings, not the config's {base.model.kind!r}")
    validation = make_holdout(dataset, split, days, every_family)
    result = TuneResult(validation_start=validation.split, validation_end=validation.as_of)
    k = base.k
    popularity = base.baselines.get(POPULARITY, ModelSpec("popularity", {"by_segment": False}))
    reference = validation_scores(popularity.build().fit(validation.train), validation, k)
    echo(f"  tuning on {validation.split:%Y-%m-%d} .. {validation.as_of:%Y-%m-%d}: "
         f"{int(reference['readers.users']):,} readers, {int(reference['non_readers.users']):,} "
         f"non-readers ({int(reference['non_readers.push_users']):,} with pushes); popularity's readers' "
         f"nDCG@{k} {reference[f'readers.ndcg@{k}']:.4f}")

    def run(trial: optuna.Trial) -> float:
        params = suggest(trial, base)
        config = apply(base, params)
        begin = time.perf_counter()
        data = reweighted(validation, config.features)
        try:
            model = config.model.build().fit(data.train)
        except ValueError as error:  # e.g. LightFM diverging on large unnormalised feature values
            echo(f"    trial {trial.number:>3}: failed ({error})")
            result.trials.append(Trial(trial.number, params, float("nan"), {}, time.perf_counter() - begin))
            return -np.inf
        scores = validation_scores(model, data, k)
        value = objective_value(scores, reference, k)
        result.trials.append(Trial(trial.number, params, value, scores, time.perf_counter() - begin))
        echo(f"    trial {trial.number:>3}: objective {value:.4f} (readers' nDCG@{k} "
             f"{scores[f'readers.ndcg@{k}']:.4f}, non-readers' push AUC "
             f"{scores['non_readers.push_auc']:.4f}) "
             f"{time.perf_counter() - begin:5.1f} s")
        return value if value == value else -np.inf

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=base.seed))
    study.enqueue_trial(_as_trial_values(base))
    left = budget_minutes * 60.0 - (time.perf_counter() - started)
    study.optimize(run, n_trials=max_trials, timeout=max(1.0, left))
    result.best = max(result.trials, key=lambda trial: (trial.objective == trial.objective, trial.objective))
    result.config = apply(base, result.best.params)
    result.seconds = time.perf_counter() - started
    return result


def _as_trial_values(config: TrainConfig) -> dict[str, Any]:
    """The base configuration in the search space's terms, tried first so tuning never does worse on
    validation than the defaults (values outside a choice list keep the nearest choice)."""
    def nearest(choices: tuple[float, ...], value: float) -> float:
        return min(choices, key=lambda choice: abs(choice - value))

    values: dict[str, Any] = {name: nearest(choices, getattr(config.features, name))
                              for name, choices in FAMILY_CHOICES.items()}
    params = config.model.params
    loss = params.get("loss", "warp")
    values.update({
        "no_components": int(nearest(COMPONENTS, int(params.get("no_components", 32)))),
        "loss": loss if loss in SEARCHED_LOSSES else "warp",
        "epochs": int(min(30, max(5, round(int(params.get("epochs", 10)) / 5) * 5))),
        "learning_rate": float(min(0.15, max(0.01, float(params.get("learning_rate", 0.05))))),
        "alpha": float(min(1e-3, max(1e-8, float(params.get("item_alpha", 1e-5)) or 1e-8))),
        "normalize_features": bool(params.get("normalize_features", True)),
        "history_dropout": nearest(DROPOUTS, float(params.get("history_dropout", 0.0))),
        "item_appeal_weight": nearest(APPEAL_CHOICES, float(params.get("item_appeal_weight", 0.0))),
        "wide_weight": nearest(WIDE_CHOICES, float(params.get("wide_weight", 0.0))),
        "wide_fit": params.get("wide_fit", "ridge"),
        "wide_choice_items": params.get("wide_choice_items", "weights"),
    })
    return values


def sampled(dataset: Dataset, max_users: int, seed: int) -> Dataset:
    """The dataset restricted to a seeded sample of at most `max_users` cardholders (all of them
    when there are no more), every event table cut to those cardholders."""
    ids = dataset.cardholders["user_id"].astype(str).to_numpy(dtype=object)
    if len(ids) <= max_users:
        return dataset
    keep = set(np.random.default_rng(seed).choice(ids, size=max_users, replace=False))

    def members(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.loc[frame["user_id"].astype(str).isin(keep).to_numpy()] if len(frame) else frame

    return replace(dataset, cardholders=members(dataset.cardholders),
                   transactions=members(dataset.transactions), menu_clicks=members(dataset.menu_clicks),
                   article_reads=members(dataset.article_reads), push_log=members(dataset.push_log))
