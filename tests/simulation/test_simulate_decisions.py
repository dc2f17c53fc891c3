"""`recsys caps simulate` comparing send or hold settings: send-all against value-aware at several lambdas,
outcomes drawn from the truth at each push's local hour."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from recsys.caps.policy import default_policy
from simulation.runner import ScheduleConfig, decision_variants, simulate
from simulation.vector_caps import SimulationError
from tests.simulation.small_bundle import train_small_bundle
from worlds import WorldConfig, generate_world
from worlds.scenario import Scenario

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hour_world(tmp_path_factory: pytest.TempPathFactory):
    """800 cardholders with a strong preferred hour, and a bundle with response models fitted on them."""
    from simulation.replay import load_world
    from training.response import fit_response_models

    root = tmp_path_factory.mktemp("hour-world")
    summary = generate_world(WorldConfig(users=800, items=60, days=90, seed=4,
                                         scenario=Scenario(hour_preference=1.5)), root / "world")
    bundle, dataset = train_small_bundle(summary.out, root / "bundle")
    response, _ = fit_response_models(dataset, pd.Timestamp(dataset.time_range()[1]))
    bundle = replace(bundle, response=response)
    return load_world(summary.out, truth_path=summary.truth, bundle=bundle, bundle_label="test")


def test_value_aware_settings_hold_pushes_and_report_value_per_1000(hour_world) -> None:
    policies, labels = decision_variants([default_policy()], ["default"], [10.0, 200.0])
    assert labels == ["default send-all", "default lambda=10", "default lambda=200"]
    report = simulate(hour_world, policies, ScheduleConfig(days=30, seed=1, slots=("10:00", "19:30")),
                      labels=labels)
    send_all, lam10, lam200 = (outcome.total for outcome in report.outcomes)
    assert send_all.held == 0 and lam200.held > lam10.held
    assert lam200.sent < send_all.sent
    for tally in (send_all, lam10, lam200):
        assert tally.value_per_1k == pytest.approx(
            1000 * (tally.expected_opens - 10 * tally.expected_mutes) / tally.cardholders)
    # sending at the better hour of the day: more opens per push than sending at every slot
    assert lam10.opens_per_push > send_all.opens_per_push


def test_the_control_share_is_sent_whatever_the_value(hour_world) -> None:
    """With every push held below the threshold, only the control share is pushed, and each of them as
    often as send-all pushes them."""
    from recsys.control import in_control

    base = default_policy()
    held = base.model_copy(update={"decision": base.decision.model_copy(update={"min_value": 1.0})})
    controlled = held.model_copy(update={"decision": held.decision.model_copy(update={"control_share": 0.3})})
    send_all = base.model_copy(update={"decision": base.decision.model_copy(update={"enabled": False})})
    schedule = ScheduleConfig(days=10, seed=1, slots=("10:00", "19:30"))
    none, some, every = (outcome.total for outcome in simulate(
        hour_world, [held, controlled, send_all], schedule, labels=["held", "control", "send-all"]).outcomes)
    assert none.sent == 0 and some.sent > 0
    share = in_control(hour_world.user_ids, 0.3).mean()
    assert some.sent == pytest.approx(share * every.sent, rel=0.25)


def test_decision_settings_need_response_models_and_bounded_lambdas(small_world) -> None:
    with pytest.raises(SimulationError, match="outside 0-1000"):
        decision_variants([default_policy()], ["default"], [-1.0])
    assert small_world.decision_model is None  # no bundle: the simulator sends whatever the caps allow


def test_cli_refuses_mute_weights_without_response_models(small_world_dir: Path) -> None:
    from typer.testing import CliRunner

    from qianmian.cli import app

    args = ["caps", "simulate", "--data", str(small_world_dir), "--policy", "default", "--days", "2",
            "--mute-weights", "5,10"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "need response" in result.output
