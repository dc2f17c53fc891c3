"""`/readyz` fails when nothing is published or Redis is down; ranking then fails closed (503)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from serving_support import SCHEDULER_HEADERS

from recsys.embedded_redis import start_embedded_redis

pytestmark = pytest.mark.redis


def test_not_ready_until_a_version_is_published(api, bundle, dataset, store) -> None:
    from publishing.publish import publish

    response = api.get("/readyz")
    assert response.status_code == 503
    assert response.json()["redis"] is True and response.json()["model_version"] is None
    report = publish(bundle, dataset, store)
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json()["model_version"] == report.version


def test_a_broken_live_pointer_is_never_served(published, store, settings, redis_client, daytime) -> None:
    """A live pointer naming a damaged version: a fresh API starts not ready (no crash) and a
    running one keeps serving the verified version it has."""
    from serving.app import create_app

    with TestClient(create_app(settings)) as running:
        assert running.get("/readyz").status_code == 200
        redis_client.hdel(store.meta_key(published.version), "manifest")
        redis_client.hset(store.meta_key("broken"), mapping={"complete": "1", "users": "1"})
        redis_client.set(store.live_key, "broken")
        ready = running.get("/readyz")
        assert ready.status_code == 200 and ready.json()["model_version"] == published.version
        assert "broken" in ready.json()["detail"]
        with TestClient(create_app(settings)) as fresh:
            ready = fresh.get("/readyz")
            assert ready.status_code == 503 and "damaged" in ready.json()["detail"]
            ranked = fresh.post("/v1/rank", json={"user_id": "u1", "now": daytime}, headers=SCHEDULER_HEADERS)
            assert ranked.status_code == 503


def test_redis_down_means_not_ready_and_nothing_allowed(bundle, dataset, settings, daytime) -> None:
    import redis

    from publishing.publish import publish
    from recsys.publication import PublicationStore
    from serving.app import create_app

    server = start_embedded_redis()
    try:
        client = redis.Redis.from_url(server.url)
        publish(bundle, dataset, PublicationStore(client, settings.redis_prefix))
        client.close()
        local = settings.model_copy(update={"redis_url": server.url})
        user = dataset.cardholders["user_id"].astype(str).iloc[0]
        with TestClient(create_app(local)) as api:
            assert api.get("/readyz").status_code == 200
            server.stop()
            ready = api.get("/readyz")
            assert ready.status_code == 503 and ready.json()["redis"] is False
            assert "RECSYS_REDIS_URL" in ready.json()["detail"]
            assert api.get("/healthz").status_code == 200
            ranked = api.post("/v1/rank", json={"user_id": user, "now": daytime, "reserve": True},
                              headers=SCHEDULER_HEADERS)
            assert ranked.status_code == 503
            assert "nothing may be pushed" in ranked.json()["message"]
            events = api.post("/v1/events", headers=SCHEDULER_HEADERS, json={"events": [
                {"event_id": "e", "type": "opened", "user_id": user, "push_id": "p"}]})
            assert events.status_code == 503
    finally:
        server.stop()


def test_damaged_caps_state_fails_closed(api, published, dataset, daytime, redis_client) -> None:
    user = dataset.cardholders["user_id"].astype(str).iloc[3]
    engine = api.app.state.serving.engine
    redis_client.set(engine.user_key(user), "not a cardholder record")
    response = api.post("/v1/rank", json={"user_id": user, "now": daytime, "reserve": True},
                        headers=SCHEDULER_HEADERS)
    assert response.status_code == 503
    assert response.json()["message"].startswith("caps store (Redis) error, nothing may be pushed")


def test_a_server_process_freezes_start_up_objects_and_raises_the_young_threshold(published,
                                                                                 settings) -> None:
    """Only a server process (`freeze_gc`): a 1k batch's objects fit under the young-generation
    threshold, so the cyclic collector does not re-scan them while the batch is ranked."""
    import gc

    from serving.app import YOUNG_GC_THRESHOLD, create_app

    before = gc.get_threshold()
    assert before[0] < YOUNG_GC_THRESHOLD
    try:
        with TestClient(create_app(settings)) as client:
            assert client.get("/readyz").status_code == 200
            assert gc.get_threshold() == before
        with TestClient(create_app(settings, freeze_gc=True)) as client:
            assert client.get("/readyz").status_code == 200
            assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, *before[1:])
            assert gc.get_freeze_count() > 0
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
