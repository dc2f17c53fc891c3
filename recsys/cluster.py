"""A Dask client for the offline jobs: the configured scheduler, or a LocalCluster started and closed here."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from distributed import Client, Future

    from recsys.config import Settings

logger = logging.getLogger(__name__)

# Dask's periodic work on a LocalCluster started for one batch job: the workers' statistical profiler
# (a stack sample every 10 ms, for the dashboard's profile page), the event loops' 20 ms tick watchdog,
# the 0.5 s system monitor and 0.1 s memory monitor cost 0.077 CPU s per second of a 2-worker cluster
# even idle; with these, 0.014. The nanny still enforces the memory limit, checked every 0.5 s.
LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "500ms",
}


@contextmanager
def dask_client(settings: Settings, workers: int | None = None, processes: bool = True) -> Iterator[Client]:
    """A client on `settings.dask_scheduler`, or on a LocalCluster of single-threaded workers (one per
    core unless `workers` or `RECSYS_DASK_WORKERS` says otherwise, each limited to
    `RECSYS_DASK_WORKER_MEMORY`); a LocalCluster started here is closed on exit. Logs the dashboard link."""
    import dask
    from distributed import Client, LocalCluster

    if settings.dask_scheduler:
        with Client(settings.dask_scheduler) as client:
            logger.info("Dask scheduler %s, dashboard %s", settings.dask_scheduler, client.dashboard_link)
            yield client
        return
    count = workers or settings.dask_workers or max(1, os.cpu_count() or 1)
    # dashboard on a free port: several jobs (and tests) may run side by side
    # the nanny hands the client's config to the worker processes it starts
    with dask.config.set(LOCAL_CLUSTER_CONFIG), \
            LocalCluster(n_workers=count, threads_per_worker=1, processes=processes,
                         memory_limit=settings.dask_worker_memory, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        logger.info("Dask LocalCluster of %d workers, dashboard %s", count, client.dashboard_link)
        yield client


# distributed's Client.map puts a keyword argument larger than this (by dask's sizeof) into the graph as
# a data task named after the argument itself ("rows"); distributed 2026.8 then fails the map with
# AssertionError(<TaskState 'rows' processing>). Such values are scattered under fresh keys instead.
MAP_INLINE_BYTES = 100_000


def map_on_workers(client: Client, function: Callable[..., Any], items: Iterable[Any], /, **shared: Any
                   ) -> list[Future]:
    """`function(item, **shared)` for every item on the workers (never cached by content); a shared value
    over `MAP_INLINE_BYTES` goes to every worker once, under a fresh key, and the tasks depend on it."""
    from dask.sizeof import sizeof
    from distributed import Future

    large = [name for name, value in shared.items()
             if not isinstance(value, Future) and sizeof(value) > MAP_INLINE_BYTES]
    if large:
        futures = client.scatter([shared[name] for name in large], broadcast=True, hash=False)
        shared = {**shared, **dict(zip(large, futures, strict=True))}
    return client.map(function, items, pure=False, **shared)


def progress_bar(futures: list[Any], show: bool) -> None:
    """Dask's console progress bar over `futures`, waiting until they finish, when `show`."""
    if show and futures:
        from distributed import progress

        progress(futures)


def partition_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """Contiguous `[start, stop)` slices of `n` rows, `size` rows each (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"partition size must be >= 1, got {size}")
    starts = np.arange(0, n, size)
    return [(int(start), int(min(start + size, n))) for start in starts]
