"""`recsys caps simulate` per partition of cardholders on Dask: each bucket replayed on a worker, the
reports added up on the client, the same report as one replay of the whole world.

Cardholders are replayed independently (the campaign throttle, the one rule between cardholders, is
not simulated), so a bucket is a world of its own once it shares three things with the population:
each cardholder's random draws (indexed by its row in the whole cardholders table, `slot_draws`),
the activity terciles (exact, from per-bucket histograms of the activity counts added up on the
client) and, without a model, the popularity fallback (per-bucket counts added up). A first pass reads
only the columns those need (`SHARE_COLUMNS`); the replay reads the columns it needs without a model
(`REPLAY_COLUMNS`), the whole bucket with one; a worker holds one bucket.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.loader import Dataset
from features.partitions import PartitionedDataset, sampled_rows
from features.popularity import popularity_counts
from recsys.caps.policy import Policy
from recsys.cluster import map_on_workers, progress_bar
from recsys.fallback import Popularity, PopularityCounts
from recsys.ids import IdIndex
from simulation.replay import (
    DEFAULT_CANDIDATES,
    CountHistogram,
    activity_bounds,
    activity_counts,
    load_truth,
    world_as_of,
    world_of,
)
from simulation.report import SimulationReport
from simulation.runner import ScheduleConfig, simulate, unique_labels
from simulation.vector_caps import SimulationError

if TYPE_CHECKING:
    from distributed import Client

    from recsys.bundle import ModelBundle

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BucketShare:
    """What one bucket adds to the population's shared state: its cardholders' activity histogram and
    (without a model) its popularity counts."""

    activity: CountHistogram
    popularity: PopularityCounts | None


@dataclass(frozen=True)
class Replay:
    """What every bucket's replay shares: the world's settings and the population's state."""

    as_of: pd.Timestamp
    sample: np.ndarray | None  # population rows simulated (None: all)
    truth_path: str | None
    bundle_label: str
    k: int
    bounds: tuple[float, float] = (0.0, 0.0)
    shares: Popularity | None = None


# what `activity_counts` and `popularity_counts` read: a fraction of a bucket's bytes
SHARE_COLUMNS = {
    "cardholders": ["user_id", "card_tier"],
    "transactions": ["user_id", "ts"],
    "menu_clicks": ["user_id", "ts"],
    "article_reads": ["user_id", "content_id", "ts"],
    "push_log": ["user_id", "content_id", "opened_ts"],
}
# what the replay reads without a model (segments, popularity eligibility, the push history); a
# model's features read every column
REPLAY_COLUMNS = {
    **SHARE_COLUMNS,
    "cardholders": ["user_id", "card_tier", "timezone", "push_opt_in"],
    "push_log": ["user_id", "content_id", "sent_ts", "opened_ts", "muted"],
}


def _selected(parts: PartitionedDataset, bucket: int, sample: np.ndarray | None,
              columns: dict[str, list[str]] | None = None) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """Bucket `bucket`'s data (only `columns` when given), the positions of its simulated cardholders
    in its cardholders table and their rows in the whole table."""
    data = parts.partition(bucket, columns=columns)
    rows = parts.cardholder_rows(bucket)["row"].to_numpy(dtype=np.int64)
    keep = np.arange(len(rows)) if sample is None else np.flatnonzero(np.isin(rows, sample))
    return data, keep, rows[keep]


def bucket_share(bucket: int, parts: PartitionedDataset, replay: Replay, items: IdIndex | None
                 ) -> BucketShare:
    """On a worker: the bucket's activity histogram and, with `items`, its popularity counts."""
    data, keep, _ = _selected(parts, bucket, replay.sample, SHARE_COLUMNS)
    user_ids = data.cardholders.drop_duplicates("user_id")["user_id"].astype(str).to_numpy(dtype=object)[keep]
    counts = None if items is None else popularity_counts(data, replay.as_of, items)
    return BucketShare(CountHistogram.of(activity_counts(data, user_ids, replay.as_of)), counts)


def replay_bucket(bucket: int, parts: PartitionedDataset, replay: Replay, bundle: ModelBundle | None,
                  policies: list[Policy], config: ScheduleConfig, labels: list[str]
                  ) -> SimulationReport | None:
    """On a worker: the bucket's cardholders replayed under every policy (None when it has none)."""
    data, keep, rows = _selected(parts, bucket, replay.sample, None if bundle is not None else REPLAY_COLUMNS)
    if not len(keep):
        return None
    truth = load_truth(replay.truth_path, mmap=True)
    world = world_of(data, replay.as_of, truth=truth, truth_path=replay.truth_path, bundle=bundle,
                     bundle_label=replay.bundle_label, k=replay.k, keep=keep, population_rows=rows,
                     terciles=replay.bounds, popularity=replay.shares)
    return simulate(world, policies, config, labels)


def simulate_partitioned(
    parts: PartitionedDataset,
    policies: Sequence[Policy],
    client: Client,
    config: ScheduleConfig | None = None,
    labels: Sequence[str] | None = None,
    *,
    truth_path: str | Path | None = None,
    bundle: ModelBundle | None = None,
    bundle_label: str = "",
    k: int = DEFAULT_CANDIDATES,
    max_users: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> SimulationReport:
    """`simulate(load_world(...), policies, ...)` bucket by bucket on the workers of `client`: the same
    report (counts equal, expectations equal up to the order floats are added in)."""
    if not policies:
        raise SimulationError("give at least one policy to simulate")
    config = config or ScheduleConfig()
    names = unique_labels(policies, labels)
    truth = load_truth(truth_path, mmap=True)
    as_of = world_as_of(parts.time_range(), truth, parts.root)
    del truth  # each worker reads it for its bucket
    sample = None
    if max_users is not None and max_users < parts.users:
        sample = sampled_rows(parts.users, max_users, seed)
    replay = Replay(as_of, sample, None if truth_path is None else str(truth_path), bundle_label, k)
    items = None
    if bundle is None:
        content_ids = parts.content.drop_duplicates("content_id")["content_id"].astype(str)
        items = IdIndex(content_ids.to_numpy(dtype=object))
    [shared_parts] = client.scatter([parts], broadcast=True, hash=False)
    shares: list[BucketShare] = client.gather(map_on_workers(
        client, bucket_share, range(parts.buckets), parts=shared_parts, replay=replay, items=items))
    bounds = activity_bounds(CountHistogram.combine([share.activity for share in shares]))
    popularity = None
    if bundle is None:
        popularity = PopularityCounts.combine([share.popularity for share in shares]).shares()
    replay = Replay(as_of, sample, replay.truth_path, bundle_label, k, bounds, popularity)
    [shared_bundle] = client.scatter([bundle], broadcast=True, hash=False) if bundle is not None else [None]
    futures = map_on_workers(client, replay_bucket, range(parts.buckets), parts=shared_parts, replay=replay,
                             bundle=shared_bundle, policies=list(policies), config=config, labels=names)
    progress_bar(futures, progress)
    reports = [report for report in client.gather(futures) if report is not None]
    if not reports:
        raise SimulationError(f"{parts.root}: no cardholders to simulate")
    combined = SimulationReport.combine(reports)
    logger.info("simulated %d cardholders in %d buckets", combined.world["cardholders"], len(reports))
    return combined
