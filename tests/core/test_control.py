"""The decision's control share: a fixed, nested, proportionate set of cardholders."""

from __future__ import annotations

import numpy as np

from recsys.control import control_points, in_control


def test_each_cardholder_has_a_fixed_position_in_every_process() -> None:
    # a changed hash or key would redraw the control share, and the response models' evidence with it
    assert np.allclose(control_points(["u0000001", "c-42", "持卡人"]),
                       [0.5548906290997012, 0.13625537883059405, 0.5390470517837103])


def test_a_share_takes_about_that_share_and_a_smaller_share_is_inside_a_larger() -> None:
    ids = [f"user-{i}" for i in range(20_000)]
    small, large = in_control(ids, 0.05), in_control(ids, 0.2)
    assert abs(small.mean() - 0.05) < 0.006 and abs(large.mean() - 0.2) < 0.01
    assert not (small & ~large).any()


def test_no_share_has_no_control() -> None:
    assert not in_control(["a", "b", "c"], 0.0).any() and in_control([], 0.3).shape == (0,)
