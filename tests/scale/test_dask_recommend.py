"""`recsys recommend` on a LocalCluster: the same rows as the single-process path, written whole."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.bundle_inputs import rank_dataset
from recsys.cluster import partition_bounds
from training.recommend import rank_on_dask

pytestmark = pytest.mark.slow


def test_partitions_cover_every_row_once() -> None:
    assert partition_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert partition_bounds(0, 3) == []
    with pytest.raises(ValueError, match="partition size"):
        partition_bounds(4, 0)


def test_dask_recommend_matches_the_single_process_path(dask_client, scale_bundle, scale_dataset,
                                                        tmp_path: Path) -> None:
    as_of = scale_dataset.time_range()[1]
    expected = rank_dataset(scale_bundle, scale_dataset, as_of, 5)
    out = tmp_path / "recs.parquet"
    rows = rank_on_dask(dask_client, scale_bundle, scale_dataset, as_of, 5, out, partition_size=120)
    parts = sorted(out.glob("part-*.parquet"))
    assert [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(5)]  # 500 / 120
    got = pd.read_parquet(out)
    assert rows == len(expected) == len(got)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected, check_exact=True)
    assert [p.name for p in tmp_path.iterdir()] == ["recs.parquet"]  # no staging directory left


def test_a_failing_partition_leaves_no_output(dask_client, scale_bundle, scale_dataset,
                                              tmp_path: Path) -> None:
    out = tmp_path / "recs.parquet"
    with pytest.raises(Exception, match="k must be >= 1"):
        rank_on_dask(dask_client, scale_bundle, scale_dataset, scale_dataset.time_range()[1], 0, out, 120)
    assert list(tmp_path.iterdir()) == []
