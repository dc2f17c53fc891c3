"""Training configuration parsing and the champion rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from recsys.metrics import bootstrap_interval
from training.config import TrainConfig, TrainConfigError, load_config
from training.job import Comparison, champion_decision

REPO = Path(__file__).resolve().parents[2]


def setting_names(document: dict, prefix: str = "") -> set[str]:
    """Every key path of a nested mapping, e.g. `features.half_life_days`."""
    names = set()
    for key, value in document.items():
        names.add(prefix + str(key))
        if isinstance(value, dict):
            names |= setting_names(value, f"{prefix}{key}.")
    return names


def test_the_example_config_lists_every_setting_at_its_default() -> None:
    path = REPO / "training" / "configs" / "default.yaml"
    assert load_config(path).to_dict() == TrainConfig().to_dict()
    listed, known = setting_names(yaml.safe_load(path.read_text())), setting_names(TrainConfig().to_dict())
    assert listed == known, f"default.yaml lacks {sorted(known - listed)}, has {sorted(listed - known)}"


@pytest.mark.parametrize(("data", "message"), [
    ({"modle": {}}, "unknown top-level key"),
    ({"evaluation": {"holdout_dayz": 3}}, "unknown evaluation key"),
    ({"evaluation": {"metric": "accuracy"}}, "metric 'accuracy'"),
    ({"evaluation": {"holdout_days": 0}}, "holdout_days must be > 0"),
    ({"features": {"half_life_days": -1}}, "half_life_days"),
    ({"features": {"half_life_days": "30"}}, "half_life_days must be a number"),
    ({"features": {"segment_by": "card_tier"}}, "segment_by must be a list"),
    ({"model": {"kind": "deep_magic"}}, "deep_magic"),
    ({"baselines": {"pop": {"params": {}}}}, "kind is missing"),
    ({"evaluation": {"metric": "map@5", "k": 10}}, "set k to 5"),
    ({"evaluation": {"holdout_days": "two weeks"}}, "evaluation.holdout_days must be a number"),
    ({"seed": "abc"}, "seed must be a number"),
    ({"refit": "yes"}, "refit must be true or false"),
    ({"wide_choices": [0.5, -1]}, "wide_choices must be numbers >= 0"),
    ({"wide_item_choices": ["weights", "tfidf"]},
     r"wide_item_choices must each be one of \['weights', 'presence'\]"),
    ({"wide_item_choices": "presence"}, "wide_item_choices must be a list"),
])
def test_bad_configs_name_the_problem(data: dict, message: str) -> None:
    with pytest.raises(TrainConfigError, match=message):
        TrainConfig.from_dict(data)


def test_bad_model_parameters_are_reported_when_the_model_is_built() -> None:
    config = TrainConfig.from_dict({"model": {"kind": "lightfm_hybrid", "params": {"los": "warp"}}})
    with pytest.raises(TrainConfigError, match="los"):
        config.model.build()


def test_model_params_merge_over_the_defaults() -> None:
    config = TrainConfig.from_dict({"model": {"params": {"epochs": 3}}})
    assert config.model.params["epochs"] == 3 and config.model.params["no_components"] == 32


def test_items_can_be_represented_by_their_features_only(tmp_path) -> None:
    path = tmp_path / "items.yaml"
    path.write_text("model:\n  params:\n    item_identity: false\n")
    model = load_config(path).model.build()
    assert model.item_identity is False and model.user_identity is False


def test_champion_moves_only_past_every_baseline_and_the_current_champion_beyond_noise() -> None:
    clear = {"popularity": Comparison(0.20, 0.10, 0.08, 0.12, 900)}
    moved, why = champion_decision(0.30, clear, None, None, "ndcg@10")
    assert moved and "no champion yet" in why
    within_noise = {"plain_hybrid": Comparison(0.29, 0.01, -0.004, 0.02, 900)}
    moved, why = champion_decision(0.30, {**clear, **within_noise}, None, None, "ndcg@10")
    assert not moved
    assert "plain_hybrid (0.2900; difference +0.0100, 95% paired-bootstrap interval [-0.0040, +0.0200] " \
           "over 900 holdout cardholders)" in why and "popularity" not in why
    moved, why = champion_decision(0.30, clear, 0.32, "4", "ndcg@10", (0.28, 0.32))
    assert not moved and "champion v4 (0.3200)" in why
    # above the champion, but the champion's value lies inside the candidate's interval: noise
    moved, why = champion_decision(0.33, clear, 0.32, "4", "ndcg@10", (0.31, 0.35))
    assert not moved and "[0.3100, 0.3500]" in why and "beyond noise" in why
    moved, why = champion_decision(0.36, clear, 0.32, "4", "ndcg@10", (0.33, 0.39))
    assert moved and "v4" in why


def test_paired_bootstrap_interval_separates_a_real_gain_from_noise() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(2000)
    mean, low, high = bootstrap_interval(base + 0.05 - base, seed=1)
    assert mean == pytest.approx(0.05) and low == pytest.approx(0.05) and high == pytest.approx(0.05)
    noise = rng.normal(0.0, 0.3, 2000)
    mean, low, high = bootstrap_interval(noise, seed=1)
    assert low < 0 < high and low < mean < high
    mean, low, high = bootstrap_interval(noise + 0.1, seed=1)
    assert 0 < low < mean < high
    assert bootstrap_interval(np.array([np.nan, 0.5]), seed=1)[0] == 0.5


def test_the_metric_cut_off_and_k_follow_each_other() -> None:
    assert TrainConfig.from_dict({"evaluation": {"metric": "map@5"}}).k == 5
    assert TrainConfig().with_overrides(metric="recall@20").k == 20
    assert TrainConfig().with_overrides(k=5).metric == "ndcg@5"
    assert TrainConfig().with_overrides(metric="auc", k=7).k == 7


def test_a_zero_k_override_is_refused_as_such() -> None:
    with pytest.raises(TrainConfigError, match="k must be >= 1, got 0"):
        TrainConfig().with_overrides(k=0)


def test_an_evaluation_section_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(TrainConfigError, match="evaluation must be a mapping"):
        TrainConfig.from_dict({"evaluation": 5})
