"""Fixtures for the Dask path: a small seeded world, a bundle trained on it and a real LocalCluster
of two single-threaded worker processes (shared by the module's tests: workers take seconds to start)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def scale_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from worlds.generator import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("scale-world") / "world"
    generate_world(WorldConfig(users=500, items=60, days=45, seed=5), out)
    return out


@pytest.fixture(scope="session")
def scale_dataset(scale_world: Path):
    from features.loader import load_dataset

    return load_dataset(scale_world)


@pytest.fixture(scope="session")
def scale_parts(scale_world: Path, tmp_path_factory: pytest.TempPathFactory):
    """The world in 5 buckets of about 100 cardholders (partition size 120)."""
    from features.partitions import partition_dataset

    store = tmp_path_factory.mktemp("scale-parts") / "store"
    return partition_dataset(scale_world, store, partition_size=120)


@pytest.fixture(scope="session")
def scale_bundle_path(scale_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.simulation.small_bundle import train_small_bundle

    out = tmp_path_factory.mktemp("scale-bundle") / "bundle"
    train_small_bundle(scale_world, out)
    return out


@pytest.fixture(scope="session")
def scale_bundle(scale_bundle_path: Path):
    from recsys.bundle import ModelBundle

    return ModelBundle.load(scale_bundle_path)


@pytest.fixture(scope="session")
def dask_settings(tmp_path_factory: pytest.TempPathFactory):
    from recsys.config import Settings

    return Settings(home=tmp_path_factory.mktemp("scale-home"), dask_worker_memory="1GiB",
                    dask_partition_size=120)


@pytest.fixture(scope="session")
def dask_client(dask_settings) -> Iterator:
    import dask

    from recsys.cluster import dask_client

    # a task whose worker dies is not rerun elsewhere: the publish fails, as a lost worker would
    # make it fail with retries exhausted (the scheduler reads this when it starts)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            dask_client(dask_settings, workers=2) as client:
        yield client
