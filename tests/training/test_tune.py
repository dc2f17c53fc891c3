"""`recsys train --tune` on a small synthetic world: the search never looks past the holdout split, its
trials are nested MLflow runs under the training run, and the chosen settings travel in the bundle."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from features.loader import Dataset, load_dataset
from recsys.bundle import ModelBundle
from training.config import TrainConfig
from training.tune import tune

pytestmark = pytest.mark.slow

FAST = TrainConfig.from_dict({"model": {"kind": "lightfm_hybrid", "params": {"num_threads": 1}},
                              "baselines": {"popularity": {"kind": "popularity"}}})


def before(dataset: Dataset, split: pd.Timestamp) -> Dataset:
    """`dataset` with every event after `split` removed, and opens after it not yet happened."""
    pushes = dataset.push_log.loc[(dataset.push_log["sent_ts"] <= split).to_numpy()].copy()
    pushes["opened_ts"] = pushes["opened_ts"].where(pushes["opened_ts"] <= split)
    return replace(dataset, push_log=pushes, **{
        name: frame.loc[(frame["ts"] <= split).to_numpy()]
        for name in ("transactions", "menu_clicks", "article_reads") if len(frame := dataset.table(name))})


def test_tuning_never_sees_the_holdout_period(small_world: Path) -> None:
    dataset = load_dataset(small_world)
    as_of = dataset.time_range()[1]
    split = as_of - pd.Timedelta(days=FAST.holdout_days)
    searched = tune(dataset, split, FAST, budget_minutes=5, max_trials=3)
    assert searched.validation_end == split
    assert searched.validation_start == split - pd.Timedelta(days=FAST.holdout_days)
    assert len(searched.trials) == 3 and searched.best in searched.trials
    assert all(trial.scores["readers.users"] > 0 and trial.scores["non_readers.push_users"] > 0
               for trial in searched.trials)
    # the first trial is the configuration as given, so tuning never does worse than it on validation
    assert searched.trials[0].params["model.no_components"] == FAST.model.params["no_components"]
    assert searched.trials[0].params["features.item_tag_weight"] == FAST.features.item_tag_weight
    assert all(t.params["features.item_tag_weight"] in (1.0, 3.0) for t in searched.trials)
    assert searched.trials[0].params["model.wide_fit"] == FAST.model.params.get("wide_fit", "ridge")
    assert all(t.params["model.wide_fit"] in ("ridge", "choice") for t in searched.trials)
    assert searched.trials[0].params["model.wide_choice_items"] == FAST.model.params["wide_choice_items"]
    assert all(t.params["model.wide_choice_items"] in ("weights", "presence") for t in searched.trials)
    # the same search on data that ends at the split: identical trials, so nothing after it was used
    blind = tune(before(dataset, split), split, FAST, budget_minutes=5, max_trials=3)
    assert [(t.params, t.objective) for t in blind.trials] == [
        (t.params, t.objective) for t in searched.trials]
    assert searched.config.model.params["no_components"] == searched.best.params["model.no_components"]


def test_train_tune_logs_trials_as_nested_runs_and_saves_the_choice(small_world: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from recsys.config import get_settings
    from training.job import TrainOptions, train

    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECSYS_MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    try:
        result = train(TrainOptions(data_dir=small_world, config=FAST, experiment="tune-test",
                                    model_out=tmp_path / "model", register=False, progress=False,
                                    tune_minutes=0.15))
        tracking_uri = get_settings().tracking_uri
    finally:
        get_settings.cache_clear()
    assert result.tuning is not None and result.tuning.trials
    children = MlflowClient(tracking_uri).search_runs(
        [MlflowClient(tracking_uri).get_run(result.run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert len(children) == len(result.tuning.trials)
    assert all("objective" in child.data.metrics and "model.no_components" in child.data.params
               for child in children)
    chosen = result.tuning.best.params
    bundle = ModelBundle.load(tmp_path / "model")
    assert bundle.params["tuning"]["chosen"] == chosen
    assert bundle.params["model"]["params"]["no_components"] == chosen["model.no_components"]
    assert bundle.params["features"]["spend_mcc_weight"] == chosen["features.spend_mcc_weight"]
    assert bundle.model.params()["no_components"] == chosen["model.no_components"]
    assert result.summary["tuning"]["best_trial"] == result.tuning.best.number
    assert result.tuning.validation_end == result.split


def test_a_trial_fits_the_wide_part_as_the_choice_logit(small_world: Path) -> None:
    dataset = load_dataset(small_world)
    split = dataset.time_range()[1] - pd.Timedelta(days=FAST.holdout_days)
    base = TrainConfig.from_dict({"model": {"kind": "lightfm_hybrid", "params": {
        "num_threads": 1, "wide_fit": "choice", "wide_weight": 0.5}},
        "baselines": {"popularity": {"kind": "popularity"}}})
    searched = tune(dataset, split, base, budget_minutes=5, max_trials=1)
    first = searched.trials[0]
    assert (first.params["model.wide_fit"], first.params["model.wide_weight"]) == ("choice", 0.5)
    assert first.objective is not None and pd.notna(first.objective)
    assert searched.config.model.params["wide_fit"] == "choice"
