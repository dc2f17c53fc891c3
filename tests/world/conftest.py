"""Small seeded worlds shared by the world tests (generated once per session)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from features.loader import Dataset, load_dataset
from worlds import WorldConfig, WorldSummary, WorldTruth, generate_world


@dataclass(frozen=True)
class SmallWorld:
    summary: WorldSummary
    dataset: Dataset
    truth: WorldTruth


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> SmallWorld:
    """4,000 cardholders, 80 items, 90 days, seed 11."""
    root = tmp_path_factory.mktemp("world")
    summary = generate_world(WorldConfig(users=4_000, items=80, days=90, seed=11), root / "data")
    return SmallWorld(summary, load_dataset(summary.out), WorldTruth.load(summary.truth))


def file_bytes(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


@pytest.fixture(scope="session")
def scenario_world(tmp_path_factory: pytest.TempPathFactory):
    """Builds (once per session each) 3,000-cardholder worlds of 60 items and 60 days, seed 5, by scenario."""
    from worlds.scenario import Scenario

    built: dict[Scenario, SmallWorld] = {}
    root = tmp_path_factory.mktemp("scenarios")

    def build(scenario: Scenario) -> SmallWorld:
        if scenario not in built:
            out = root / f"w{len(built)}"
            config = WorldConfig(users=3_000, items=60, days=60, seed=5, scenario=scenario)
            summary = generate_world(config, out)
            built[scenario] = SmallWorld(summary, load_dataset(summary.out), WorldTruth.load(summary.truth))
        return built[scenario]

    return build
