"""Response models refitted only on pushes the send-or-hold decision did not choose."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.loader import load_dataset
from recsys.control import in_control
from tests.response.handmade import AS_OF, make_tables, write_tables
from training.response import (
    ResponseFitConfig,
    ResponseFitError,
    evidence,
    fit_response_models,
    marketing_pushes,
)

SINCE = AS_OF - pd.Timedelta(days=40)
SHARE = 0.5


def test_the_decisions_pushes_are_not_evidence_and_the_rest_is() -> None:
    users = [f"u{i}" for i in range(40)]
    control = in_control(users, SHARE)
    pushes = pd.DataFrame({"user_id": users * 2,
                           "sent_ts": [SINCE - pd.Timedelta(hours=1)] * 40 + [SINCE] * 40})
    kept = evidence(pushes, ResponseFitConfig(decided_since=SINCE, control_share=SHARE))
    assert kept[:40].all() and (kept[40:] == control).all() and 0 < control.sum() < 40
    assert evidence(pushes, ResponseFitConfig()).all()
    only_before = evidence(pushes, ResponseFitConfig(decided_since=SINCE))
    assert only_before[:40].all() and not only_before[40:].any()


@pytest.fixture(scope="module")
def chosen_log(tmp_path_factory: pytest.TempPathFactory):
    """The hand-made log after a decision that, from `SINCE` on, sent the treated cardholders only what
    they then opened: a log whose latest weeks overstate how often a push is opened."""
    tables = make_tables()
    log = tables["push_log"]
    sent = pd.to_datetime(log["sent_ts"], utc=True)
    treated = ~in_control(log["user_id"].astype(str), SHARE)
    chosen = (sent >= SINCE).to_numpy() & treated & (log["opened_ts"] == "").to_numpy()
    tables["push_log"] = log.loc[~chosen].reset_index(drop=True)
    return (load_dataset(write_tables(tmp_path_factory.mktemp("chosen") / "data", tables)),
            load_dataset(write_tables(tmp_path_factory.mktemp("whole") / "data", make_tables())))


def test_a_refit_on_what_the_decision_did_not_choose_is_not_misled_by_its_choices(chosen_log) -> None:
    dataset, whole = chosen_log
    naive, naive_report = fit_response_models(dataset, AS_OF)
    config = ResponseFitConfig(decided_since=SINCE, control_share=SHARE)
    fitted, report = fit_response_models(dataset, AS_OF, config)
    pushes = marketing_pushes(dataset, AS_OF, config.default_timezone)
    assert sum(report.pushes.values()) == int(evidence(pushes, config).sum()) < len(pushes)
    # the holdout's observed open rate: the control share's pushes, as the whole log's
    truth = marketing_pushes(whole, AS_OF, config.default_timezone)
    late = truth.loc[(truth["sent_ts"] > report.holdout_from).to_numpy()]
    true_rate = late["opened_ts"].notna().mean()
    assert (abs(report.holdout["open"].observed_rate - true_rate)
            < abs(naive_report.holdout["open"].observed_rate - true_rate))
    users, items = fitted.user_rows(late["user_id"]), fitted.item_rows(late["content_id"])
    hours, recent = late["hour"].to_numpy(), late["recent"].to_numpy()
    predicted = fitted.open_probability(users, items, hours, recent).mean()
    misled = naive.open_probability(naive.user_rows(late["user_id"]), naive.item_rows(late["content_id"]),
                                    hours, recent).mean()
    assert abs(predicted - true_rate) < abs(misled - true_rate)
    # every push still counts toward the recent count the API adds to its caps state
    at = np.full(len(fitted.user_ids), int(AS_OF.timestamp()))
    np.testing.assert_array_equal(fitted.history_counts(fitted.user_rows(fitted.user_ids), at),
                                  naive.history_counts(naive.user_rows(fitted.user_ids), at))


def test_settings_that_cannot_say_which_pushes_were_chosen_are_refused() -> None:
    with pytest.raises(ResponseFitError, match="give it with decided_since"):
        ResponseFitConfig(control_share=0.1)
    with pytest.raises(ResponseFitError, match=r"control_share must be in \[0, 0.5\]"):
        ResponseFitConfig(decided_since=SINCE, control_share=0.7)
