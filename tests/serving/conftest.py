"""Fixtures for the ranking API tests: a small seeded world, a model bundle trained on it, a
publication in the test's Redis key prefix and an app (TestClient: httpx over ASGI, lifespan run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from serving_support import ADMIN, SCHEDULER, train_bundle

from recsys.config import Settings


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from worlds.generator import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("serving-world") / "world"
    generate_world(WorldConfig(users=600, items=80, days=60, seed=11), out)
    return out


@pytest.fixture(scope="session")
def dataset(world_dir: Path):
    from features.loader import load_dataset

    return load_dataset(world_dir)


@pytest.fixture(scope="session")
def bundle_path(dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_bundle(dataset, tmp_path_factory.mktemp("serving-bundle") / "bundle")


@pytest.fixture(scope="session")
def other_bundle_path(dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second model (another seed) for hot-reload tests."""
    return train_bundle(dataset, tmp_path_factory.mktemp("serving-bundle-2") / "bundle", seed=99, epochs=2)


@pytest.fixture(scope="session")
def bundle(bundle_path: Path):
    from recsys.bundle import ModelBundle

    return ModelBundle.load(bundle_path)


@pytest.fixture(scope="session")
def response_bundle(bundle, dataset, as_of_session: pd.Timestamp):
    """The serving bundle with response models fitted on the world's push log (as `recsys train` does)."""
    from dataclasses import replace

    from training.response import fit_response_models

    model, _ = fit_response_models(dataset, as_of_session)
    return replace(bundle, response=model)


@pytest.fixture(scope="session")
def as_of_session(dataset) -> pd.Timestamp:
    return dataset.time_range()[1]


@pytest.fixture
def store(redis_client: redis.Redis, key_prefix: str):
    from recsys.publication import PublicationStore

    return PublicationStore(redis_client, key_prefix)


@pytest.fixture
def published(bundle, dataset, store):
    from publishing.publish import publish

    return publish(bundle, dataset, store, model_uri="test-bundle")


@pytest.fixture
def server_time(as_of: pd.Timestamp) -> pd.Timestamp:
    """The API's fixed clock: 09:00 Shanghai the day after the as-of day, so every time of the
    as-of day is in its past and no test depends on today's date."""
    return as_of.tz_convert("Asia/Shanghai").normalize() + pd.Timedelta(days=1, hours=9)


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path, server_time: pd.Timestamp) -> Settings:
    return Settings(
        redis_url=redis_url, redis_prefix=key_prefix, home=tmp_path / "home",
        scheduler_token=SecretStr(SCHEDULER), admin_token=SecretStr(ADMIN), reload_interval_seconds=0.0,
        server_time=server_time.to_pydatetime(),
    )


@pytest.fixture
def api(settings: Settings, redis_client: redis.Redis) -> Iterator[TestClient]:
    """The app over the test's key prefix (nothing published unless the test asks for `published`)."""
    from serving.app import create_app

    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def as_of(dataset) -> pd.Timestamp:
    return dataset.time_range()[1]


@pytest.fixture
def daytime(as_of: pd.Timestamp) -> str:
    """A decision time outside the default quiet hours (10:00 Shanghai on the as-of day)."""
    local = as_of.tz_convert("Asia/Shanghai").normalize() + pd.Timedelta(hours=10)
    return local.isoformat()
