"""Fixtures for the studio: a small synthetic world, settings pointing the studio at it, the app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from recsys.config import Settings
from tests.simulation.small_bundle import train_small_bundle

SCHEDULER = "studio-test-scheduler-5d21"
ADMIN = "studio-test-admin-8e4c"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
SCHEDULER_HEADERS = {"Authorization": f"Bearer {SCHEDULER}"}


@pytest.fixture(scope="session")
def studio_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from worlds import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("studio-world") / "world"
    generate_world(WorldConfig(users=500, items=60, days=60, seed=21), out)
    return out


@pytest.fixture
def studio_settings(redis_url: str, key_prefix: str, tmp_path: Path, studio_world_dir: Path) -> Settings:
    return Settings(
        redis_url=redis_url, redis_prefix=key_prefix, home=tmp_path / "home",
        scheduler_token=SecretStr(SCHEDULER), admin_token=SecretStr(ADMIN), reload_interval_seconds=0.0,
        data_dir=studio_world_dir, studio_users=300, studio_days=10,
    )


@pytest.fixture
def studio_api(studio_settings: Settings, redis_client: redis.Redis) -> Iterator[TestClient]:
    from serving.app import create_app

    with TestClient(create_app(studio_settings)) as client:
        yield client


@pytest.fixture(scope="session")
def studio_bundle(studio_world_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A small LightFM bundle trained on the studio world (so the API serves a published model)."""
    return train_small_bundle(studio_world_dir, tmp_path_factory.mktemp("studio-bundle") / "bundle")


@pytest.fixture
def studio_published(studio_bundle, redis_client: redis.Redis, key_prefix: str):
    from publishing.publish import publish
    from recsys.publication import PublicationStore

    bundle, dataset = studio_bundle
    store = PublicationStore(redis_client, key_prefix)
    return publish(bundle, dataset, store, model_uri="studio-test")
