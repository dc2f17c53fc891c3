"""Training settings: features, the model, baselines, evaluation and registration; read from YAML."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from recsys.models import Recommender

from features.config import FeatureConfig, FeatureConfigError
from recsys.models.lightfm_hybrid import WIDE_ITEM_READINGS

METRIC_PATTERN = re.compile(r"^(precision|recall|ndcg|map|coverage)@(\d+)$|^auc$")
DEFAULT_MODEL = {
    "kind": "lightfm_hybrid",
    # cardholders as sums of feature embeddings only (no per-user identity): chosen on a time split of
    # a 20k synthetic world (nDCG@10 0.177 vs 0.150 with identities), and 4x faster to fit
    "params": {"no_components": 32, "loss": "warp", "learning_rate": 0.08, "epochs": 10, "num_threads": 2,
               "max_sampled": 10, "item_alpha": 1e-5, "user_alpha": 1e-5, "user_identity": False,
               "item_identity": True, "random_state": 42,
               # every reader also trained without their reading history: the spend, menu and push-open
               # features must then place them, which is all a non-reader has (non-readers' top-1 gap
               # closed on the shared independent world 0.36 -> 0.50, on a merchants world 0.14 -> 0.18)
               "history_dropout": 1.0,
               # used when appeal_choices is empty; otherwise each `recsys train` picks it on validation
               "item_appeal_weight": 1.0,
               # appeal from each item's push open rate, shrunk toward a prior read from its engagement
               # per day on offer (recsys/models/appeal.py): the open rate ranks pushed items by what
               # a push ranker is judged on; engagement alone is not corrected for how often it was pushed
               "item_appeal_source": "open_rate", "open_rate_prior_sends": 50.0,
               # used when wide_choices is empty; otherwise each `recsys train` picks it on validation
               "wide_weight": 0.0, "wide_l2": 1.0, "wide_rank": 128,
               # the wide part as a choice among the items on offer, its slopes with a rank-16 term
               # through the item features: top-1 gap closed +0.032 overall / +0.021 for non-readers
               # over ten synthetic world fits, level on the shared independent world (README)
               "wide_fit": "choice", "wide_choice_l2": 0.1, "wide_choice_max_users": 20_000,
               "wide_choice_rank": 16, "wide_choice_rank_l2": 0.01,
               # used when wide_item_choices is empty; otherwise each `recsys train` picks it on validation
               "wide_choice_items": "weights"},
}
# item appeal weights `recsys train` chooses among on a validation window before the holdout: against
# the hidden truth of every benchmarks/quality.py world, weights above 1 lowered the top-1 gap closed
# (most synthetic worlds peak at 0.25-0.5, the shared independent one at 1), while the validation
# objective kept preferring them; and 0 (the biases WARP learns from exposure alone) was 0.01-0.08
# below 0.25 at the same wide weight on every world, yet the objective picked it on three of them
APPEAL_CHOICES = (0.25, 0.5, 1.0)
# weights of the wide (per-item ridge) part chosen the same way; 0 switches it off
WIDE_CHOICES = (0.0, 0.125, 0.25, 0.5)
# readings of the item features the wide part's low-rank term is fitted with, chosen the same way: as the
# builder weighs them or as present / absent. Against the truth the weights won on all five synthetic
# quality.py worlds and presence on the shared independent one (top-1 gap closed 0.703 -> 0.719), and
# the validation objective ranked the two as the truth did on all six (README)
WIDE_ITEM_CHOICES = ("weights", "presence")
DEFAULT_BASELINES = {
    "popularity": {"kind": "popularity", "params": {"by_segment": False}},
    # the yardstick: an untuned LightFM on raw features; the champion gate refuses a model not above it
    "plain_hybrid": {"kind": "plain_hybrid", "params": {"num_threads": 2, "random_state": 42}},
    "popularity_segment": {"kind": "popularity", "params": {"by_segment": True}},
    # tuned like the model, on a 20k world (alpha scales the decayed weights, which are <= 1)
    "implicit_als": {"kind": "implicit_peer", "params": {"algorithm": "als", "factors": 16, "iterations": 15,
                                                         "regularization": 1.0, "alpha": 10.0,
                                                         "num_threads": 2}},
}


class TrainConfigError(ValueError):
    """A training configuration that is malformed, has unknown keys or out-of-range values."""


@dataclass(frozen=True)
class ModelSpec:
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Recommender:
        """A new, unfitted Recommender of this kind with these parameters."""
        from recsys.models import ModelError, model_class

        try:
            return model_class(self.kind)(**self.params)
        except TypeError as error:
            raise TrainConfigError(f"model {self.kind!r}: bad parameter ({error})") from error
        except ModelError as error:
            raise TrainConfigError(f"model {self.kind!r}: {error}") from error


@dataclass(frozen=True)
class TrainConfig:
    """Everything `recsys train` can be told, with defaults that work on a contract directory."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelSpec = field(default_factory=lambda: ModelSpec(**DEFAULT_MODEL))
    baselines: dict[str, ModelSpec] = field(
        default_factory=lambda: {name: ModelSpec(**spec) for name, spec in DEFAULT_BASELINES.items()})
    holdout_days: float = 14.0
    k: int = 10
    metric: str = "ndcg@10"
    refit: bool = True
    auc_max_users: int = 5000
    epoch_eval_max_users: int = 5000
    seed: int = 42
    appeal_choices: tuple[float, ...] = APPEAL_CHOICES
    wide_choices: tuple[float, ...] = WIDE_CHOICES
    wide_item_choices: tuple[str, ...] = WIDE_ITEM_CHOICES
    # the number of epochs is chosen on the validation window too (at most the model's `epochs`)
    choose_epochs: bool = True

    def __post_init__(self) -> None:
        if self.holdout_days <= 0:
            raise TrainConfigError(f"evaluation.holdout_days must be > 0, got {self.holdout_days}")
        if self.k < 1:
            raise TrainConfigError(f"evaluation.k must be >= 1, got {self.k}")
        if not METRIC_PATTERN.match(self.metric):
            raise TrainConfigError(
                f"metric {self.metric!r} is not one of precision@K, recall@K, ndcg@K, map@K, coverage@K, auc"
            )
        for name in ("appeal_choices", "wide_choices"):
            values = getattr(self, name)
            if any(isinstance(value, bool) or not (isinstance(value, int | float) and value >= 0)
                   for value in values):
                raise TrainConfigError(f"{name} must be numbers >= 0, got {list(values)}")
        if any(value not in WIDE_ITEM_READINGS for value in self.wide_item_choices):
            raise TrainConfigError(f"wide_item_choices must each be one of {list(WIDE_ITEM_READINGS)}, "
                                   f"got {list(self.wide_item_choices)}")
        if "@" in self.metric and int(self.metric.split("@")[1]) != self.k:
            raise TrainConfigError(
                f"metric {self.metric!r} is measured at a cut-off other than k={self.k}: "
                f"set k to {self.metric.split('@')[1]} or choose {self.metric.split('@')[0]}@{self.k}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": self.features.to_dict(),
            "model": {"kind": self.model.kind, "params": dict(self.model.params)},
            "baselines": {name: {"kind": spec.kind, "params": dict(spec.params)}
                          for name, spec in self.baselines.items()},
            "evaluation": {"holdout_days": self.holdout_days, "k": self.k, "metric": self.metric,
                           "auc_max_users": self.auc_max_users,
                           "epoch_eval_max_users": self.epoch_eval_max_users},
            "refit": self.refit,
            "seed": self.seed,
            "appeal_choices": list(self.appeal_choices),
            "wide_choices": list(self.wide_choices),
            "wide_item_choices": list(self.wide_item_choices),
            "choose_epochs": self.choose_epochs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainConfig:
        data = dict(data or {})
        known = {"features", "model", "baselines", "evaluation", "refit", "seed", "appeal_choices",
                 "wide_choices", "wide_item_choices", "choose_epochs"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainConfigError(f"unknown top-level key(s) {unknown}; known: {sorted(known)}")
        if not isinstance(data.get("evaluation") or {}, dict):
            raise TrainConfigError("evaluation must be a mapping, e.g. {k: 10, metric: ndcg@10}")
        evaluation = dict(data.get("evaluation") or {})
        known_eval = {"holdout_days", "k", "metric", "auc_max_users", "epoch_eval_max_users"}
        if set(evaluation) - known_eval:
            raise TrainConfigError(
                f"unknown evaluation key(s) {sorted(set(evaluation) - known_eval)}; "
                f"known: {sorted(known_eval)}"
            )
        try:
            features = FeatureConfig.from_dict(data.get("features"))
        except (FeatureConfigError, TypeError) as error:
            raise TrainConfigError(f"features: {error}") from error
        kwargs: dict[str, Any] = {"features": features}
        if "model" in data:
            kwargs["model"] = _spec("model", data["model"], DEFAULT_MODEL)
        if "baselines" in data:
            baselines = data["baselines"] or {}
            if not isinstance(baselines, dict):
                raise TrainConfigError("baselines must be a mapping of name -> {kind, params}")
            kwargs["baselines"] = {str(name): _spec(f"baselines.{name}", spec, None)
                                   for name, spec in baselines.items()}
        for key in ("refit", "seed", "choose_epochs"):
            if key in data:
                kwargs[key] = data[key]
        for key in ("appeal_choices", "wide_choices", "wide_item_choices"):
            if key in data:
                choices = data[key] or []
                if not isinstance(choices, list | tuple):
                    raise TrainConfigError(f"{key} must be a list, got {choices!r}")
                kwargs[key] = tuple(choices)
        chosen = str(evaluation.get("metric", ""))
        if "k" not in evaluation and "@" in chosen and METRIC_PATTERN.match(chosen):
            evaluation["k"] = int(chosen.split("@")[1])
        kwargs.update(evaluation)
        for key in ("holdout_days", "k", "auc_max_users", "epoch_eval_max_users", "seed"):
            value = kwargs.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                where = f"evaluation.{key}" if key in evaluation else key
                raise TrainConfigError(f"{where} must be a number, got {value!r}")
        for key in ("refit", "choose_epochs"):
            if not isinstance(kwargs.get(key, True), bool):
                raise TrainConfigError(f"{key} must be true or false, got {kwargs[key]!r}")
        try:
            return cls(**kwargs)
        except TypeError as error:
            raise TrainConfigError(f"bad training configuration: {error}") from error

    def with_overrides(self, metric: str | None = None, k: int | None = None) -> TrainConfig:
        """The config with `--metric` / `--k` applied; a metric's own @K sets k unless k is given, and
        a new k moves the default metric's cut-off along."""
        from dataclasses import replace

        if metric is not None and k is None and "@" in metric and METRIC_PATTERN.match(metric):
            k = int(metric.split("@")[1])
        if metric is None and k is not None and "@" in self.metric:
            metric = f"{self.metric.split('@')[0]}@{k}"
        return replace(self, metric=metric if metric is not None else self.metric,
                       k=k if k is not None else self.k)


def _spec(where: str, value: Any, defaults: dict[str, Any] | None) -> ModelSpec:
    if not isinstance(value, dict) or set(value) - {"kind", "params"}:
        raise TrainConfigError(f"{where} must be a mapping with 'kind' and optional 'params'")
    kind = value.get("kind") or (defaults or {}).get("kind")
    if not kind:
        raise TrainConfigError(f"{where}.kind is missing (lightfm_hybrid, popularity or implicit_peer)")
    params = dict((defaults or {}).get("params", {})) if kind == (defaults or {}).get("kind") else {}
    params.update(value.get("params") or {})
    from recsys.models import MODEL_KINDS

    if kind not in MODEL_KINDS:
        raise TrainConfigError(f"{where}.kind {kind!r} is not one of {sorted(MODEL_KINDS)}")
    return ModelSpec(kind=kind, params=params)


def load_config(path: str | Path | None) -> TrainConfig:
    """The configuration in a YAML file (None: the defaults)."""
    if path is None:
        return TrainConfig()
    path = Path(path)
    if not path.is_file():
        raise TrainConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise TrainConfigError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise TrainConfigError(f"config file {path} must hold a mapping at the top level")
    try:
        return TrainConfig.from_dict(data)
    except TrainConfigError as error:
        raise TrainConfigError(f"{path}: {error}") from error
