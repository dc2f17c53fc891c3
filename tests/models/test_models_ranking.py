"""Batch top-k: exact against a brute-force reference, never an ineligible item, padding, blocks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.ranking import Eligibility, RankingError, best_per_row, top_k


def brute_force(users: np.ndarray, items: np.ndarray, k: int, eligibility: Eligibility):
    """Slow reference: full score matrix, mask, stable sort (lower index first on ties)."""
    scores = users.astype(np.float32) @ items.astype(np.float32).T
    allowed = np.ones(scores.shape, dtype=bool)
    if eligibility.item_allowed is not None:
        allowed &= eligibility.item_allowed[None, :]
    if eligibility.user_group is not None:
        allowed &= eligibility.group_item_allowed[eligibility.user_group]
    if eligibility.seen is not None:
        allowed &= ~sp.csr_matrix(eligibility.seen).toarray().astype(bool)
    indices = np.full((scores.shape[0], k), -1, dtype=np.int64)
    values = np.full((scores.shape[0], k), -np.inf, dtype=np.float32)
    for user in range(scores.shape[0]):
        candidates = [(-scores[user, item], item) for item in np.flatnonzero(allowed[user])]
        for rank, (negative, item) in enumerate(sorted(candidates)[:k]):
            indices[user, rank] = item
            values[user, rank] = -negative
    return indices, values


def random_case(rng: np.random.Generator, n_users: int, n_items: int, d: int, groups: int = 3,
                density: float = 0.2) -> tuple[np.ndarray, np.ndarray, Eligibility]:
    users = rng.standard_normal((n_users, d)).astype(np.float32)
    items = rng.standard_normal((n_items, d)).astype(np.float32)
    eligibility = Eligibility(
        item_allowed=rng.random(n_items) < 0.85,
        user_group=rng.integers(0, groups, n_users),
        group_item_allowed=rng.random((groups, n_items)) < 0.7,
        seen=sp.random(n_users, n_items, density=density, format="csr",
                       random_state=int(rng.integers(1 << 30))),
    )
    return users, items, eligibility


@pytest.mark.parametrize(("n_users", "n_items", "k", "block_size"), [
    (200, 50, 5, None), (200, 50, 5, 1), (203, 97, 10, 16), (64, 300, 7, 64), (31, 12, 20, 4),
    (50, 1, 3, None), (300, 400, 25, None), (120, 500, 70, 32),
])
def test_matches_brute_force_with_every_filter(n_users, n_items, k, block_size) -> None:
    rng = np.random.default_rng(n_users * 1000 + n_items)
    users, items, eligibility = random_case(rng, n_users, n_items, 8)
    indices, scores = top_k(users, items, k, eligibility, block_size=block_size)
    expected_indices, expected_scores = brute_force(users, items, k, eligibility)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)
    assert indices.dtype == np.int32 and scores.dtype == np.float32


def test_without_filters_matches_a_full_sort() -> None:
    rng = np.random.default_rng(1)
    users = rng.standard_normal((500, 16)).astype(np.float32)
    items = rng.standard_normal((400, 16)).astype(np.float32)
    indices, scores = top_k(users, items, 10)
    full = users @ items.T
    np.testing.assert_array_equal(indices, np.argsort(-full, axis=1, kind="stable")[:, :10])
    np.testing.assert_allclose(scores, -np.sort(-full, axis=1)[:, :10], rtol=1e-5, atol=1e-5)


def test_never_returns_an_ineligible_item() -> None:
    rng = np.random.default_rng(2)
    for trial in range(20):
        users, items, eligibility = random_case(rng, 97, 61, 4, groups=4, density=0.4)
        indices, scores = top_k(users, items, 15, eligibility, block_size=int(rng.integers(1, 40)))
        allowed = (eligibility.item_allowed[None, :] & eligibility.group_item_allowed[eligibility.user_group]
                   & ~eligibility.seen.toarray().astype(bool))
        rows, ranks = np.nonzero(indices >= 0)
        assert allowed[rows, indices[rows, ranks]].all(), f"trial {trial}"
        # every eligible item is returned while fewer than k are eligible
        np.testing.assert_array_equal((indices >= 0).sum(axis=1), np.minimum(allowed.sum(axis=1), 15))


def test_pads_with_minus_one_and_minus_infinity() -> None:
    users = np.ones((3, 2), dtype=np.float32)
    items = np.array([[1, 0], [2, 0], [3, 0], [4, 0]], dtype=np.float32)
    seen = sp.csr_matrix(np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 1, 0]]))
    indices, scores = top_k(users, items, 6, Eligibility(seen=seen))
    np.testing.assert_array_equal(indices, [[-1] * 6, [3, 2, 1, 0, -1, -1], [3, 1, -1, -1, -1, -1]])
    assert np.isneginf(scores[0]).all() and np.isneginf(scores[1, 4:]).all()
    np.testing.assert_array_equal(scores[1, :4], [4, 3, 2, 1])


def test_ties_keep_the_lower_item_first() -> None:
    users = np.ones((2, 1), dtype=np.float32)
    items = np.array([[1], [2], [2], [1], [2]], dtype=np.float32)
    indices, _ = top_k(users, items, 4)
    np.testing.assert_array_equal(indices, [[1, 2, 4, 0]] * 2)


def test_negative_zero_ties_with_zero() -> None:
    users = np.ones((1, 1), dtype=np.float32)
    items = np.array([[-1.0], [-0.0], [0.0], [-0.0]], dtype=np.float32)
    indices, _ = top_k(users, items, 3)
    np.testing.assert_array_equal(indices, [[1, 2, 3]])


def test_block_boundaries_do_not_change_the_result() -> None:
    rng = np.random.default_rng(3)
    users, items, eligibility = random_case(rng, 257, 130, 6)
    reference = top_k(users, items, 9, eligibility)
    for block_size in (1, 2, 7, 128, 256, 257, 1000):
        indices, scores = top_k(users, items, 9, eligibility, block_size=block_size)
        np.testing.assert_array_equal(indices, reference[0])
        # BLAS may sum in another order for another tile shape: equal up to rounding
        np.testing.assert_allclose(scores, reference[1], rtol=1e-6, atol=1e-6)


def test_group_without_allowed_items_gets_nothing() -> None:
    users = np.ones((4, 2), dtype=np.float32)
    items = np.ones((3, 2), dtype=np.float32)
    eligibility = Eligibility(user_group=np.array([0, 1, 0, 1]),
                              group_item_allowed=np.array([[True, False, True], [False, False, False]]))
    indices, _ = top_k(users, items, 2, eligibility)
    np.testing.assert_array_equal(indices, [[0, 2], [-1, -1], [0, 2], [-1, -1]])


def test_rows_with_few_or_no_finite_scores_against_a_stable_sort() -> None:
    """`best_per_row` on rows where fewer than k scores are finite: nothing above -inf (an opted-out
    cardholder), only NaN, NaN or +inf beside a few finite scores, ties at the k-th place; each row as
    a stable sort of the row gives them, its non-finite scores marked as padding where they stand."""
    inf, nan = np.inf, np.nan
    scores = np.array([
        [-inf] * 6,
        [nan] * 6,
        [nan, 2.0, -inf, 5.0, nan, -inf],
        [inf, 1.0, -inf, 3.0, -inf, -inf],
        [-inf, 4.0, -inf, -inf, 4.0, -inf],
        [1.0, 2.0, 2.0, 2.0, 0.5, 3.0],
        [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
    ], dtype=np.float32)
    indices, values = best_per_row(scores, 3)
    for row, (found, best) in enumerate(zip(indices, values, strict=True)):
        order = np.argsort(-scores[row], kind="stable")[:3]
        finite = np.isfinite(scores[row, order])
        assert found.tolist() == np.where(finite, order, -1).tolist(), row
        np.testing.assert_array_equal(best, np.where(finite, scores[row, order], -inf))


def test_subset_keeps_each_users_rows() -> None:
    rng = np.random.default_rng(4)
    users, items, eligibility = random_case(rng, 40, 30, 5)
    rows = np.array([7, 3, 39, 3])
    full = top_k(users, items, 5, eligibility)[0]
    subset = top_k(users[rows], items, 5, eligibility.subset(rows))[0]
    np.testing.assert_array_equal(subset, full[rows])


def test_empty_user_set() -> None:
    indices, scores = top_k(np.zeros((0, 3), dtype=np.float32), np.ones((4, 3), dtype=np.float32), 2)
    assert indices.shape == (0, 2) and scores.shape == (0, 2)


@pytest.mark.parametrize(("call", "message"), [
    (lambda u, i: top_k(u, i[:, :2], 3), "columns"),
    (lambda u, i: top_k(u, i, 0), "k must be"),
    (lambda u, i: top_k(u, i, 3, block_size=0), "block_size"),
    (lambda u, i: top_k(u, i, 3, Eligibility(item_allowed=np.ones(5, dtype=bool))), "item_allowed"),
    (lambda u, i: top_k(u, i, 3, Eligibility(user_group=np.zeros(4, dtype=int))), "together"),
    (lambda u, i: top_k(u, i, 3, Eligibility(user_group=np.array([0, 0, 0, 2]),
                                             group_item_allowed=np.ones((2, 6), dtype=bool))), "outside"),
    (lambda u, i: top_k(u, i, 3, Eligibility(seen=sp.csr_matrix((4, 5)))), "seen"),
    (lambda u, i: top_k(np.full_like(u, np.nan), i, 3), "NaN"),
])
def test_bad_inputs_are_named(call, message) -> None:
    users = np.ones((4, 3), dtype=np.float32)
    items = np.ones((6, 3), dtype=np.float32)
    with pytest.raises(RankingError, match=message):
        call(users, items)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_damaged_large_factor_matrix_is_refused(bad) -> None:
    """One bad value anywhere in a large matrix is found."""
    users = np.ones((20_000, 8), dtype=np.float32)
    users[12_345, 7] = bad
    items = np.ones((30, 8), dtype=np.float32)
    with pytest.raises(RankingError, match="user_factors hold NaN or infinite"):
        top_k(users, items, 3)
    users[12_345, 7] = -3.4e38  # the largest magnitudes are still finite
    assert top_k(users, items, 3)[0].shape == (20_000, 3)


@pytest.mark.parametrize("k", [1, 3, 10, 16, 17, 20, 33, 48, 64])
def test_many_ties_match_brute_force_at_every_lane_width(k) -> None:
    """Coarse scores make long runs of ties around the k-th place: candidate lists of every length
    (within one vector, within two, past the ranked limit) must keep the lower item first."""
    rng = np.random.default_rng(100 + k)
    for n_items in (37, 161, 203):
        users = rng.integers(-2, 3, (120, 3)).astype(np.float32)
        items = rng.integers(-2, 3, (n_items, 3)).astype(np.float32)
        eligibility = Eligibility(
            user_group=rng.integers(0, 2, 120), group_item_allowed=rng.random((2, n_items)) < 0.9,
            seen=sp.random(120, n_items, density=0.05, format="csr", random_state=k))
        indices, scores = top_k(users, items, k, eligibility)
        expected_indices, expected_scores = brute_force(users, items, k, eligibility)
        np.testing.assert_array_equal(indices, expected_indices, err_msg=f"{n_items} items")
        np.testing.assert_array_equal(scores, expected_scores)
