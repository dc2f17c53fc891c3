"""A Dask client for the offline jobs: the configured scheduler, or a LocalCluster started and closed here."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from distributed import Client

    from recsys.config import Settings

logger = logging.getLogger(__name__)


@contextmanager
def dask_client(settings: Settings, workers: int | None = None, processes: bool = True) -> Iterator[Client]:
    """A client on `settings.dask_scheduler`, or on a LocalCluster of single-threaded workers (one per
    core unless `workers` or `RECSYS_DASK_WORKERS` says otherwise, each limited to
    `RECSYS_DASK_WORKER_MEMORY`); a LocalCluster started here is closed on exit. Logs the dashboard link."""
    from distributed import Client, LocalCluster

    if settings.dask_scheduler:
        with Client(settings.dask_scheduler) as client:
            logger.info("Dask scheduler %s, dashboard %s", settings.dask_scheduler, client.dashboard_link)
            yield client
        return
    count = workers or settings.dask_workers or max(1, os.cpu_count() or 1)
    # dashboard on a free port: several jobs (and tests) may run side by side
    with LocalCluster(n_workers=count, threads_per_worker=1, processes=processes,
                      memory_limit=settings.dask_worker_memory, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        logger.info("Dask LocalCluster of %d workers, dashboard %s", count, client.dashboard_link)
        yield client


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
