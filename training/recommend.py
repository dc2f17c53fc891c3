"""Batch recommendations for every cardholder into a contract recommendation file (atomic write)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.bundle_inputs import rank_dataset
from features.loader import load_dataset
from features.timecut import parse_as_of
from recsys.atomic import atomic_directory, atomic_file
from recsys.bundle import ModelBundle

if TYPE_CHECKING:
    from distributed import Client

    from features.partitions import PartitionedDataset

logger = logging.getLogger(__name__)


def write_frame_atomically(frame: pd.DataFrame, out: Path) -> None:
    """Parquet or CSV by extension, into a temporary sibling renamed into place."""
    with atomic_file(out) as tmp:
        if out.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)


def write_recommendations(model_uri: str, data_dir: Path, out: Path, k: int, as_of: str | None,
                          tracking_uri: str, progress: bool = False, client: Client | None = None,
                          partition_size: int = 150_000, work: Path | None = None) -> int:
    """Rank every cardholder of `data_dir` with the model at `model_uri`; returns the rows written.

    With a Dask `client`, the data is split into buckets of cardholders staged under `work` and `out`
    is a directory of Parquet parts ranked on the workers (`rank_on_dask`).
    """
    from tqdm import tqdm

    from training.tracking import resolved_bundle

    if client is not None:
        from features.partitions import partitioned

        with partitioned(data_dir, work or out.parent, partition_size, client) as parts:
            cutoff = parse_as_of(as_of, parts)
            with resolved_bundle(model_uri, tracking_uri) as path:
                bundle = ModelBundle.load(path)
            return rank_on_dask(client, bundle, parts, cutoff, k, out, progress)
    dataset = load_dataset(data_dir)
    cutoff = parse_as_of(as_of, dataset)
    with resolved_bundle(model_uri, tracking_uri) as path:
        bundle = ModelBundle.load(path)
    with tqdm(total=len(dataset.cardholders), desc="ranking", unit="cardholder", disable=not progress,
              leave=False) as bar:
        frame = rank_dataset(bundle, dataset, cutoff, k, progress=bar.update)
    write_frame_atomically(frame, out)
    logger.info("wrote %d recommendation rows for %d cardholders to %s", len(frame),
                frame["user_id"].nunique(), out)
    return len(frame)


def rank_partition(bucket: int, bundle: ModelBundle, parts: PartitionedDataset, as_of: pd.Timestamp, k: int,
                   path: str) -> int:
    """One bucket on a worker, from its rows only: the same `rank_dataset` as the single-process
    path, to `path`."""
    frame = rank_dataset(bundle, parts.partition(bucket), as_of, k)
    frame.to_parquet(path, index=False)
    return len(frame)


def rank_on_dask(client: Client, bundle: ModelBundle, parts: PartitionedDataset, as_of: pd.Timestamp, k: int,
                 out: Path, progress: bool = False) -> int:
    """Rank each bucket of cardholders on the workers, written as `out/part-NNNNN.parquet` (bucket N,
    cardholders in table order); `out` appears whole or not at all.

    The bundle is sent to each worker once; each task reads its bucket. The workers write to
    `out`'s parent directory, so with a remote scheduler it must be a filesystem every worker shares.
    With `progress`, Dask's progress bar over the buckets.
    """
    shared_bundle, shared_parts = client.scatter([bundle, parts], broadcast=True, hash=False)
    with atomic_directory(out) as staging:
        futures = [
            client.submit(rank_partition, bucket, shared_bundle, shared_parts, as_of, k,
                          str(staging / f"part-{bucket:05d}.parquet"), pure=False)
            for bucket in range(parts.buckets)
        ]
        if progress:
            from distributed import progress as progress_bar

            progress_bar(futures)
        rows = sum(client.gather(futures))
    logger.info("wrote %d recommendation rows for %d cardholders in %d parts to %s", rows, parts.users,
                len(futures), out)
    return rows
