"""Ranking metrics: hand-computed cases, edge cases and a slow reference written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.metrics import (
    MetricsError,
    auc,
    average_precision_at_k,
    catalogue_coverage,
    mean_over_users,
    ndcg_at_k,
    precision_at_k,
    ranking_report,
    recall_at_k,
    weighted_auc,
)


def relevant(rows: list[list[int]], n_items: int = 10) -> sp.csr_matrix:
    matrix = np.zeros((len(rows), n_items))
    for user, items in enumerate(rows):
        matrix[user, items] = 1
    return sp.csr_matrix(matrix)


def test_hand_computed_user() -> None:
    # relevant {1, 3, 5, 7}; recommended 1 (hit), 2, 3 (hit), 4, 9
    recs = np.array([[1, 2, 3, 4, 9]])
    truth = relevant([[1, 3, 5, 7]])
    assert precision_at_k(recs, truth)[0] == pytest.approx(2 / 5)
    assert recall_at_k(recs, truth)[0] == pytest.approx(2 / 4)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = sum(1 / math.log2(r + 1) for r in range(1, 5))
    assert ndcg_at_k(recs, truth)[0] == pytest.approx(dcg / idcg)
    # precision at the hits: 1/1 and 2/3; divided by all 4 relevant items
    assert average_precision_at_k(recs, truth)[0] == pytest.approx((1 + 2 / 3) / 4)


def test_k_shorter_than_the_list() -> None:
    recs = np.array([[1, 2, 3, 4, 9]])
    truth = relevant([[3]])
    assert precision_at_k(recs, truth, k=2)[0] == 0.0
    assert precision_at_k(recs, truth, k=3)[0] == pytest.approx(1 / 3)
    assert ndcg_at_k(recs, truth, k=3)[0] == pytest.approx(1 / math.log2(4))


def test_perfect_and_empty_rankings() -> None:
    truth = relevant([[0, 1, 2], [4]])
    perfect = np.array([[2, 0, 1], [4, 5, 6]])
    assert ndcg_at_k(perfect, truth).tolist() == [1.0, 1.0]
    assert average_precision_at_k(perfect, truth).tolist() == [1.0, 1.0]
    assert recall_at_k(perfect, truth).tolist() == [1.0, 1.0]
    misses = np.array([[7, 8, 9], [0, 1, 2]])
    for metric in (precision_at_k, recall_at_k, ndcg_at_k, average_precision_at_k):
        assert metric(misses, truth).tolist() == [0.0, 0.0]


def test_more_relevant_than_k_caps_the_ideal_but_not_map() -> None:
    truth = relevant([[0, 1, 2, 3, 4, 5]])
    recs = np.array([[0, 1, 2]])
    assert ndcg_at_k(recs, truth)[0] == 1.0
    assert average_precision_at_k(recs, truth)[0] == pytest.approx(3 / 6)


def test_users_without_relevant_items_are_left_out() -> None:
    truth = relevant([[1], []])
    recs = np.array([[1, 2], [1, 2]])
    values = precision_at_k(recs, truth)
    assert values[0] == 0.5 and math.isnan(values[1])
    assert mean_over_users(values) == 0.5
    report = ranking_report(recs, truth)
    assert report["users"] == 1 and report["precision@2"] == 0.5


def test_empty_slots_count_as_misses() -> None:
    truth = relevant([[1, 2]])
    recs = np.array([[1, -1, -1]])
    assert precision_at_k(recs, truth)[0] == pytest.approx(1 / 3)
    assert recall_at_k(recs, truth)[0] == 0.5


def slow_reference(recs: np.ndarray, truth: sp.csr_matrix, k: int) -> dict[str, float]:
    """Straight from the definitions, one user at a time, skipping users without relevant items."""
    sums = {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0}
    counted = 0
    for user in range(recs.shape[0]):
        wanted = set(truth[user].indices.tolist())
        if not wanted:
            continue
        counted += 1
        hits, dcg, precision_sum = 0, 0.0, 0.0
        for rank, item in enumerate(recs[user, :k].tolist(), start=1):
            if item in wanted:
                hits += 1
                dcg += 1 / math.log2(rank + 1)
                precision_sum += hits / rank
        ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(k, len(wanted)) + 1))
        sums["precision"] += hits / k
        sums["recall"] += hits / len(wanted)
        sums["ndcg"] += dcg / ideal
        sums["map"] += precision_sum / len(wanted)
    return {name: value / counted for name, value in sums.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_the_slow_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 80, 50, 10
    truth = sp.random(n_users, n_items, density=0.12, format="csr", random_state=seed)
    recs = np.array([rng.permutation(n_items)[:k] for _ in range(n_users)])
    recs[rng.random(recs.shape) < 0.05] = -1
    expected = slow_reference(recs, truth, k)
    assert mean_over_users(precision_at_k(recs, truth, k)) == pytest.approx(expected["precision"])
    assert mean_over_users(recall_at_k(recs, truth, k)) == pytest.approx(expected["recall"])
    assert mean_over_users(ndcg_at_k(recs, truth, k)) == pytest.approx(expected["ndcg"])
    assert mean_over_users(average_precision_at_k(recs, truth, k)) == pytest.approx(expected["map"])


def test_auc_against_pairwise_counting() -> None:
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 5, size=(30, 20)).astype(float)  # many ties
    truth = sp.random(30, 20, density=0.3, format="csr", random_state=5)
    eligible = rng.random((30, 20)) < 0.9
    values = auc(scores, truth, eligible)
    dense = truth.toarray() != 0
    for user in range(30):
        positives = scores[user][dense[user] & eligible[user]]
        negatives = scores[user][~dense[user] & eligible[user]]
        if positives.size == 0 or negatives.size == 0:
            assert math.isnan(values[user])
            continue
        wins = ((positives[:, None] > negatives[None, :]).sum()
                + 0.5 * (positives[:, None] == negatives[None, :]).sum())
        assert values[user] == pytest.approx(wins / (positives.size * negatives.size))


def test_auc_through_weighted_auc_keeps_the_mean_rank_values() -> None:
    """Per-user AUC, now `weighted_auc` per user, gives the very values of the Mann-Whitney U from mean
    ranks it replaced, on scores with many ties, with and without an eligibility mask."""
    rng = np.random.default_rng(11)
    for n_levels in (3, 8, 1000):
        scores = rng.integers(0, n_levels, size=(60, 40)).astype(float)
        truth = sp.random(60, 40, density=0.25, format="csr", random_state=int(n_levels))
        eligible = rng.random((60, 40)) < 0.8
        for mask in (None, eligible):
            values = auc(scores, truth, mask)
            dense = truth.toarray() != 0
            keep_all = np.ones_like(dense) if mask is None else mask
            for user in range(60):
                row, keep = scores[user][keep_all[user]], dense[user][keep_all[user]]
                n_pos, n_neg = int(keep.sum()), int((~keep).sum())
                if n_pos == 0 or n_neg == 0:
                    assert math.isnan(values[user])
                    continue
                order = np.argsort(row, kind="mergesort")
                _, first, counts = np.unique(row[order], return_index=True, return_counts=True)
                ranks = np.empty(row.size)
                ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
                assert values[user] == (ranks[keep].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def test_weighted_auc_against_pairwise_counting() -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 6, size=200).astype(float)  # many ties
    positive = rng.random(200) < 0.3
    weights = rng.poisson(1.0, size=(4, 200)).astype(float)
    values = weighted_auc(scores, positive, weights)
    pairs = positive[:, None] & ~positive[None, :]
    for row, value in zip(weights, values, strict=True):
        pair_weight = np.outer(row, row) * pairs
        wins = (pair_weight * (scores[:, None] > scores[None, :])).sum() \
            + 0.5 * (pair_weight * (scores[:, None] == scores[None, :])).sum()
        assert value == pytest.approx(wins / pair_weight.sum())
    # unit weights give the plain pooled AUC; weight 2 on every example changes nothing
    plain = weighted_auc(scores, positive, np.ones((1, 200)))[0]
    assert weighted_auc(scores, positive, np.full((1, 200), 2.0))[0] == pytest.approx(plain)


def test_weighted_auc_extremes() -> None:
    positive = np.array([True, True, False, False])
    assert weighted_auc(np.array([4.0, 3.0, 2.0, 1.0]), positive, np.ones((1, 4)))[0] == 1.0
    assert weighted_auc(np.array([1.0, 2.0, 3.0, 4.0]), positive, np.ones((1, 4)))[0] == 0.0
    # a replicate that drew no negative has no AUC
    assert math.isnan(weighted_auc(np.array([1.0, 2.0, 3.0, 4.0]), positive, np.array([[1, 1, 0, 0.0]]))[0])
    with pytest.raises(MetricsError, match="one entry per example"):
        weighted_auc(np.ones(4), positive, np.ones((1, 3)))


def test_auc_extremes() -> None:
    truth = relevant([[0, 1]], n_items=4)
    assert auc(np.array([[4.0, 3.0, 2.0, 1.0]]), truth)[0] == 1.0
    assert auc(np.array([[1.0, 2.0, 3.0, 4.0]]), truth)[0] == 0.0


def test_coverage() -> None:
    assert catalogue_coverage(np.array([[0, 1], [1, -1]]), 4) == 0.5
    assert catalogue_coverage(np.full((2, 2), -1), 4) == 0.0
    with pytest.raises(MetricsError, match="outside"):
        catalogue_coverage(np.array([[9]]), 4)


@pytest.mark.parametrize(("recs", "truth", "message"), [
    (np.array([[1.5]]), relevant([[1]]), "integer"),
    (np.array([[1], [2]]), relevant([[1]]), "rows must align"),
    (np.array([[11]]), relevant([[1]]), "outside"),
    (np.array([[1, 1]]), relevant([[1]]), "repeats"),
    (np.array([[1]]), np.eye(3), "sparse"),
])
def test_bad_inputs_are_named(recs, truth, message) -> None:
    with pytest.raises(MetricsError, match=message):
        precision_at_k(recs, truth)
