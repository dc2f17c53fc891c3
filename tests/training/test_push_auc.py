"""Pooled push AUC: opened holdout pushes ranked above ignored ones, overall and for non-readers."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.matrices import TrainingMatrices
from recsys.models.popularity import PopularityRecommender
from tests.features.handmade import with_pushes
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


def test_push_responses_leave_out_transactional_notices(hand_made) -> None:
    from features.pipeline import build_training_matrices
    from training.evaluate import push_responses

    split, as_of = pd.Timestamp("2024-06-05T00:00:00Z"), pd.Timestamp("2024-06-30T00:00:00Z")
    dataset = with_pushes(hand_made, [("p4", "u1", "c_bill", "2024-06-12T10:00:00Z", "2024-06-12T11:00:00Z")])
    train, _ = build_training_matrices(dataset, split)
    readers = dataset.article_reads.loc[(dataset.article_reads["ts"] <= split).to_numpy(), "user_id"]
    pushes = push_responses(dataset, split, as_of, train, readers)
    # p2 (c_travel, ignored) and p3 (c_dine, ignored) to u2, who never read; the opened statement
    # notice p4 is not a ranking outcome
    assert train.items.id_of(pushes.items).tolist() == ["c_travel", "c_dine"]
    assert train.users.id_of(pushes.rows).tolist() == ["u2", "u2"]
    assert not pushes.opened.any() and pushes.cold.all()
