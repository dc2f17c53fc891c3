"""Shared fixtures: a real Redis (the configured server or an embedded one) and seeded worlds."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from recsys.embedded_redis import redis_answers, start_embedded_redis

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """RECSYS_REDIS_URL (default db 15 on the local server); an embedded server when none answers."""
    url = os.environ.get("RECSYS_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    if redis_answers(url):
        yield url
        return
    server = start_embedded_redis()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    """A 3-primary Redis Cluster on loopback ports shared by the cluster tests (caps and publication,
    each under its own key prefix), torn down after; skipped, saying why, without a redis-server binary."""
    from recsys.embedded_redis import RedisUnavailableError, redis_server_binary
    from tests.caps.conftest import start_cluster

    try:
        redis_server_binary()
    except RedisUnavailableError as error:
        pytest.skip(f"no Redis Cluster to test against: {error}")
    servers = start_cluster()
    try:
        yield servers[0].url
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def key_prefix() -> str:
    """A prefix unique to one test, so tests never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_client(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=False)
    try:
        yield client
    finally:
        keys = list(client.scan_iter(match=f"*{key_prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        client.close()
