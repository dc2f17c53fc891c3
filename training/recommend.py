"""Batch recommendations for every cardholder into a contract recommendation file (atomic write)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.bundle_inputs import rank_dataset
from features.loader import load_dataset
from features.timecut import parse_as_of
from recsys.atomic import atomic_directory, atomic_file
from recsys.bundle import ModelBundle

if TYPE_CHECKING:
    from distributed import Client

    from features.loader import Dataset

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
                          partition_size: int = 250_000) -> int:
    """Rank every cardholder of `data_dir` with the model at `model_uri`; returns the rows written.

    With a Dask `client`, `out` is a directory of Parquet parts ranked on the workers (`rank_on_dask`).
    """
    from tqdm import tqdm

    from training.tracking import resolved_bundle

    dataset = load_dataset(data_dir)
    cutoff = parse_as_of(as_of, dataset)
    with resolved_bundle(model_uri, tracking_uri) as path:
        bundle = ModelBundle.load(path)
    if client is not None:
        return rank_on_dask(client, bundle, dataset, cutoff, k, out, partition_size)
    with tqdm(total=len(dataset.cardholders), desc="ranking", unit="cardholder", disable=not progress,
              leave=False) as bar:
        frame = rank_dataset(bundle, dataset, cutoff, k, progress=bar.update)
    write_frame_atomically(frame, out)
    logger.info("wrote %d recommendation rows for %d cardholders to %s", len(frame),
                frame["user_id"].nunique(), out)
    return len(frame)


def rank_partition(bundle: ModelBundle, dataset: Dataset, as_of: pd.Timestamp, k: int, user_ids: np.ndarray,
                   path: str) -> int:
    """One partition on a worker: the same `rank_dataset` as the single-process path, to `path`."""
    frame = rank_dataset(bundle, dataset, as_of, k, user_ids=user_ids)
    frame.to_parquet(path, index=False)
    return len(frame)


def rank_on_dask(client: Client, bundle: ModelBundle, dataset: Dataset, as_of: pd.Timestamp, k: int,
                 out: Path, partition_size: int) -> int:
    """Rank cardholders in partitions of `partition_size` on the workers, each written as
    `out/part-NNNNN.parquet` (in cardholder order); `out` appears whole or not at all.

    The bundle and the data are sent to each worker once. The workers write to `out`'s parent
    directory, so with a remote scheduler it must be a filesystem every worker shares.
    """
    from recsys.cluster import partition_bounds

    ids = dataset.cardholders["user_id"].astype(str).to_numpy(dtype=object)
    shared_bundle, shared_data = client.scatter([bundle, dataset], broadcast=True)
    with atomic_directory(out) as staging:
        futures = [
            client.submit(rank_partition, shared_bundle, shared_data, as_of, k, ids[start:stop],
                          str(staging / f"part-{number:05d}.parquet"), pure=False)
            for number, (start, stop) in enumerate(partition_bounds(len(ids), partition_size))
        ]
        rows = sum(client.gather(futures))
    logger.info("wrote %d recommendation rows for %d cardholders in %d parts to %s", rows, len(ids),
                len(futures), out)
    return rows
