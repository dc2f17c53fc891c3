"""`recsys caps simulate` end to end, the fitted response model for real data, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qianmian.cli import app
from simulation.replay import load_world
from simulation.response_fit import ResponseFitError, fit_binomial, recent_counts

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


def test_fitted_response_for_data_without_truth(small_world_dir: Path) -> None:
    """Without a truth file the response model is fitted on the push log: per-segment open and mute
    rates that never fall (mutes) or rise (opens) with push frequency."""
    world = load_world(small_world_dir)
    assert world.response_source.startswith("fitted from push_log")
    response = world.response
    users = np.arange(world.n_users)
    rested = response.mute_probability(users, np.ones(world.n_users))
    busy = response.mute_probability(users, np.full(world.n_users, 12))
    assert (busy >= rested).all()
    assert 0.001 < float(rested.mean()) < 0.1
    opens = response.open_probability(users[:, None], np.arange(len(world.content_ids))[None, :],
                                      np.ones((world.n_users, 1)))
    assert 0.01 < float(opens.mean()) < 0.6


def test_no_push_log_and_no_truth_is_refused(small_world_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "no-pushes"
    shutil.copytree(small_world_dir, data)
    for path in data.glob("push_log.*"):
        path.unlink()
    with pytest.raises(ResponseFitError, match="push log has 0 marketing pushes"):
        load_world(data)
    result = run("--data", str(data), "--policy", "default", "--days", "2")
    assert result.exit_code == 2 and "--truth" in result.output


def test_logistic_fit_recovers_known_rates_and_frequency_slope() -> None:
    rng = np.random.default_rng(0)
    true_cells, true_slope = np.array([-4.0, -3.0, -5.0]), 0.3
    n = 300_000
    cells = rng.integers(0, 3, n)
    recent = rng.integers(1, 15, n)
    hits = rng.random(n) < 1 / (1 + np.exp(-(true_cells[cells] + true_slope * recent)))
    groups = np.unique(np.stack([cells, recent], axis=1), axis=0, return_inverse=True)[1].reshape(-1)
    size = np.bincount(groups)
    total = np.bincount(groups, weights=hits)
    first = np.unique(groups, return_index=True)[1]
    coef, slope = fit_binomial(cells[first][:, None], 3, recent[first].astype(float), size.astype(float),
                               total, np.full(3, 1e-6), slope_sign=1.0)
    assert slope == pytest.approx(true_slope, abs=0.02)
    assert coef == pytest.approx(true_cells, abs=0.12)


def test_recent_counts_counts_the_trailing_window_per_cardholder() -> None:
    users = np.array([0, 0, 0, 1, 0, 1, 1])
    sent = np.array([0, 10, 25, 5, 31, 34, 64])
    # window (t - 30, t]: the push at 0 has left by 31 (and the one at 34 by 64)
    assert recent_counts(users, sent, 30).tolist() == [1, 2, 3, 1, 3, 2, 1]


def test_model_ranking_gives_eligible_personal_candidates(small_world_dir: Path, small_bundle_path: Path,
                                                          tmp_path: Path) -> None:
    from recsys.bundle import ModelBundle

    popular = load_world(small_world_dir)
    ranked = load_world(small_world_dir, bundle=ModelBundle.load(small_bundle_path), bundle_label="bundle")
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
