"""`recsys caps simulate` per partition on a LocalCluster: the report of the whole world's replay,
with and without a model, on a sample, and the exact activity terciles it needs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from recsys.caps.policy import default_policy, parse_policy
from simulation.partitioned import simulate_partitioned
from simulation.replay import CountHistogram, load_world
from simulation.runner import ScheduleConfig, decision_variants, simulate, slot_draws

pytestmark = [pytest.mark.slow]

CONFIG = ScheduleConfig(days=8, seed=11)
STRICT = parse_policy({"version": "test", "name": "strict", "min_gap": "2d",
                       "limits": [{"name": "daily", "window": "calendar_day", "max": 1}],
                       "fatigue": {"after_unopened": 2, "pause": "7d"}}, "test policy")


def _same(a, b, where: str = "report") -> None:
    """Equal, floats up to the order they were added in (buckets add partial sums)."""
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{index}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-9), where
    else:
        assert a == b, where


def _numbers(report) -> dict:
    data = report.to_dict()
    for outcome in data["outcomes"]:
        outcome.pop("seconds")
    return data


def _truth(world: Path) -> Path:
    return world.parent / "world.truth.npz"


def test_draws_follow_the_population_row_whatever_the_rows_around_it() -> None:
    everyone = slot_draws(3, 4, 1, np.arange(1000))
    some = np.array([999, 0, 512])
    assert np.array_equal(slot_draws(3, 4, 1, some), everyone[:, some])
    assert not np.array_equal(slot_draws(3, 4, 2, some), everyone[:, some])
    assert 0.0 <= everyone.min() and everyone.max() < 1.0 and abs(everyone.mean() - 0.5) < 0.03


def test_terciles_from_added_histograms_are_numpy_quantiles() -> None:
    rng = np.random.default_rng(2)
    for size in (1, 2, 7, 100, 1001):
        values = rng.integers(0, 30, size)
        parts = np.array_split(values, 4)
        merged = CountHistogram.combine([CountHistogram.of(part) for part in parts])
        assert merged.quantiles((1 / 3, 2 / 3)) == tuple(np.quantile(values, [1 / 3, 2 / 3]))


def test_partitioned_replay_is_the_whole_replay(dask_client, scale_world, scale_parts) -> None:
    policies = [default_policy(), STRICT]
    whole = simulate(load_world(scale_world, truth_path=_truth(scale_world)), policies, CONFIG)
    assert scale_parts.buckets == 5
    parts = simulate_partitioned(scale_parts, policies, dask_client, CONFIG, truth_path=_truth(scale_world))
    _same(_numbers(parts), _numbers(whole))
    assert whole.outcomes[0].total.sent > 100 and whole.outcomes[1].total.blocked > 0
    assert set(whole.outcomes[0].segments["activity"]) == {"low", "medium", "high"}
    # another seed draws otherwise: the comparison above is not of two empty replays
    other = simulate_partitioned(scale_parts, policies, dask_client, replace(CONFIG, seed=12),
                                 truth_path=_truth(scale_world))
    assert _numbers(other)["outcomes"] != _numbers(parts)["outcomes"]


def test_partitioned_sample_is_the_whole_sample(dask_client, scale_world, scale_parts) -> None:
    whole = simulate(load_world(scale_world, truth_path=_truth(scale_world), max_users=150, seed=4),
                     [default_policy()], CONFIG)
    parts = simulate_partitioned(scale_parts, [default_policy()], dask_client, CONFIG,
                                 truth_path=_truth(scale_world), max_users=150, seed=4)
    assert parts.world["cardholders"] == 150
    _same(_numbers(parts), _numbers(whole))


def test_partitioned_replay_with_a_model_deciding_send_or_hold(dask_client, scale_world, scale_parts,
                                                               scale_bundle, scale_dataset) -> None:
    import pandas as pd

    from training.response import fit_response_models

    response, _ = fit_response_models(scale_dataset, pd.Timestamp(scale_dataset.time_range()[1]))
    bundle = replace(scale_bundle, response=response)
    policies, labels = decision_variants([default_policy()], ["default"], [200.0])
    truth = _truth(scale_world)
    whole = simulate(load_world(scale_world, truth_path=truth, bundle=bundle, bundle_label="b", k=10),
                     policies, CONFIG, labels)
    parts = simulate_partitioned(scale_parts, policies, dask_client, CONFIG, labels, truth_path=truth,
                                 bundle=bundle, bundle_label="b", k=10)
    _same(_numbers(parts), _numbers(whole))
    assert whole.outcomes[1].total.held > 0  # the decisions ran, on both paths
