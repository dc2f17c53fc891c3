"""`recsys synth --campaign-targeting`: past campaigns sent to the cardholders whose taste they match."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from qianmian.cli import app
from worlds import ResponseParams, WorldConfig, WorldConfigError, WorldTruth
from worlds.pushes import CampaignPlan, Targeting, targeted_slots
from worlds.response import ResponseModel
from worlds.scenario import SCENARIOS, Scenario


def _marketing_log(world) -> pd.DataFrame:
    """Marketing pushes with the receiver's true open probability and the item's mean over everyone."""
    data, truth = world.dataset, world.truth
    log = data.push_log.merge(data.content[["content_id", "transactional"]], on="content_id")
    log = log[~log["transactional"]]
    users = truth.user_index(log["user_id"].to_numpy())
    items = truth.content_index(log["content_id"].to_numpy())
    return log.assign(item=items, receiver_p=truth.open_prob[users, items],
                      everyone_p=truth.open_prob.mean(axis=0)[items])


def _receiver_lift(world) -> pd.Series:
    """Per item pushed at least 30 times: receivers' mean true open probability over everyone's."""
    per_item = _marketing_log(world).groupby("item").agg(
        sends=("receiver_p", "size"), receivers=("receiver_p", "mean"), everyone=("everyone_p", "first"))
    per_item = per_item[per_item["sends"] >= 30]
    return per_item["receivers"] / per_item["everyone"]


def _tiny_model(taste: np.ndarray | None = None) -> ResponseModel:
    """Three items about topic 0, topic 1 and half of each; by default two cardholders, one per topic."""
    taste = np.array([[1.0, 0.0], [0.0, 1.0]]) if taste is None else taste
    topics = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    return ResponseModel(ResponseParams(), np.zeros(len(taste)), taste, np.zeros(len(taste)), np.zeros(3),
                         topics, np.zeros(3, dtype=bool))


def test_a_fully_targeted_send_carries_the_best_matching_campaign_not_yet_received():
    plan = CampaignPlan(first_day=0, items=np.array([[0, 1, 2], [0, 1, 2], [0, 1, -1]]),
                        hours=np.full((3, 3), 9))
    user = np.array([0, 0, 0, 1, 1])
    day = np.array([0, 1, 2, 0, 1])
    random_slot = np.array([1, 1, 2, 0, 0])  # what the untargeted draw gave: kept only when untargeted
    allowed = plan.items[day] >= 0
    slot = targeted_slots(np.random.default_rng(0), user, day, random_slot, allowed, plan, _tiny_model(), 1.0)
    # cardholder 0 likes topic 0: item 0, then the half match 2, then 1; cardholder 1: item 1, then 2
    assert plan.items[day, slot].tolist() == [0, 2, 1, 1, 2]


def test_a_targeted_send_keeps_its_random_slot_when_every_campaign_was_received():
    plan = CampaignPlan(first_day=0, items=np.array([[0, -1, -1], [0, -1, -1]]), hours=np.full((2, 3), 9))
    user, day = np.array([0, 0]), np.array([0, 1])
    allowed = plan.items[day] >= 0
    slot = targeted_slots(np.random.default_rng(0), user, day, np.zeros(2, dtype=np.int64), allowed, plan,
                           _tiny_model(), 1.0)
    assert slot.tolist() == [0, 0]  # the repeat is dropped later, as untargeted repeats are


def test_only_the_targeted_share_of_sends_moves():
    plan = CampaignPlan(first_day=0, items=np.array([[0, 1, 2]] * 400), hours=np.full((400, 3), 9))
    day = user = np.arange(400)
    random_slot = np.ones(400, dtype=np.int64)  # item 1, every cardholder's worst match
    model = _tiny_model(np.tile([1.0, 0.0], (400, 1)))
    slot = targeted_slots(np.random.default_rng(3), user, day, random_slot, plan.items[day] >= 0, plan, model,
                          0.3)
    moved = slot != random_slot
    assert 0.22 < moved.mean() < 0.38
    assert (plan.items[day[moved], slot[moved]] == 0).all()


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_an_out_of_range_targeting_share_is_refused_naming_the_option(share):
    with pytest.raises(WorldConfigError, match="--campaign-targeting must be between 0 and 1"):
        WorldConfig(scenario=Scenario(campaign_targeting=share))
    with pytest.raises(ValueError, match="campaign targeting share"):
        Targeting(share, np.random.default_rng(0))


def test_untargeted_scenarios_keep_their_recorded_options():
    assert Scenario(campaign_targeting=0.0).is_default
    assert "campaign_targeting" not in SCENARIOS["merchants"].to_dict()  # their truth files stay as they were
    assert Scenario(campaign_targeting=0.5).to_dict()["campaign_targeting"] == 0.5


def test_targeted_campaigns_reach_the_cardholders_likeliest_to_open_them(scenario_world):
    plain, targeted = scenario_world(Scenario()), scenario_world(Scenario(campaign_targeting=0.8))
    # only the push log changes: the same cardholders, spend, menu use and reads
    for table in ("cardholders", "transactions", "menu_clicks", "article_reads", "content"):
        pd.testing.assert_frame_equal(getattr(plain.dataset, table), getattr(targeted.dataset, table))
    assert np.array_equal(plain.truth.open_prob, targeted.truth.open_prob)
    assert targeted.truth.scenario["campaign_targeting"] == 0.8

    plain_lift, targeted_lift = _receiver_lift(plain), _receiver_lift(targeted)
    assert len(plain_lift) > 20 and len(targeted_lift) > 20
    assert 0.9 < plain_lift.median() < 1.1, plain_lift.median()
    assert targeted_lift.median() > 1.2, targeted_lift.median()
    assert (targeted_lift > 1.0).mean() > 0.9
    # so an item's open rate over its sends overstates what everyone would do
    plain_log, targeted_log = _marketing_log(plain), _marketing_log(targeted)
    assert targeted_log["opened_ts"].notna().mean() > 1.15 * plain_log["opened_ts"].notna().mean()
    # about the same number of marketing sends, each (cardholder, item) at most once
    assert 0.9 < len(targeted_log) / len(plain_log) < 1.15
    assert not targeted_log.duplicated(["user_id", "content_id"]).any()


def test_cli_campaign_targeting(tmp_path):
    out = tmp_path / "w"
    result = CliRunner().invoke(app, ["synth", "--out", str(out), "--users", "300", "--items", "30", "--days",
                                      "30", "--campaign-targeting", "0.6"])
    assert result.exit_code == 0, result.output
    assert "campaign_targeting=0.6" in result.output
    assert WorldTruth.load(tmp_path / "w.truth.npz").scenario["campaign_targeting"] == 0.6
    refused = CliRunner().invoke(app, ["synth", "--out", str(tmp_path / "x"), "--campaign-targeting", "2"])
    assert refused.exit_code == 2
    assert "--campaign-targeting must be between 0 and 1, got 2.0" in refused.output
    assert not (tmp_path / "x").exists()
