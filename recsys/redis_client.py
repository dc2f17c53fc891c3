"""Opening Redis, one server or a Redis Cluster, and the one multi-key read every reader shares.

Every process that opens Redis (the caps engine, `recsys publish`, the ranking API) opens it here, so
a URL naming a node of a cluster gives a `RedisCluster` (slots followed, pipelines split per node)
wherever it is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster

Client = redis.Redis | RedisCluster


def connect(url: str, *, cluster: bool | None = None, **options: Any) -> Client:
    """A client for the Redis at `url`: with `cluster=None` a `RedisCluster` when that server runs in
    cluster mode (asked with one `INFO cluster`), else a `redis.Redis`; `cluster=True` or `False`
    skips the question (and, for False, connects only on the first command)."""
    if cluster:
        return RedisCluster.from_url(url, **options)
    client = redis.Redis.from_url(url, **options)
    if cluster is False:
        return client
    try:
        clustered = bool(client.info("cluster").get("cluster_enabled"))
    except BaseException:
        client.close()
        raise
    if not clustered:
        return client
    client.close()
    return RedisCluster.from_url(url, **options)


def get_many(client: Client, keys: Sequence[str]) -> list[bytes | None]:
    """The value of each key in order (None: missing). On a cluster one MGET per hash slot (pipelined
    per node), since an MGET must not cross slots; on one server one MGET, or a GET for one key."""
    if len(keys) == 1:
        return [client.get(keys[0])]
    if isinstance(client, RedisCluster):
        return client.mget_nonatomic(list(keys)) if keys else []
    return client.mget(keys) if keys else []
