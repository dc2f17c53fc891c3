"""Fixtures for the studio: a small synthetic world, settings pointing the studio at it, the app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from recsys.config import Settings

SCHEDULER = "studio-test-scheduler-5d21"
ADMIN = "studio-test-admin-8e4c"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
SCHEDULER_HEADERS = {"Authorization": f"Bearer {SCHEDULER}"}


@pytest.fixture(scope="session")
def studio_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recsys.world import WorldConfig, generate_world

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
    from features.loader import load_dataset
    from features.pipeline import build_training_matrices
    from recsys.bundle import ModelBundle, item_metadata
    from recsys.models.lightfm_hybrid import LightFMHybrid

    dataset = load_dataset(studio_world_dir)
    as_of = dataset.time_range()[1]
    matrices, builder = build_training_matrices(dataset, as_of)
    model = LightFMHybrid(no_components=8, epochs=3, num_threads=1, random_state=5).fit(matrices)
    bundle = ModelBundle(
        model=model, users=matrices.users, items=matrices.items, feature_state=builder.to_dict(),
        item_meta=item_metadata(dataset.content, matrices.items), user_segments=matrices.user_segments,
        as_of=as_of,
    )
    bundle.save(tmp_path_factory.mktemp("studio-bundle") / "bundle")
    return bundle, dataset


@pytest.fixture
def studio_published(studio_bundle, redis_client: redis.Redis, key_prefix: str):
    from recsys.publication import PublicationStore
    from recsys.publish import publish

    bundle, dataset = studio_bundle
    store = PublicationStore(redis_client, key_prefix)
    return publish(bundle, dataset, store, top_n=10, model_uri="studio-test")
