"""Pooled push AUC: opened holdout pushes ranked above ignored ones, overall and for non-readers."""

from __future__ import annotations

import types

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.matrices import TrainingMatrices
from recsys.models.popularity import PopularityRecommender
from training.evaluate import PushResponses, push_auc


def holdout_with(rows: list[int], items: list[int], opened: list[bool], cold: list[bool]):
    # item 0 read by three cardholders, item 1 by two, item 2 by one: popularity scores 0 > 1 > 2
    reads = sp.coo_matrix(np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=np.float32))
    train = TrainingMatrices.from_interactions(reads)
    pushes = PushResponses(rows=np.asarray(rows), items=np.asarray(items), opened=np.asarray(opened),
                           cold=np.asarray(cold))
    model = PopularityRecommender(by_segment=False).fit(train)
    return model, types.SimpleNamespace(train=train, pushes=pushes)


def test_push_auc_counts_opened_above_ignored_pairs() -> None:
    model, holdout = holdout_with([0, 1, 2, 0], [0, 2, 1, 2], [True, False, True, False],
                                  [False, True, True, False])
    everyone = np.ones(4, dtype=bool)
    assert push_auc(model, holdout, everyone) == (pytest.approx(1.0), 3)
    # reversed outcomes: every opened push scores below every ignored one
    model, holdout = holdout_with([0, 1, 2, 0], [0, 2, 1, 2], [False, True, False, True],
                                  [False, True, True, False])
    assert push_auc(model, holdout, everyone)[0] == pytest.approx(0.0)
    # the non-readers' slice: one opened (item 1) and one ignored (item 2) push
    model, holdout = holdout_with([0, 1, 2, 0], [0, 2, 1, 2], [True, False, True, False],
                                  [False, True, True, False])
    assert push_auc(model, holdout, holdout.pushes.cold) == (pytest.approx(1.0), 2)
    # ties count one half; without both outcomes the AUC is undefined
    model, holdout = holdout_with([0, 1], [2, 2], [True, False], [True, True])
    assert push_auc(model, holdout, np.ones(2, dtype=bool))[0] == pytest.approx(0.5)
    auc, users = push_auc(model, holdout, np.array([True, False]))
    assert np.isnan(auc) and users == 1
