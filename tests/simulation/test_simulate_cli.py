"""`recsys caps simulate` end to end, the response model for real data, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qianmian.cli import app
from simulation.replay import load_world
from simulation.vector_caps import SimulationError

STRICT = """\
version: "strict-1"
name: strict
limits:
  - {name: daily, window: calendar_day, max: 1}
  - {name: monthly, window: calendar_month, max: 2}
min_gap: 3d
quiet_hours: {start: "22:00", end: "08:00"}
no_repeat: {window: forever}
"""


def run(*args: str):
    return CliRunner().invoke(app, ["caps", "simulate", *args])


def test_simulate_prints_tables_and_writes_charts(small_world_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "strict.yaml"
    policy.write_text(STRICT)
    out = tmp_path / "out"
    result = run("--data", str(small_world_dir), "--policy", "default", "--policy", str(policy),
                 "--days", "5", "--seed", "1", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "pushes sent" in result.output and "strict" in result.output and "limit:monthly" in result.output
    assert "synthetic world truth" in result.output  # the sibling truth file was found and used
    for name in ("summary", "blocked_by_rule", "segments", "daily"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    assert [outcome["label"] for outcome in report["outcomes"]] == ["default", "strict"]
    assert report["config"]["days"] == 5
    again = run("--data", str(small_world_dir), "--policy", "default", "--policy", str(policy),
                "--days", "5", "--seed", "1", "--out", str(tmp_path / "again"))
    second = json.loads((tmp_path / "again" / "report.json").read_text())
    for first, other in zip(report["outcomes"], second["outcomes"], strict=True):
        first.pop("seconds"), other.pop("seconds")
        assert first == other
    assert again.exit_code == 0


def test_bad_policy_file_names_the_field(small_world_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text(STRICT.replace("max: 2", "max: 0").replace("min_gap: 3d", "min_gap: soon"))
    result = run("--data", str(small_world_dir), "--policy", str(policy), "--days", "2")
    assert result.exit_code == 2
    assert "limits[1].max" in result.output and "min_gap" in result.output
    assert str(policy) in result.output


def test_missing_policy_file_is_a_clear_error(small_world_dir: Path, tmp_path: Path) -> None:
    result = run("--data", str(small_world_dir), "--policy", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and "cannot read the policy file" in result.output


def test_bad_slot_is_a_clear_error(small_world_dir: Path) -> None:
    result = run("--data", str(small_world_dir), "--policy", "default", "--slots", "09:00,25:00")
    assert result.exit_code == 2 and "25:00" in result.output


def test_unknown_scheduler_zone_is_a_clear_error(small_world_dir: Path) -> None:
    result = run("--data", str(small_world_dir), "--policy", "default", "--scheduler-timezone", "Mars/Base")
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "scheduler time zone" in result.output and "Mars/Base" in result.output


def test_unreadable_truth_file_is_a_clear_error(small_world_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.truth.npz"
    empty.write_bytes(b"")
    result = run("--data", str(small_world_dir), "--policy", "default", "--truth", str(empty), "--days", "1")
    assert result.exit_code == 2 and "unreadable" in result.output and str(empty) in result.output


def test_unwritable_out_is_refused_before_simulating(small_world_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run("--data", str(small_world_dir), "--policy", "default", "--days", "1",
                 "--out", str(blocker / "charts"))
    assert result.exit_code == 2 and "--out" in result.output and str(blocker) in result.output
    assert isinstance(result.exception, SystemExit)
    assert "pushes sent" not in result.output  # refused before simulating


def test_data_without_truth_needs_the_bundles_response_model(small_world_dir: Path, small_bundle_path: Path,
                                                             tmp_path: Path) -> None:
    """Real data has no hidden truth: the pushes are answered by the response model published with the
    ranking bundle (the API's own), and without one the simulation is refused, naming what to give."""
    from dataclasses import replace

    from features.loader import load_dataset
    from recsys.bundle import ModelBundle
    from training.response import fit_response_models

    data = tmp_path / "real"
    shutil.copytree(small_world_dir, data)  # no truth file beside it
    with pytest.raises(SimulationError, match="no hidden truth and no response model"):
        load_world(data)
    result = run("--data", str(data), "--policy", "default", "--days", "2")
    assert result.exit_code == 2 and "--truth" in result.output and "--model" in result.output

    dataset = load_dataset(data)
    response, _ = fit_response_models(dataset, dataset.time_range()[1])
    bundle = replace(ModelBundle.load(small_bundle_path), response=response)
    world = load_world(data, bundle=bundle, bundle_label="bundle")
    assert world.response_source.startswith("the bundle's response model")
    users = np.arange(world.n_users)
    item = int(world.candidates[0, 0])
    rested = world.response.mute_probability(users, np.ones(world.n_users), np.full(world.n_users, item))
    busy = world.response.mute_probability(users, np.full(world.n_users, 12), np.full(world.n_users, item))
    assert (busy >= rested).all() and 0.0005 < float(rested.mean()) < 0.1


def test_model_ranking_gives_eligible_personal_candidates(small_world_dir: Path, small_bundle_path: Path,
                                                          tmp_path: Path) -> None:
    from recsys.bundle import ModelBundle

    popular = load_world(small_world_dir, truth_path=small_world_dir.parent / "world.truth.npz")
    ranked = load_world(small_world_dir, truth_path=small_world_dir.parent / "world.truth.npz",
                        bundle=ModelBundle.load(small_bundle_path), bundle_label="bundle")
    assert ranked.ranking_source.startswith("model bundle")
    present = ranked.candidates >= 0
    assert present[:, 0].all()
    chosen = ranked.candidates[present]
    assert not ranked.items.transactional[chosen].any()
    # personal: far more distinct candidate lists than card tiers
    assert len({tuple(row) for row in ranked.candidates[:, :5].tolist()}) > 50
    assert len({tuple(row) for row in popular.candidates[:, :1].tolist()}) <= 10
    result = run("--data", str(small_world_dir), "--policy", "default", "--days", "3",
                 "--model", str(small_bundle_path))
    assert result.exit_code == 0, result.output
    assert f"model {small_bundle_path}" in result.output.replace("\n", "")
    bad = run("--data", str(small_world_dir), "--policy", "default", "--model", str(tmp_path / "missing"))
    assert bad.exit_code == 2 and "neither an existing bundle path" in bad.output
