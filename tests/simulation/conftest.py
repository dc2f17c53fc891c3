"""A small synthetic world (tables + hidden truth) shared by the simulation and studio tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.caps.policy import parse_policy
from tests.simulation.small_bundle import train_small_bundle
from worlds import WorldConfig, generate_world

SMALL_WORLD = WorldConfig(users=600, items=60, days=60, seed=5)


@pytest.fixture(scope="session")
def small_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 600-cardholder world; its truth is the sibling `<dir>.truth.npz`."""
    out = tmp_path_factory.mktemp("sim-world") / "world"
    generate_world(SMALL_WORLD, out)
    return out


@pytest.fixture(scope="session")
def small_world(small_world_dir: Path):
    from simulation.replay import load_world

    return load_world(small_world_dir, truth_path=small_world_dir.parent / "world.truth.npz")


def policy_from(**rules):
    return parse_policy({"version": "test", **rules}, "test policy")


@pytest.fixture(scope="session")
def strict_policy():
    return policy_from(
        name="strict",
        limits=[{"name": "daily", "window": "calendar_day", "max": 1},
                {"name": "monthly", "window": "calendar_month", "max": 2}],
        min_gap="3d",
        quiet_hours={"start": "22:00", "end": "08:00"},
        no_repeat={"window": "forever"},
        fatigue={"after_unopened": 2, "pause": "14d"},
    )


@pytest.fixture(scope="session")
def loose_policy():
    return policy_from(
        name="loose",
        limits=[{"name": "daily", "window": "calendar_day", "max": 3},
                {"name": "monthly", "window": "calendar_month", "max": 40}],
        quiet_hours={"start": "22:00", "end": "08:00"},
        no_repeat={"window": "forever"},
    )


@pytest.fixture(scope="session")
def small_bundle_path(small_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LightFM bundle trained on the small world, saved as a bundle directory."""
    out = tmp_path_factory.mktemp("sim-bundle") / "bundle"
    train_small_bundle(small_world_dir, out)
    return out
