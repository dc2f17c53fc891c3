"""The Dask client from settings: a given scheduler address is used and left running, a LocalCluster
started for the job is closed with it."""

from __future__ import annotations

import pytest

from recsys.cluster import dask_client
from recsys.config import Settings

pytestmark = pytest.mark.slow


def test_settings_read_the_dask_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_DASK_SCHEDULER", "tcp://10.0.0.5:8786")
    monkeypatch.setenv("RECSYS_DASK_PARTITION_SIZE", "1000")
    monkeypatch.setenv("RECSYS_DASK_WORKER_MEMORY", "6GiB")
    settings = Settings()
    assert (settings.dask_scheduler, settings.dask_partition_size, settings.dask_worker_memory) == (
        "tcp://10.0.0.5:8786", 1000, "6GiB")
    assert settings.train_sample_users == 50_000
    monkeypatch.setenv("RECSYS_TRAIN_SAMPLE_USERS", "200000")
    assert Settings().train_sample_users == 200_000
    monkeypatch.setenv("RECSYS_DASK_PARTITION_SIZE", "0")
    with pytest.raises(ValueError, match="dask_partition_size"):
        Settings()


def test_a_scheduler_address_is_used_and_left_running() -> None:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with dask_client(Settings(dask_scheduler=cluster.scheduler_address)) as client:
            assert client.submit(sum, [1, 2, 3]).result() == 6
            assert client.scheduler.address == cluster.scheduler_address
        with Client(cluster.scheduler_address) as again:  # still there after the job
            assert len(again.scheduler_info()["workers"]) == 1


def test_a_local_cluster_is_sized_by_the_settings_and_closed() -> None:
    with dask_client(Settings(dask_workers=2, dask_worker_memory="512MiB"), processes=False) as client:
        workers = client.scheduler_info()["workers"].values()
        assert [w["nthreads"] for w in workers] == [1, 1]
        assert {w["memory_limit"] for w in workers} == {512 * 2**20}
        cluster = client.cluster
    assert cluster.status.name == "closed"


def test_a_local_cluster_runs_its_worker_processes_without_the_periodic_extras() -> None:
    import dask

    from recsys.cluster import LOCAL_CLUSTER_CONFIG

    def seen() -> dict:
        return {key: dask.config.get(key) for key in LOCAL_CLUSTER_CONFIG}

    before = seen()
    with dask_client(Settings(dask_workers=2, dask_worker_memory="512MiB")) as client:
        in_workers = client.run(seen)
        intervals = client.run(lambda dask_worker: dask_worker.memory_manager.memory_monitor_interval)
        profiling = client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)
    assert list(in_workers.values()) == [LOCAL_CLUSTER_CONFIG] * 2
    assert set(intervals.values()) == {0.5}
    assert set(profiling.values()) == {False}
    assert seen() == before  # the caller's config is restored


def _picked(item: int, rows, offset: int) -> int:
    return int(rows[item]) + offset


def test_map_on_workers_passes_a_large_shared_argument(dask_client) -> None:
    """A shared argument above Client.map's inline size (a sample's rows at a million cardholders) reaches
    every task, twice in a row, where Client.map itself failed on it (AssertionError from the scheduler)."""
    import numpy as np

    from recsys.cluster import MAP_INLINE_BYTES, map_on_workers

    for attempt in range(2):
        rows = np.arange(MAP_INLINE_BYTES // 8 * 2, dtype=np.int64) * (attempt + 1)
        futures = map_on_workers(dask_client, _picked, [0, 5, len(rows) - 1], rows=rows, offset=3)
        assert dask_client.gather(futures) == [3, 5 * (attempt + 1) + 3, int(rows[-1]) + 3]
