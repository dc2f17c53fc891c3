"""Publication keys on a Redis Cluster: every script's keys in one slot, records spread over the
nodes, and a publish (single-process and per partition on Dask) against a real 3-node cluster."""

from __future__ import annotations

import re

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from publishing.publish import DaskPartitions, publish
from recsys import publication
from recsys.publication import PublicationStore
from recsys.redis_client import connect

SCRIPTS = {"switch": publication._SWITCH_LIVE, "renew": publication._RENEW,
           "release": publication._RELEASE, "mark_verified": publication._MARK_VERIFIED}


def _slots(keys: list[str]) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


def test_every_script_and_transaction_touches_one_slot_and_records_spread() -> None:
    store = PublicationStore(redis.Redis(), "qm")  # naming keys connects to nothing
    for name, source in SCRIPTS.items():
        keys = store.script_keys(name, "20261205T093000Z-abc123")
        # the keys passed are exactly the ones the script reads
        assert max(int(index) for index in re.findall(r"KEYS\[(\d+)\]", source)) == len(keys), name
        assert len(_slots(keys)) == 1, name
    shared = [store.live_key, store.key("lock"), store.key("fence"), store.key("versions"),
              store.key("pending"), *(store.meta_key(f"v{n}") for n in range(50)),
              *store.script_keys("forget")]
    assert _slots(shared) == _slots([store.live_key])
    assert store.live_key == "{qm:pub}:live"
    records = [store.user_key("v1", f"u{n}") for n in range(500)]
    assert len(_slots(records)) > 400  # a version's records are not piled on one node
    assert store.user_key("v1", "u7") == "qm:pub:v:v1:u:u7"
    assert store.user_key("v1", "u7").startswith(store.user_pattern("v1")[:-1])


@pytest.mark.slow
@pytest.mark.cluster
def test_publish_against_a_redis_cluster_single_process_and_on_dask(
        cluster_url, dask_client, scale_bundle, scale_dataset, scale_parts, key_prefix) -> None:
    client = connect(cluster_url, socket_timeout=10)
    assert isinstance(client, RedisCluster)
    try:
        store = PublicationStore(client, key_prefix)
        single = publish(scale_bundle, scale_dataset, store)
        assert store.live_version() == single.version
        assert store.count_users(single.version) == single.users
        assert single.users == scale_dataset.cardholders["user_id"].nunique()
        nodes = {client.get_node_from_key(store.user_key(single.version, str(user_id))).name
                 for user_id in scale_dataset.cardholders["user_id"].head(60)}
        assert len(nodes) == 3  # records on every primary, read back by one SCAN over all of them
        on_dask = publish(scale_bundle, scale_parts, store,
                          dask=DaskPartitions(dask_client, cluster_url, scale_parts))
        assert store.live_version() == on_dask.version and on_dask.previous == single.version
        assert on_dask.users == single.users
        keys = [store.user_key(single.version, str(user_id))
                for user_id in scale_dataset.cardholders["user_id"].astype(str)]
        again = [key.replace(single.version, on_dask.version) for key in keys]
        assert client.mget_nonatomic(again) == client.mget_nonatomic(keys)

        def fails_half_way(records):
            for number, record in enumerate(records):
                if number == 200:
                    raise RuntimeError("disk full")
                yield record

        with pytest.raises(RuntimeError, match="disk full"):
            publish(scale_bundle, scale_dataset, store, chunk=50, records_hook=fails_half_way)
        assert store.live_version() == on_dask.version
        assert store.versions() == [single.version, on_dask.version]
        third = publish(scale_bundle, scale_dataset, store)  # prunes the first version, on every node
        assert store.versions() == [on_dask.version, third.version]
        assert store.count_users(single.version) == 0 and not client.exists(store.meta_key(single.version))
        assert store.load(third.version).manifest["n_users"] == single.users
    finally:
        for key in list(client.scan_iter(match=f"*{key_prefix}*", count=1000)):
            client.delete(key)
        client.close()
