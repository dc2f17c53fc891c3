"""Opened pushes weighted by the inverse of their item's push rate (`features/propensity.py`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.config import FeatureConfig, FeatureConfigError
from features.interactions import interaction_matrices, positive_events
from features.loader import Dataset
from features.pipeline import build_training_matrices
from features.propensity import inverse_push_rate_weights
from recsys.ids import IdIndex
from tests.features.handmade import AS_OF, with_pushes


def weights(opened_items, opened_groups, sent_items, sent_groups, sizes, n_items=2, power=1.0, prior=0.0,
            clip=100.0):
    return inverse_push_rate_weights(np.asarray(opened_items), np.asarray(opened_groups),
                                     np.asarray(sent_items), np.asarray(sent_groups), np.asarray(sizes),
                                     n_items, power, prior, clip)


def test_one_group_weights_each_items_opens_to_its_open_rate() -> None:
    # 10 cardholders; item 0 sent 5 times and opened twice, item 1 sent twice and opened once
    got = weights([0, 0, 1], [0, 0, 0], [0] * 5 + [1] * 2, [0] * 7, [10])
    # rates 0.5 and 0.2 -> 2, 2, 5 -> scaled to mean 1
    assert got == pytest.approx([2 / 3, 2 / 3, 5 / 3])
    per_item = np.bincount([0, 0, 1], weights=got)
    assert per_item[0] / per_item[1] == pytest.approx((2 / 5) / (1 / 2))  # the ratio of their open rates
    assert got.sum() == pytest.approx(3.0)


def test_segment_rates_shrink_toward_the_overall_rate() -> None:
    # groups of 2 and 3 cardholders; one item sent twice in the first group and once in the second
    got = weights([0, 0], [0, 1], [0, 0, 0], [0, 0, 1], [2, 3], n_items=1, prior=1.0)
    overall = 3 / 5
    raw = np.array([1 / ((2 + overall) / (2 + 1)), 1 / ((1 + overall) / (3 + 1))])
    assert got == pytest.approx(raw * 2 / raw.sum())


def test_power_and_clip() -> None:
    sent = ([0] * 8 + [1] * 2, [0] * 10)
    assert weights([0, 1], [0, 0], *sent, [10], power=0.0) == pytest.approx([1.0, 1.0])
    half = weights([0, 1], [0, 0], *sent, [10], power=0.5)
    assert half[1] / half[0] == pytest.approx(2.0)  # (0.8 / 0.2) ** 0.5
    # raw 1.25, 1.25, 5: the median is 1.25, so at clip 2 the last is 2.5, then all scaled to mean 1
    clipped = weights([0, 0, 1], [0, 0, 0], *sent, [10], clip=2.0)
    assert clipped == pytest.approx(np.array([1.25, 1.25, 2.5]) * 3 / 5)
    assert weights([], [], *sent, [10]).size == 0


def _pushed(hand_made: Dataset) -> Dataset:
    # c_dine goes to all three cardholders (opened by u1 and u3), c_travel to u2 and u1 (opened by u1),
    # the transactional c_bill to u3 (opened)
    return with_pushes(hand_made, [
        ("p4", "u3", "c_dine", "2024-06-05T10:00:00Z", "2024-06-05T12:00:00Z"),
        ("p5", "u1", "c_travel", "2024-06-12T10:00:00Z", "2024-06-12T10:30:00Z"),
        ("p6", "u3", "c_bill", "2024-06-15T10:00:00Z", "2024-06-15T11:00:00Z"),
    ])


def _dense(data: Dataset, config: FeatureConfig, segments=None) -> pd.DataFrame:
    users, items = IdIndex(data.cardholders["user_id"]), IdIndex(data.content["content_id"])
    positives, _ = interaction_matrices(data, AS_OF, users, items, config, segments)
    return pd.DataFrame(positives.toarray(), index=users.ids, columns=items.ids)


def test_item_propensity_on_a_known_push_log(hand_made: Dataset) -> None:
    data = _pushed(hand_made)
    off = _dense(data, FeatureConfig())
    on = _dense(data, FeatureConfig(open_propensity="item", open_propensity_clip=10.0))
    # push rates over 3 cardholders: c_dine 3/3, c_travel 2/3 -> raw 1, 1, 1.5 -> mean 1: 6/7, 6/7, 9/7
    ratio = (on / off.where(off > 0)).stack()
    assert ratio[("u1", "c_dine")] == pytest.approx(6 / 7, rel=1e-6)
    assert ratio[("u3", "c_dine")] == pytest.approx(6 / 7, rel=1e-6)
    assert ratio[("u1", "c_travel")] == pytest.approx(9 / 7, rel=1e-6)
    assert ratio[("u3", "c_bill")] == pytest.approx(1.0)  # transactional notices keep their weight
    assert ratio[("u1", "c_dine2")] == pytest.approx(1.0)  # reads are untouched
    assert set(ratio.index) == set(off.where(off > 0).stack().index)


def test_off_is_the_positives_as_before_and_power_zero_changes_nothing(hand_made: Dataset) -> None:
    data = _pushed(hand_made)
    off = _dense(data, FeatureConfig())
    events = positive_events(data, AS_OF, FeatureConfig())
    assert len(events) == 6  # two reads and four opens, undecayed, as the evaluation reads them
    users, items = IdIndex(data.cardholders["user_id"]), IdIndex(data.content["content_id"])
    from features.interactions import _to_matrix

    before = _to_matrix(events, AS_OF, users, items, FeatureConfig()).toarray()
    np.testing.assert_array_equal(off.to_numpy(), before)
    for mode in ("item", "segment"):
        flat = _dense(data, FeatureConfig(open_propensity=mode, open_propensity_power=0.0),
                      np.array(["a", "a", "b"], dtype=object))
        np.testing.assert_allclose(flat.to_numpy(), before, rtol=1e-6)


def test_segment_propensity_through_the_training_matrices(hand_made: Dataset) -> None:
    data = _pushed(hand_made)
    config = FeatureConfig(open_propensity="segment", open_propensity_prior=0.0, segment_by=("card_tier",))
    matrices, _ = build_training_matrices(data, AS_OF, config)
    plain, _ = build_training_matrices(data, AS_OF, FeatureConfig(segment_by=("card_tier",)))
    on = matrices.interactions.toarray()
    off = plain.interactions.toarray()
    u, c = list(matrices.users.ids).index, list(matrices.items.ids).index
    # every tier has one cardholder, and each opened marketing push was sent to its one cardholder: rate 1
    # within the segment (over all three cardholders c_travel's rate is 2/3, not c_dine's 1)
    for user, item in (("u1", "c_dine"), ("u3", "c_dine"), ("u1", "c_travel")):
        assert on[u(user), c(item)] == pytest.approx(off[u(user), c(item)], rel=1e-6)
    overall, _ = build_training_matrices(data, AS_OF, FeatureConfig(open_propensity="item"))
    assert overall.interactions.toarray()[u("u1"), c("c_travel")] > 1.2 * off[u("u1"), c("c_travel")]
    with pytest.raises(ValueError, match="segment"):
        users, items = IdIndex(data.cardholders["user_id"]), IdIndex(data.content["content_id"])
        interaction_matrices(data, AS_OF, users, items, config)


def test_bad_settings_are_named() -> None:
    with pytest.raises(FeatureConfigError, match="open_propensity must be one of"):
        FeatureConfig.from_dict({"open_propensity": "campaign"})
    with pytest.raises(FeatureConfigError, match="open_propensity must be a word"):
        FeatureConfig.from_dict({"open_propensity": 1})
    with pytest.raises(FeatureConfigError, match="open_propensity_power"):
        FeatureConfig.from_dict({"open_propensity_power": 1.5})
    with pytest.raises(FeatureConfigError, match="open_propensity_clip"):
        FeatureConfig.from_dict({"open_propensity_clip": 0.5})
    with pytest.raises(FeatureConfigError, match="open_propensity_prior"):
        FeatureConfig.from_dict({"open_propensity_prior": -1})
    assert FeatureConfig.from_dict({"open_propensity": "segment"}).open_propensity == "segment"
