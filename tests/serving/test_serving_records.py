"""The live version's records held in the worker: same records as Redis, bounded, swapped on publish."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from serving_support import SCHEDULER_HEADERS

from serving.app import create_app
from serving.state import ServingState

pytestmark = pytest.mark.redis


def holders(dataset) -> list[str]:
    return dataset.cardholders["user_id"].astype(str).tolist()


def started(settings) -> ServingState:
    state = ServingState(settings)
    state.start()
    assert state.records is not None and state.records.wait(30)
    return state


def test_every_record_is_held_and_equals_the_published_one(settings, redis_client, store, published,
                                                           dataset) -> None:
    state = started(settings)
    try:
        records = state.records
        users = holders(dataset)
        assert records.complete and len(records.records) == len(users)
        stored = redis_client.mget([store.user_key(published.version, u) for u in users])
        assert state.user_records(published.version, users) == stored

        def no_round_trip(*args, **kwargs):
            raise AssertionError("a held version asked Redis for a record")

        state.client.mget = state.client.get = no_round_trip  # type: ignore[method-assign]
        assert state.user_records(published.version, ["not-published", users[0]]) == [None, stored[0]]
    finally:
        state.close()


def test_at_most_the_limit_is_held_and_the_rest_is_read_from_redis(settings, redis_client, store, published,
                                                                   dataset) -> None:
    state = started(settings.model_copy(update={"record_cache_size": 7}))
    try:
        users = holders(dataset)
        assert len(state.records.records) == 7 and not state.records.complete
        stored = redis_client.mget([store.user_key(published.version, u) for u in users])
        assert state.user_records(published.version, [*users, "not-published"]) == [*stored, None]
        assert len(state.records.records) == 7
    finally:
        state.close()


def test_without_a_copy_every_record_comes_from_redis(settings, store, published, dataset) -> None:
    state = ServingState(settings.model_copy(update={"record_cache_size": 0}))
    state.start()
    try:
        users = holders(dataset)[:5]
        assert state.records.wait(0) and state.records.records == {}
        assert state.user_records(published.version, users) == state.client.mget(
            [store.user_key(published.version, u) for u in users])
    finally:
        state.close()


def test_a_new_publication_replaces_the_held_records(settings, bundle, other_bundle_path, dataset,
                                                     store, published) -> None:
    from publishing.publish import publish
    from recsys.bundle import ModelBundle

    state = started(settings)
    try:
        first = state.records
        second = publish(ModelBundle.load(other_bundle_path), dataset, store, model_uri="other")
        state.snapshot()  # reload_interval_seconds=0: looks at the live pointer now
        assert state.records is not first and state.records.version == second.version
        assert state.records.wait(30) and state.records.complete
        user = holders(dataset)[0]
        stored = store.client.get(store.user_key(second.version, user))
        assert state.user_records(second.version, [user]) == [stored]
        assert state.user_records(second.version, [user]) != state.user_records(published.version, [user])
    finally:
        state.close()


def test_answers_are_the_same_with_and_without_held_records(settings, published, dataset, daytime) -> None:
    apps = create_app(settings), create_app(settings.model_copy(update={"record_cache_size": 0}))
    with TestClient(apps[0]) as held, TestClient(apps[1]) as read:
        held.app.state.serving.records.wait(30)
        for user in [*holders(dataset)[:25], "not-published"]:
            body = {"user_id": user, "k": 4, "now": daytime}
            answers = [client.post("/v1/rank", json=body, headers=SCHEDULER_HEADERS)
                       for client in (held, read)]
            assert answers[0].status_code == 200
            assert answers[0].content == answers[1].content
