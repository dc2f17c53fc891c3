"""The wide part's ridge shrunk toward item tags: known answers for items with no, few and many positives."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.models.wide import fit_ridge

ROWS, FEATURES = 400, 6
TAG_A, TAG_B = 0, 1


def make_board() -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """(features, positives, tags): items 0-1 carry tag A and are liked by rows high in feature 0, item 2
    carries tag B (feature 1); item 3 carries tag A and has no positives; item 4 has few positives and
    tag A; item 5 carries no tag."""
    rng = np.random.default_rng(5)
    features = rng.normal(size=(ROWS, FEATURES))
    taste_a = features[:, 0] + 0.3 * rng.normal(size=ROWS)
    taste_b = features[:, 1] + 0.3 * rng.normal(size=ROWS)
    positives = np.zeros((ROWS, 6))
    positives[:, 0] = taste_a > 0
    positives[:, 1] = taste_a > 0.5
    positives[:, 2] = taste_b > 0
    positives[np.argsort(features[:, 2])[-3:], 4] = 1  # three positives, from another taste
    positives[:, 5] = taste_b > 0.5
    tags = np.zeros((6, 2))
    tags[[0, 1, 3, 4], TAG_A] = 1
    tags[2, TAG_B] = 1
    return sp.csr_matrix(features), sp.csr_matrix(positives), sp.csr_matrix(tags)


@pytest.fixture(scope="module")
def board() -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    return make_board()


def scores(features: sp.csr_matrix, positives: sp.spmatrix, **options) -> np.ndarray:
    ridge = fit_ridge(features, positives, l2=0.01, max_rank=positives.shape[1], **options)
    return ridge.user_block(features) @ ridge.items.T + ridge.offset


def proportional(values: np.ndarray, reference: np.ndarray) -> float:
    """The least-squares factor c of values ~ c x reference, after checking they are proportional."""
    factor = float(values @ reference / (reference @ reference))
    np.testing.assert_allclose(values, factor * reference, rtol=1e-4, atol=1e-5)
    return factor


def test_an_item_with_no_positives_takes_its_tags_ridge(board) -> None:
    features, positives, tags = board
    pooled = scores(features, positives, groups=tags, group_prior=10.0)
    own = scores(features, positives)
    np.testing.assert_allclose(own[:, 3], 0.0, atol=1e-5)  # alone the ridge knows nothing of it
    # its tag's ridge: "a positive on any item carrying tag A"
    any_a = sp.csr_matrix((positives @ tags[:, [TAG_A]]) > 0, dtype=np.float64)
    assert proportional(pooled[:, 3], scores(features, any_a)[:, 0]) > 0
    assert np.corrcoef(pooled[:, 3], features.toarray()[:, 0])[0, 1] > 0.8


def test_an_item_with_many_positives_keeps_about_its_own(board) -> None:
    features, positives, tags = board
    pooled = scores(features, positives, groups=tags, group_prior=1.0)
    own = scores(features, positives)
    for item in (0, 1, 2):  # 100-200 positives each: a >= 0.99 on its own ridge
        assert np.corrcoef(pooled[:, item], own[:, item])[0, 1] > 0.999
    # an item in no group keeps its own exactly
    np.testing.assert_allclose(pooled[:, 5], own[:, 5], rtol=1e-4, atol=1e-5)


def test_few_positives_lean_toward_the_tags_as_the_prior_grows(board) -> None:
    features, positives, tags = board
    taste_a = features.toarray()[:, 0]
    # item 4's three positives come from feature 2; its tag says feature 0. Its own coefficients are
    # small (they grow with an item's positives) beside the tag's, scaled to items with 100-200, so the
    # tag takes over at priors well below its three positives
    leaning = [np.corrcoef(scores(features, positives, groups=tags, group_prior=prior)[:, 4], taste_a)[0, 1]
               for prior in (0.01, 0.1, 1.0, 30.0)]
    assert leaning == sorted(leaning) and leaning[0] < 0.0 and leaning[-1] > 0.99


def test_no_prior_or_no_groups_is_the_plain_ridge(board) -> None:
    features, positives, tags = board
    plain = scores(features, positives)
    np.testing.assert_allclose(scores(features, positives, groups=tags, group_prior=0.0), plain, atol=1e-6)
    np.testing.assert_allclose(scores(features, positives, groups=None, group_prior=30.0), plain, atol=1e-6)


def test_pooled_coefficients_are_on_the_own_ones_scale(board) -> None:
    """The tags' ridge of "any positive" spreads more than one item's; scaled, a new item's scores
    spread like those of the items with positives, so neither kind crowds out the other."""
    features, positives, tags = board
    pooled = scores(features, positives, groups=tags, group_prior=1e9)
    own = scores(features, positives)
    evidenced = [0, 1, 2, 4]
    assert pooled[:, evidenced].std() == pytest.approx(own[:, evidenced].std(), rel=1e-3)
