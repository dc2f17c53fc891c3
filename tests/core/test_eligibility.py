"""The one definition of what a cardholder may be offered, against hand-worked cases."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.eligibility import cardholder_items, tier_table, valid_between
from recsys.ranking import Eligibility

NAN = np.nan


def test_validity_at_an_instant_and_over_a_window() -> None:
    valid_from = np.array([NAN, 10, 10, 30, NAN])
    valid_to = np.array([NAN, 20, NAN, 40, 5])
    assert valid_between(valid_from, valid_to, 15).tolist() == [True, True, True, False, False]
    assert valid_between(valid_from, valid_to, 20).tolist() == [True, True, True, False, False]
    # valid at some moment of [15, 35]: the item starting at 30 counts
    assert valid_between(valid_from, valid_to, 15, 35).tolist() == [True, True, True, True, False]


def test_tier_rows_and_the_unknown_tier() -> None:
    table = tier_table([frozenset(), frozenset({"gold"}), frozenset({"gold", "platinum"})],
                       ["gold", "classic", None])
    assert table.tolist() == [[True, True, True], [True, False, False], [True, False, False]]


def test_one_cardholder_opted_out_or_having_seen_items() -> None:
    offerable = np.array([True, True, False, True])
    tier_row = np.array([True, False, True, True])
    rows = np.vstack([tier_row, tier_row])
    allowed = cardholder_items(offerable, rows, np.array([True, False]), np.array([0, 1, 1]), np.array([3]))
    assert allowed.tolist() == [[True, False, False, False], [False] * 4]


def test_pairs_follow_every_part_of_a_batch_eligibility() -> None:
    eligibility = Eligibility(
        item_allowed=np.array([True, True, False]),
        user_group=np.array([0, 1]),
        group_item_allowed=np.array([[True, True, True], [True, False, True]]),
        seen=sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0]])),
    )
    rows, columns = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 0, 1, 2])
    assert eligibility.allows(rows, columns).tolist() == [False, True, False, True, False, False]
