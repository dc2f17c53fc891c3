"""IdIndex and TrainingMatrices: lookups, unknown ids, and inputs refused with a reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.ids import IdIndex, IdIndexError
from recsys.matrices import MatricesError, TrainingMatrices


def test_vectorised_lookup_with_unknown_ids() -> None:
    index = IdIndex(["c", "a", "b"])
    np.testing.assert_array_equal(index.index_of(["a", "zz", "c", "b"]), [1, -1, 0, 2])
    np.testing.assert_array_equal(index.id_of([2, 0]), ["b", "c"])
    assert len(index) == 3 and "a" in index and "zz" not in index
    assert IdIndex(index.to_list()) == index


def test_strict_lookup_names_unknown_ids() -> None:
    with pytest.raises(IdIndexError, match=r"2 unknown user.*\['x', 'y'\].*refit"):
        IdIndex(["a"]).index_of_strict(["a", "x", "y"], "user")


def test_duplicates_and_empty_ids_are_refused() -> None:
    with pytest.raises(IdIndexError, match="duplicate ids \\['a'\\]"):
        IdIndex(["a", "b", "a"])
    with pytest.raises(IdIndexError, match="empty id at position 1"):
        IdIndex(["a", ""])
    assert IdIndex.from_values(["b", "a", "b"]).to_list() == ["b", "a"]


def test_out_of_range_index() -> None:
    with pytest.raises(IdIndexError, match="out of range"):
        IdIndex(["a"]).id_of([1])


def test_matrices_check_their_shapes() -> None:
    interactions = sp.coo_matrix(np.array([[1, 0], [0, 2]], dtype=np.float32))
    data = TrainingMatrices.from_interactions(interactions)
    assert data.n_users == 2 and data.n_items == 2 and data.user_features.shape == (2, 0)
    with pytest.raises(MatricesError, match="shape"):
        TrainingMatrices.from_interactions(interactions, users=IdIndex(["a", "b", "c"]))
    with pytest.raises(MatricesError, match="names"):
        TrainingMatrices.from_interactions(interactions, user_features=sp.csr_matrix(np.ones((2, 2))),
                                           user_feature_names=("x",))
    with pytest.raises(MatricesError, match="> 0"):
        TrainingMatrices.from_interactions(sp.coo_matrix(np.array([[1, 0], [0, -2]], dtype=np.float32)))
    with pytest.raises(MatricesError, match="user_segments"):
        TrainingMatrices.from_interactions(interactions, user_segments=np.array(["a"]))
    with pytest.raises(MatricesError, match="empty"):
        TrainingMatrices.from_interactions(sp.coo_matrix((0, 2)))
    with pytest.raises(MatricesError, match="item_opens exceeds item_sends for 1 item"):
        dataclasses.replace(data, item_sends=np.array([2.0, 0.0]), item_opens=np.array([1.0, 1.0]))
    with pytest.raises(MatricesError, match="give both or neither"):
        dataclasses.replace(data, item_sends=np.array([2.0, 0.0]))
    with pytest.raises(MatricesError, match="item_sends must be 2 finite counts"):
        dataclasses.replace(data, item_sends=np.array([2.0, -1.0]), item_opens=np.zeros(2))
