"""Training from a seeded sample of cardholders: only the sampled cardholders' rows are loaded (the
same rows the whole load has for them), the sample is repeatable, and the run records its size."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.loader import load_dataset
from features.partitions import load_sample, rows_dataset

pytestmark = pytest.mark.slow


def _of(frame: pd.DataFrame, ids: set[str]) -> pd.DataFrame:
    return frame.loc[frame["user_id"].isin(ids).to_numpy()].sort_values("user_id", kind="stable",
                                                                        ignore_index=True)


def test_a_sample_loads_only_its_cardholders_rows(scale_world: Path, scale_dataset, tmp_path: Path) -> None:
    data, sample = load_sample(scale_world, 200, seed=7, work=tmp_path / "work", partition_size=120)
    assert sample is not None and sample.to_dict() == {"population": 500, "users": 200, "seed": 7}
    assert sample.time_range() == scale_dataset.time_range()
    ids = set(data.cardholders["user_id"])
    assert len(ids) == len(data.cardholders) == 200
    expected_holders = scale_dataset.cardholders.loc[scale_dataset.cardholders["user_id"].isin(ids)]
    pd.testing.assert_frame_equal(data.cardholders, expected_holders.reset_index(drop=True))  # table order
    for name in ("transactions", "menu_clicks", "article_reads", "push_log"):
        whole = scale_dataset.table(name)
        assert len(whole) and len(data.table(name)) < len(whole)
        pd.testing.assert_frame_equal(_of(data.table(name), ids), _of(whole, ids))
        assert set(data.table(name)["user_id"]) <= ids
    pd.testing.assert_frame_equal(data.content, scale_dataset.content)
    assert list((tmp_path / "work").iterdir()) == []  # staging removed

    again, _ = load_sample(scale_world, 200, seed=7, work=tmp_path / "work", partition_size=250)
    assert again.cardholders["user_id"].tolist() == data.cardholders["user_id"].tolist()
    other, _ = load_sample(scale_world, 200, seed=8, work=tmp_path / "work", partition_size=120)
    assert set(other.cardholders["user_id"]) != ids


def test_a_sample_gathered_on_the_workers_is_the_one_gathered_here(scale_world: Path, dask_client,
                                                                   tmp_path: Path) -> None:
    opened = []

    @contextmanager
    def cluster() -> Iterator:
        opened.append(True)
        yield dask_client

    here, sample = load_sample(scale_world, 200, seed=7, work=tmp_path / "here", partition_size=120)
    there, on_workers = load_sample(scale_world, 200, seed=7, work=tmp_path / "there", partition_size=120,
                                    cluster=cluster)
    assert opened == [True] and on_workers == sample
    for name in ("cardholders", "transactions", "menu_clicks", "article_reads", "push_log", "content"):
        pd.testing.assert_frame_equal(there.table(name), here.table(name))
    assert there.present == here.present
    assert list((tmp_path / "there").iterdir()) == []

    _, none = load_sample(scale_world, 500, seed=7, work=tmp_path / "there", cluster=cluster)
    assert none is None and opened == [True]  # no sample: no cluster started


def test_the_rows_asked_for_and_only_theirs(scale_parts, scale_dataset) -> None:
    rows = np.array([0, 3, 4, 250, 499])
    data = rows_dataset(scale_parts, rows)
    expected = scale_dataset.cardholders.iloc[rows].reset_index(drop=True)
    pd.testing.assert_frame_equal(data.cardholders, expected)  # table order
    ids = set(expected["user_id"])
    for name in ("transactions", "push_log"):
        pd.testing.assert_frame_equal(_of(data.table(name), ids), _of(scale_dataset.table(name), ids))
    assert rows_dataset(scale_parts, np.array([], dtype=np.int64)).cardholders.empty


def test_no_sample_at_or_below_the_population(scale_world: Path, scale_dataset, tmp_path: Path) -> None:
    for users in (500, None):
        data, sample = load_sample(scale_world, users, seed=7, work=tmp_path / "work")
        assert sample is None
        pd.testing.assert_frame_equal(data.transactions, scale_dataset.transactions)


def test_train_on_a_sample_records_its_size(scale_world: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from recsys.config import get_settings
    from training.config import TrainConfig
    from training.job import TrainOptions, train

    config = TrainConfig.from_dict({"model": {"kind": "lightfm_hybrid",
                                              "params": {"num_threads": 1, "epochs": 3, "no_components": 8}},
                                    "baselines": {"popularity": {"kind": "popularity"}}, "refit": False})
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECSYS_MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    try:
        result = train(TrainOptions(data_dir=scale_world, config=config, experiment="sample-test",
                                    register=False, progress=False, sample_users=300,
                                    work_dir=tmp_path / "work", partition_size=200))
        tracking_uri = get_settings().tracking_uri
    finally:
        get_settings.cache_clear()
    seed = config.seed
    assert result.summary["train_sample"] == {"population": 500, "users": 300, "seed": seed}
    assert result.summary["n_users"] == 300
    assert result.as_of == load_dataset(scale_world).time_range()[1]
    params = MlflowClient(tracking_uri).get_run(result.run_id).data.params
    assert (params["train_sample.users"], params["train_sample.population"]) == ("300", "500")
    assert np.isfinite(result.results["lightfm"]["users"])
