"""The ranking API over a Redis Cluster: records read per hash slot (an MGET must not cross slots),
the held copy gathered from every primary, and the same answers as over one Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from redis.cluster import RedisCluster
from serving_support import SCHEDULER_HEADERS

from recsys.publication import PublicationStore
from recsys.redis_client import connect, get_many
from serving.app import create_app
from serving.state import ServingState

pytestmark = [pytest.mark.redis, pytest.mark.cluster]


@pytest.fixture
def cluster_client(cluster_url: str) -> Iterator[RedisCluster]:
    client = connect(cluster_url, socket_timeout=10)
    assert isinstance(client, RedisCluster)  # asked the server: it runs in cluster mode
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def cluster_published(bundle, dataset, cluster_client, key_prefix):
    from publishing.publish import publish

    return publish(bundle, dataset, PublicationStore(cluster_client, key_prefix), model_uri="test-bundle")


@pytest.fixture
def cluster_settings(settings, cluster_url):
    return settings.model_copy(update={"redis_url": cluster_url, "redis_cluster": True})


def holders(dataset) -> list[str]:
    return dataset.cardholders["user_id"].astype(str).tolist()


def test_one_redis_is_not_taken_for_a_cluster(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        assert type(client) is redis.Redis
    finally:
        client.close()


def test_records_spread_over_the_primaries_are_read_per_slot(cluster_settings, cluster_client, key_prefix,
                                                             cluster_published, dataset) -> None:
    store = PublicationStore(cluster_client, key_prefix)
    users = holders(dataset)
    keys = [store.user_key(cluster_published.version, user) for user in users]
    assert len({cluster_client.get_node_from_key(key).name for key in keys[:60]}) == 3
    with pytest.raises(redis.RedisClusterException):
        cluster_client.mget(keys[:60])  # what one MGET over the records would do
    stored = get_many(cluster_client, keys)
    assert all(blob is not None for blob in stored)
    assert stored == [cluster_client.get(key) for key in keys]
    state = ServingState(cluster_settings.model_copy(update={"record_cache_size": 0}))
    state.start()
    try:
        assert isinstance(state.client, RedisCluster) and state.model is not None
        assert state.user_records(cluster_published.version, [*users, "not-published"]) == [*stored, None]
        assert state.user_records(cluster_published.version, [users[3]]) == [stored[3]]
    finally:
        state.close()
    held = ServingState(cluster_settings)
    held.start()
    try:
        assert held.records is not None and held.records.wait(30)
        assert held.records.complete and len(held.records.records) == len(users)
        assert held.user_records(cluster_published.version, users) == stored
    finally:
        held.close()


def test_the_api_answers_from_a_cluster_as_from_one_redis(settings, cluster_settings, published,
                                                          cluster_published, dataset, daytime) -> None:
    apps = create_app(settings), create_app(cluster_settings)
    with TestClient(apps[0]) as single, TestClient(apps[1]) as clustered:
        for user in [*holders(dataset)[:20], "not-published"]:
            body = {"user_id": user, "k": 4, "now": daytime}
            answers = [client.post("/v1/rank", json=body, headers=SCHEDULER_HEADERS)
                       for client in (single, clustered)]
            assert answers[0].status_code == 200, answers[0].text
            assert answers[1].status_code == 200, answers[1].text
            assert answers[0].json()["items"] == answers[1].json()["items"]


def test_revisions_stored_under_untagged_keys_are_adopted(redis_client, key_prefix) -> None:
    from recsys.caps.policy import default_policy
    from serving.policy_store import PolicyStore

    store = PolicyStore(redis_client, key_prefix)
    first = store.ensure(default_policy())
    second = store.put(default_policy(), "alice", note="again")
    assert (first.revision, second.revision) == (1, 2)
    untagged = [f"{key_prefix}:policy:current", f"{key_prefix}:policy:rev:1", f"{key_prefix}:policy:rev:2"]
    for old, new in zip(untagged, [store.current_key, *(f"{store.revision_prefix}{n}" for n in (1, 2))],
                        strict=True):
        redis_client.rename(new, old)  # the layout an earlier release wrote
    restarted = PolicyStore(redis_client, key_prefix)
    assert restarted.ensure(default_policy()) == second
    assert [rev.revision for rev in restarted.history()] == [2, 1]
    assert not redis_client.exists(*untagged)
    assert restarted.adopt_untagged() == 0  # once only: the tagged keys exist
