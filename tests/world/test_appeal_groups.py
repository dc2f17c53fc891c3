"""`benchmarks/appeal_groups.py`: groups by evidence and the appeal chosen per group, on cases with a
known answer."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.appeal_groups import (
    Grouping,
    best_per_group,
    bucketed,
    composed,
    cross_fitted,
    crossed,
    evidence_groupings,
)


def test_counts_are_cut_at_the_edges_and_each_group_is_named_by_its_range() -> None:
    grouping = bucketed("positives", np.array([0, 1, 2, 3, 9, 10, 250]), (1, 3, 10))
    assert grouping.names == ("0", "1-2", "3-9", "10+")
    assert grouping.labels.tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert bucketed("none", np.array([0, 4]), ()).names == ("0+",)


@pytest.mark.parametrize("counts", [np.array([1.0, -1.0]), np.array([1.0, np.nan]), np.ones((2, 2))])
def test_bad_counts_are_refused_by_name(counts: np.ndarray) -> None:
    with pytest.raises(ValueError, match="'spend'"):
        bucketed("spend", counts, (1,))


def test_a_label_outside_the_names_is_refused() -> None:
    with pytest.raises(ValueError, match="labels"):
        Grouping("reads", np.array([0, 2]), ("no reads", "reads"))


def test_crossing_keeps_only_the_pairs_that_occur() -> None:
    reads = Grouping("reads", np.array([0, 0, 1, 1]), ("no reads", "reads"))
    positives = bucketed("positives", np.array([0, 5, 5, 5]), (1, 3))
    both = crossed(reads, positives)
    assert both.names == ("no reads / 0", "no reads / 3+", "reads / 3+")
    assert both.labels.tolist() == [0, 1, 2, 2]


def test_spend_is_cut_at_this_worlds_quartiles_and_every_grouping_covers_every_cardholder() -> None:
    spend = np.arange(100)
    groupings = evidence_groupings(reads=np.r_[np.zeros(50), np.ones(50)], positives=np.arange(100) % 12,
                                   spend_events=spend)
    assert [g.scheme for g in groupings] == ["reads", "positives", "spend events", "reads x positives",
                                            "reads x spend events"]
    by_spend = groupings[2]
    assert np.bincount(by_spend.labels).tolist() == [25, 25, 25, 25]
    assert all(len(g.labels) == 100 for g in groupings)


def test_each_group_takes_the_cell_best_for_its_own_cardholders() -> None:
    # cell 0 is better for group 0, cell 1 for group 1; cell 1 is the better single cell
    values = np.array([[0.5, 0.5, 0.1, 0.1, 0.1],
                       [0.2, 0.2, 0.4, 0.4, 0.4]])
    labels = np.array([0, 0, 1, 1, 1])
    assert best_per_group(values, labels, 2).tolist() == [0, 1]
    # a group with nobody among the rows takes the best cell over the rows
    assert best_per_group(values, labels, 3).tolist() == [0, 1, 1]
    only_first = np.array([True, True, False, False, False])
    assert best_per_group(values, labels, 2, only_first).tolist() == [0, 0]


def test_cross_fitting_chooses_on_the_other_half_so_a_fluke_does_not_choose_for_itself() -> None:
    # group 0: cell 1 wins only on cardholder 0 (a fluke); on the other half cell 0 wins
    values = np.array([[0.0, 0.3, 0.3, 0.3],
                       [1.0, 0.2, 0.2, 0.2]])
    labels = np.zeros(4, dtype=np.int64)
    half = np.array([True, False, True, False])
    in_sample = best_per_group(values, labels, 1)
    assert in_sample.tolist() == [1]
    cells = cross_fitted(values, labels, 1, half)
    # half True (0, 2) is chosen on (1, 3): cell 0; half False on (0, 2): means 0.3 vs 0.6 -> cell 1
    assert cells.tolist() == [0, 1, 0, 1]


def test_each_cardholder_gets_the_ranking_of_its_own_cell() -> None:
    picks = np.array([[[1, 2], [3, 4]],
                      [[5, 6], [7, 8]]])
    assert composed(picks, np.array([1, 0])).tolist() == [[5, 6], [3, 4]]


def test_values_and_labels_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one label"):
        best_per_group(np.zeros((2, 3)), np.zeros(2, dtype=np.int64), 1)
