"""`benchmarks/taste_transfer.py`: the gap-closed figure and the ridge, on cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.taste_transfer import gap_closed, ridge_scores, standardised_rows

TRUTH = np.array([[0.5, 0.1, 0.2],
                  [0.1, 0.4, 0.2],
                  [0.5, 0.1, 0.2],
                  [0.1, 0.4, 0.2]])


def test_gap_closed_is_one_at_the_oracle_zero_at_popularity_and_hand_computed_between() -> None:
    rows = np.arange(4)
    assert gap_closed(TRUTH, TRUTH, rows, popular=2) == pytest.approx(1.0)
    assert gap_closed(np.tile([0.0, 0.0, 1.0], (4, 1)), TRUTH, rows, popular=2) == pytest.approx(0.0)
    # item 0 for everyone: (0.3 - 0.2) / (0.45 - 0.2)
    assert gap_closed(np.tile([1.0, 0.0, 0.0], (4, 1)), TRUTH, rows, popular=2) == pytest.approx(0.4)


def test_a_ridge_on_features_that_determine_taste_carries_it_to_the_rows_it_was_not_fitted_on() -> None:
    groups = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32))
    scores = ridge_scores(groups, TRUTH, fit_rows=np.array([0, 1]), l2=1e-6)
    np.testing.assert_allclose(scores[2:], TRUTH[2:], atol=1e-4)
    assert gap_closed(scores, TRUTH, np.array([2, 3]), popular=2) == pytest.approx(1.0)
    # features that say nothing leave every row at the fitted rows' mean taste
    flat = ridge_scores(sp.csr_matrix(np.ones((4, 1), dtype=np.float32)), TRUTH, np.array([0, 1]), l2=1e-6)
    np.testing.assert_allclose(flat[2:], np.tile(TRUTH[:2].mean(axis=0), (2, 1)), atol=1e-4)


def test_the_push_outcome_ridge_fits_only_the_pushed_rows_and_carries_their_taste_to_the_others() -> None:
    from benchmarks.taste_transfer import push_deviation

    features = np.array([[-1.0], [1.0], [-1.0], [1.0]])
    # item 0 pushed to rows 0 and 1, only row 1 opened; item 1 never pushed
    sent = sp.csc_matrix(np.array([[1, 0], [1, 0], [0, 0], [0, 0]], dtype=np.float64))
    opened = sp.csc_matrix(np.array([[0, 0], [1, 0], [0, 0], [1, 1]], dtype=np.float64))
    deviation = push_deviation(features, sent, opened, l2=1.0)
    # slope = x'(y - 0.5) / (x'x + l2 * 2 sends) = 1 / 4, for pushed and unpushed rows alike
    np.testing.assert_allclose(deviation[:, 0], [-0.25, 0.25, -0.25, 0.25])
    # an open with no send behind it is no push outcome
    np.testing.assert_allclose(deviation[:, 1], 0.0)


def test_the_push_outcome_ridge_in_its_dual_form_equals_the_primal_one() -> None:
    from benchmarks.taste_transfer import push_deviation

    rng = np.random.default_rng(3)
    features = rng.normal(size=(40, 12))
    sent = sp.csc_matrix((rng.random((40, 1)) < 0.2).astype(np.float64))  # fewer sends than columns
    opened = sp.csc_matrix(sent.multiply(rng.random((40, 1)) < 0.5))
    rows = sent.indices
    fitted = features[rows] - features[rows].mean(axis=0)
    target = opened[rows, 0].toarray().ravel() - opened[rows, 0].toarray().mean()
    assert 2 <= rows.size <= features.shape[1]
    weights = np.linalg.solve(fitted.T @ fitted + 0.5 * rows.size * np.eye(12), fitted.T @ target)
    np.testing.assert_allclose(push_deviation(features, sent, opened, l2=0.5)[:, 0], features @ weights,
                               atol=1e-10)


def test_the_positive_ridge_and_the_tag_ridge_on_hand_computed_cases() -> None:
    from benchmarks.taste_transfer import positive_deviation, tag_deviation

    features = np.array([[-1.0], [1.0], [-1.0], [1.0]])
    positives = np.array([[0.0], [1.0], [0.0], [0.0]])
    # slope = x'(y - 0.25) / (x'x + l2 n) = 1 / (4 + 4)
    np.testing.assert_allclose(positive_deviation(sp.csr_matrix(features), positives, l2=1.0)[:, 0],
                               [-0.125, 0.125, -0.125, 0.125])
    # items 0 and 1 share a tag, item 2 has its own; only item 0 was pushed: item 1 gets the tag's taste
    tags = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float64))
    sent = sp.csc_matrix(np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=np.float64))
    opened = sp.csc_matrix(np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=np.float64))
    deviation = tag_deviation(features, sent, opened, tags, l2=1.0)
    np.testing.assert_allclose(deviation[:, 0], [-0.25, 0.25, -0.25, 0.25])
    np.testing.assert_allclose(deviation[:, 1], deviation[:, 0])
    np.testing.assert_allclose(deviation[:, 2], 0.0)


def test_sampled_labels_take_reads_and_opens_as_positives_and_only_old_enough_pushes_as_sent() -> None:
    from types import SimpleNamespace

    import pandas as pd

    from benchmarks.taste_transfer import sampled_labels

    as_of = pd.Timestamp("2026-09-01", tz="UTC")
    day = pd.Timedelta(days=1)
    reads = pd.DataFrame({"user_id": ["a", "b"], "content_id": ["x", "y"], "ts": [as_of - day, as_of + day]})
    pushes = pd.DataFrame({
        "user_id": ["a", "b", "b", "a"], "content_id": ["y", "x", "y", "x"],
        "sent_ts": [as_of - 5 * day, as_of - 5 * day, as_of - 0.5 * day, as_of - 3 * day],
        "opened_ts": [as_of - 4 * day, pd.NaT, pd.NaT, as_of + day]})
    dataset = SimpleNamespace(article_reads=reads, push_log=pushes)
    positives, sent, opened = sampled_labels(dataset, as_of, np.array(["a", "b"]), np.array(["x", "y"]), 2.0)
    # a read x and opened y; b's read is after the cut
    np.testing.assert_array_equal(positives, [[1, 1], [0, 0]])
    # b's push of y is younger than the grace days and unopened: not yet an outcome; a's open of x
    # comes after the cut, so that push counts as sent and ignored
    np.testing.assert_array_equal(sent.toarray(), [[1, 1], [1, 0]])
    np.testing.assert_array_equal(opened.toarray(), [[0, 1], [0, 0]])


def test_the_distilled_student_carries_the_teachers_reader_taste_to_the_non_readers(small_world) -> None:
    from benchmarks.taste_transfer import distilled_deviations
    from training.config import TrainConfig
    from training.truth import load_truth

    truth = load_truth(small_world.summary.truth)
    users = np.asarray(truth.user_ids).astype(str)
    items = np.asarray(truth.content_ids).astype(str)
    student, teacher = distilled_deviations(small_world.dataset, truth.as_of, TrainConfig(), users,
                                            np.append(items, "no such item"), l2=1.0, epochs=3)
    assert student.shape == teacher.shape == (users.size, items.size + 1)
    # an item the fitted data does not know gets no deviation
    assert not student[:, -1].any() and not teacher[:, -1].any()
    # the student sees features only, yet ranks the items for a non-reader much as the teacher does
    others = np.flatnonzero(~np.asarray(truth.user_reader, dtype=bool))
    agreement = np.corrcoef(student[others, :-1].ravel(), teacher[others, :-1].ravel())[0, 1]
    assert agreement > 0.5


def test_standardised_rows_centre_and_scale_each_row_and_leave_a_constant_row_at_zero() -> None:
    rows = standardised_rows(np.array([[1.0, 3.0], [2.0, 2.0]]))
    np.testing.assert_allclose(rows, [[-1.0, 1.0], [0.0, 0.0]])


def test_the_low_rank_choice_source_is_centred_per_item_and_not_the_full_rank_one(small_world) -> None:
    from benchmarks.taste_transfer import (
        choice_deviations,
        choice_inputs,
        low_rank_choice_deviations,
        on_offer,
    )
    from features.builder import FeatureBuilder
    from training.config import TrainConfig
    from training.truth import load_truth

    truth = load_truth(small_world.summary.truth)
    users = np.asarray(truth.user_ids).astype(str)
    items = np.asarray(truth.content_ids).astype(str)
    dataset = small_world.dataset
    live = on_offer(dataset.content, items, truth.as_of)
    builder = FeatureBuilder(TrainConfig().features).fit(dataset, truth.as_of)
    features = builder.transform_users(dataset, truth.as_of, users)
    item_features = builder.transform_items(dataset.content, items)
    names = builder.user_feature_names
    inputs = choice_inputs(dataset, truth.as_of, features, names, users, items)
    low = low_rank_choice_deviations(inputs, item_features, live, (2,), l2=0.01)[2]
    full = choice_deviations(inputs, live, (0.1,))[0.1]
    assert low.shape == full.shape == (users.size, int(live.sum()))
    np.testing.assert_allclose(low.mean(axis=0), 0.0, atol=1e-9)
    assert low.std() > 0 and not np.allclose(low, full, atol=1e-6)
