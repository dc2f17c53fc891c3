"""The MovieLens benchmark's protocol pieces: the stratified splitter and the published metric formulas."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import movielens  # noqa: E402

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-100k"


def ratings(counts: dict[int, int]) -> pd.DataFrame:
    rows = [(user, item, 4.0, 0) for item, count in counts.items() for user in range(count)]
    return pd.DataFrame(rows, columns=[movielens.USER, movielens.ITEM, movielens.RATING, movielens.TIMESTAMP])


def test_split_is_per_item_with_known_counts() -> None:
    data = ratings({1: 1, 2: 2, 3: 3, 4: 4, 5: 8})
    train, test = movielens.stratified_split(data, ratio=0.75, filter_by="item", seed=42)
    # rank = position / count; rank <= 0.75 goes to train
    assert train.groupby(movielens.ITEM).size().to_dict() == {2: 1, 3: 2, 4: 3, 5: 6}
    assert test.groupby(movielens.ITEM).size().to_dict() == {1: 1, 2: 1, 3: 1, 4: 1, 5: 2}
    assert len(train) + len(test) == len(data)


def test_split_follows_the_seeded_random_order() -> None:
    data = ratings({7: 8})
    train, test = movielens.stratified_split(data, seed=42)
    np.random.seed(42)
    order = np.argsort(np.random.rand(len(data)), kind="stable")
    assert sorted(test.index) == sorted(order[6:].tolist())
    again = movielens.stratified_split(data, seed=42)[1]
    pd.testing.assert_frame_equal(test, again)
    assert not movielens.stratified_split(data, seed=1)[1].index.equals(test.index)


def test_split_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="filter_by"):
        movielens.stratified_split(ratings({1: 2}), filter_by="both")
    with pytest.raises(ValueError, match="min_rating"):
        movielens.stratified_split(ratings({1: 2}), min_rating=0)


def test_reference_formulas_agree_with_recsys_metrics() -> None:
    rng = np.random.default_rng(0)
    test_rows = [(f"u{u}", f"i{i}") for u in range(30)
                 for i in rng.choice(40, rng.integers(1, 12), replace=False)]
    test = pd.DataFrame(test_rows, columns=[movielens.USER, movielens.ITEM])
    recs = np.array([rng.permutation(40)[:10] for _ in range(30)])
    predictions = pd.DataFrame({
        movielens.USER: np.repeat([f"u{u}" for u in range(30)], 10),
        movielens.ITEM: [f"i{i}" for i in recs.ravel()],
        "rank": np.tile(np.arange(1, 11), 30),
    })
    truth = np.zeros((30, 40))
    for user, item in test_rows:
        truth[int(user[1:]), int(item[1:])] = 1
    import scipy.sparse as sp

    ours = movielens.evaluate(recs, sp.csr_matrix(truth))
    reference = movielens.reference_metrics(test, predictions)
    for name in ("map", "ndcg@10", "precision@10", "recall@10"):
        assert ours[name] == pytest.approx(reference[name], abs=1e-12)


@pytest.mark.skipif(not (DATA / "u.data").is_file(), reason=f"MovieLens 100k not found at {DATA}")
def test_real_split_sizes_and_no_leak() -> None:
    data = movielens.load_ratings(DATA)
    train, test = movielens.stratified_split(data, ratio=0.75, min_rating=1, filter_by="item", seed=42)
    assert len(train) + len(test) == 100_000
    assert len(train.merge(test, on=[movielens.USER, movielens.ITEM])) == 0
    per_item = train.groupby(movielens.ITEM).size() / data.groupby(movielens.ITEM).size()
    assert per_item.dropna().max() <= 0.75
