"""The decision's uplift against its control share: group figures over every cardholder, the ratio and
its interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.control import in_control
from recsys.uplift import UpliftError, mean_ratio, push_log_uplift

SINCE, UNTIL = pd.Timestamp("2026-11-01T00:00Z"), pd.Timestamp("2026-12-01T00:00Z")


def test_the_interval_covers_the_true_ratio_about_95_times_in_100() -> None:
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(400):
        treated, control = rng.poisson(0.6, 5_000), rng.poisson(0.4, 500)
        ratio = mean_ratio(treated, control)
        covered += ratio.low <= 1.5 <= ratio.high
    assert 0.92 <= covered / 400 <= 0.98


def test_a_control_share_worth_nothing_has_no_ratio() -> None:
    assert mean_ratio(np.ones(3), np.zeros(3)).text().startswith("no ratio")
    with pytest.raises(UpliftError, match="a group is empty"):
        mean_ratio(np.ones(3), np.zeros(0))


def test_every_cardholder_counts_pushed_or_not_and_only_the_periods_pushes() -> None:
    ids = np.array([f"u{i:03d}" for i in range(200)])
    control = in_control(ids, 0.5)
    treated_ids, control_ids = ids[~control], ids[control]
    rows = []
    # the first 10 treated cardholders: one opened push each; the first 4 control ones: two pushes, one
    # opened and one muted; plus a push before the period, one after it and one to someone not asked
    for user in treated_ids[:10]:
        rows.append((user, "2026-11-05T02:00Z", "2026-11-05T03:00Z", False))
    for user in control_ids[:4]:
        rows += [(user, "2026-11-05T02:00Z", "2026-11-05T03:00Z", False),
                 (user, "2026-11-09T02:00Z", None, True)]
    rows += [(treated_ids[0], "2026-10-31T23:00Z", "2026-10-31T23:30Z", False),
             (treated_ids[0], "2026-12-01T00:00Z", "2026-12-01T00:30Z", False),
             ("stranger", "2026-11-05T02:00Z", "2026-11-05T03:00Z", False)]
    log = pd.DataFrame(rows, columns=["user_id", "sent_ts", "opened_ts", "muted"])
    log["push_id"] = [f"p{i}" for i in range(len(log))]
    uplift = push_log_uplift(log, ids, 0.5, SINCE, UNTIL, mute_weight=10.0)
    n_treated, n_control = len(treated_ids), len(control_ids)
    assert (uplift.treated.cardholders, uplift.control.cardholders) == (n_treated, n_control)
    assert uplift.treated.pushes == pytest.approx(10 / n_treated)
    assert uplift.treated.value == pytest.approx(10 / n_treated)
    assert uplift.control.pushes == pytest.approx(8 / n_control)
    assert uplift.control.mutes == pytest.approx(4 / n_control)
    assert uplift.control.value == pytest.approx((4 - 40) / n_control)
    assert np.isnan(uplift.ratio.value)  # the control share's value is negative
    assert "value per cardholder, treated / control: no ratio" in "\n".join(uplift.lines())


def test_inputs_that_cannot_measure_an_uplift_are_refused() -> None:
    log = pd.DataFrame(columns=["push_id", "user_id", "sent_ts", "opened_ts", "muted"])
    with pytest.raises(UpliftError, match="without one there is nothing to measure against"):
        push_log_uplift(log, np.array(["a", "b"]), 0.0, SINCE, UNTIL)
    with pytest.raises(UpliftError, match="the period is empty"):
        push_log_uplift(log, np.array(["a", "b"]), 0.2, UNTIL, SINCE)
    with pytest.raises(UpliftError, match="no cardholder of the 1 is in the"):
        push_log_uplift(log, np.array(["a"]), 0.5, SINCE, UNTIL)
