"""A publication from the registry records the registered model name and version; answers give them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serving_support import SCHEDULER_HEADERS
from typer.testing import CliRunner

from qianmian.cli import app
from recsys.config import get_settings
from training.tracking import Tracker, TrackingError, registry_source

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def registry_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECSYS_MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_publish_records_the_registry_version_and_answers_give_it(
        registry_home, bundle_path, world_dir, redis_url, key_prefix, store, api, dataset, daytime) -> None:
    tracker = Tracker(registry_home.tracking_uri, registry_home.artifact_root, "registry-test")
    tracker.client.create_registered_model("push-ranker")
    for _ in range(2):
        tracker.client.create_model_version("push-ranker", source=bundle_path.resolve().as_uri())
    tracker.set_champion("push-ranker", "2")
    uri = registry_home.tracking_uri
    assert registry_source("models:/push-ranker@champion", uri) == ("push-ranker", "2")
    assert registry_source("models:/push-ranker/1", uri) == ("push-ranker", "1")
    assert registry_source(str(bundle_path), uri) is None
    with pytest.raises(TrackingError, match="has no alias 'gold'"):
        registry_source("models:/push-ranker@gold", uri)

    result = CliRunner().invoke(app, ["publish", "--model", "models:/push-ranker@champion", "--data",
                                      str(world_dir), "--redis", redis_url, "--prefix", key_prefix, "--json"])
    assert result.exit_code == 0, result.output
    version = json.loads(result.stdout[result.stdout.index("{"):])["version"]
    manifest = store.load(version).manifest
    assert (manifest["registry_model"], manifest["registry_version"]) == ("push-ranker", "2")
    assert manifest["model_uri"] == "models:/push-ranker@champion"

    user = dataset.cardholders["user_id"].astype(str).iloc[3]
    ranked = api.post("/v1/rank", json={"user_id": user, "now": daytime}, headers=SCHEDULER_HEADERS).json()
    assert (ranked["model_version"], ranked["registry_model"], ranked["registry_version"]) == (
        version, "push-ranker", "2")
    batch = api.post("/v1/rank/batch", json={"requests": [{"user_id": user, "now": daytime}]},
                     headers=SCHEDULER_HEADERS).json()
    assert (batch["registry_model"], batch["registry_version"]) == ("push-ranker", "2")
    assert batch["results"][0]["registry_version"] == "2"
    ready = api.get("/readyz").json()
    assert (ready["model_version"], ready["registry_model"], ready["registry_version"]) == (
        version, "push-ranker", "2")


def test_a_publication_from_a_path_names_no_registry_version(api, published, dataset, daytime) -> None:
    user = dataset.cardholders["user_id"].astype(str).iloc[3]
    ranked = api.post("/v1/rank", json={"user_id": user, "now": daytime}, headers=SCHEDULER_HEADERS).json()
    assert ranked["registry_model"] is None and ranked["registry_version"] is None
    ready = api.get("/readyz").json()
    assert ready["model_version"] == published.version and ready["registry_version"] is None
