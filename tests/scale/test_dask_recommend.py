"""`recsys recommend` on a LocalCluster: the same rows as the single-process path, written whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def _by_cardholder(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["user_id", "rank"], ignore_index=True)


def test_dask_recommend_matches_the_single_process_path(dask_client, scale_bundle, scale_dataset, scale_parts,
                                                        tmp_path: Path) -> None:
    as_of = scale_dataset.time_range()[1]
    assert scale_parts.time_range() == scale_dataset.time_range()
    expected = rank_dataset(scale_bundle, scale_dataset, as_of, 5)
    out = tmp_path / "recs.parquet"
    rows = rank_on_dask(dask_client, scale_bundle, scale_parts, as_of, 5, out)
    parts = sorted(out.glob("part-*.parquet"))
    assert [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(5)]  # 500 / 120 buckets
    got = pd.read_parquet(out)
    assert rows == len(expected) == len(got)
    got, expected = _by_cardholder(got), _by_cardholder(expected)
    # BLAS sums a float32 product in an order that depends on the block's shape and the CPU's kernel,
    # so a bucket's scores may differ from the whole table's in the last bits: the rows must be the
    # same items in the same order, the scores equal to float32 precision.
    pd.testing.assert_frame_equal(got.drop(columns="score"), expected.drop(columns="score"), check_exact=True)
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-5, atol=1e-6)
    first = pd.read_parquet(parts[0])  # a part is one bucket, its cardholders in table order
    assert first["user_id"].unique().tolist() == scale_parts.partition(0).cardholders["user_id"].tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["recs.parquet"]  # no staging directory left


def test_a_failing_partition_leaves_no_output(dask_client, scale_bundle, scale_parts, tmp_path: Path) -> None:
    out = tmp_path / "recs.parquet"
    with pytest.raises(Exception, match="k must be >= 1"):
        rank_on_dask(dask_client, scale_bundle, scale_parts, scale_parts.time_range()[1], 0, out)
    assert list(tmp_path.iterdir()) == []


def test_the_progress_bar_follows_the_buckets(dask_client, scale_bundle, scale_parts, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "recs.parquet"
    rows = rank_on_dask(dask_client, scale_bundle, scale_parts, scale_parts.time_range()[1], 3, out,
                        progress=True)
    assert rows == len(pd.read_parquet(out))
    assert "100% Completed" in capsys.readouterr().out
