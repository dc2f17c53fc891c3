"""`recsys publish` on a LocalCluster: partitions written by the workers, the same records as the
single-process path, and a worker killed mid-publish leaves the live version untouched."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from publishing.publish import DaskPartitions, publish
from recsys.publication import PublicationStore

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def _records(client: redis.Redis, store: PublicationStore, version: str) -> dict[bytes, bytes]:
    keys = list(client.scan_iter(match=store.user_pattern(version), count=1000))
    prefix = len(store.user_key(version, ""))
    return {key[prefix:]: value for key, value in zip(keys, client.mget(keys), strict=True)}


def test_dask_publish_writes_the_single_process_records(dask_client, scale_bundle, scale_dataset, scale_parts,
                                                        redis_url, redis_client, key_prefix) -> None:
    store = PublicationStore(redis_client, key_prefix)
    single = publish(scale_bundle, scale_dataset, store)
    assert scale_parts.buckets == 5
    target = DaskPartitions(dask_client, redis_url, scale_parts)
    on_dask = publish(scale_bundle, scale_parts, store, dask=target)
    assert store.live_version() == on_dask.version and on_dask.previous == single.version
    assert on_dask.users == single.users == scale_dataset.cardholders["user_id"].nunique()
    assert on_dask.record_bytes_mean == single.record_bytes_mean
    assert on_dask.redis_bytes_per_user == single.redis_bytes_per_user
    expected = _records(redis_client, store, single.version)
    assert len(expected) == single.users
    assert _records(redis_client, store, on_dask.version) == expected
    shared = store.load(on_dask.version)
    assert shared.manifest["n_users"] == single.users
    assert {k: v for k, v in shared.manifest.items() if k not in ("version", "created_at")} == {
        k: v for k, v in store.load(single.version).manifest.items() if k not in ("version", "created_at")}


def _kill_one_worker_once(marker: str):
    """A records hook that kills the worker process it runs in, the first time any worker gets
    half-way through a partition (the marker file says it happened)."""

    def hook(stream):
        for number, record in enumerate(stream):
            if number == 60:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                except FileExistsError:
                    pass
                else:
                    os.kill(os.getpid(), signal.SIGKILL)
            yield record

    return hook


def test_a_worker_lost_mid_publish_leaves_the_live_version_and_a_retry_completes(
        dask_client, scale_bundle, scale_dataset, scale_parts, redis_url, redis_client, key_prefix,
        tmp_path: Path) -> None:
    from distributed import KilledWorker

    store = PublicationStore(redis_client, key_prefix)
    live = publish(scale_bundle, scale_dataset, store)
    target = DaskPartitions(dask_client, redis_url, scale_parts)
    marker = tmp_path / "killed"
    with pytest.raises(KilledWorker):
        publish(scale_bundle, scale_parts, store, chunk=20, dask=target,
                records_hook=_kill_one_worker_once(str(marker)))
    assert marker.exists()  # a worker did die mid-partition
    assert store.live_version() == live.version
    assert store.versions() == [live.version]
    leftovers = [key for pattern in (store.key("v", "*"), store.user_pattern("*"))
                 for key in redis_client.scan_iter(match=pattern, count=1000)
                 if live.version.encode() not in key]
    assert leftovers == []  # the failed version was removed, every partition's keys included
    dask_client.wait_for_workers(2, timeout=30)  # the nanny restarted the killed worker
    retry = publish(scale_bundle, scale_parts, store, dask=target)
    assert store.live_version() == retry.version and retry.previous == live.version
    assert retry.users == live.users
    assert _records(redis_client, store, retry.version) == _records(redis_client, store, live.version)


def _slow_start(seconds: float):
    """A records hook that stalls before a partition's first record, as a long feature computation."""

    def hook(stream):
        time.sleep(seconds)
        yield from stream

    return hook


def test_the_lease_is_kept_while_the_workers_compute(dask_client, scale_bundle, scale_dataset, scale_parts,
                                                     redis_url, redis_client, key_prefix) -> None:
    store = PublicationStore(redis_client, key_prefix)
    target = DaskPartitions(dask_client, redis_url, scale_parts)
    # every partition stalls past the 1 s lease before its first write: only the client's renewals
    # keep the lock (without them the workers' first renewal finds it gone and the publish fails)
    report = publish(scale_bundle, scale_parts, store, dask=target, lease=1.0,
                     records_hook=_slow_start(2.0))
    assert store.live_version() == report.version
    assert report.users == scale_dataset.cardholders["user_id"].nunique()


def test_progress_bars_follow_the_buckets(dask_client, scale_bundle, scale_parts, redis_url, redis_client,
                                          key_prefix, capsys: pytest.CaptureFixture[str]) -> None:
    store = PublicationStore(redis_client, key_prefix)
    target = DaskPartitions(dask_client, redis_url, scale_parts, progress=True)
    report = publish(scale_bundle, scale_parts, store, dask=target)
    assert store.live_version() == report.version
    shown = capsys.readouterr()
    assert "100% Completed" in shown.out  # the buckets' reads (Dask's bar)
    assert f"{scale_parts.buckets}/{scale_parts.buckets}" in shown.err  # their writes (tqdm)
