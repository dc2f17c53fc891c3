"""Batch recommendations for every cardholder into a contract recommendation file (atomic write)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from features.loader import load_dataset
from features.timecut import parse_as_of
from recsys.atomic import atomic_file
from recsys.bundle import ModelBundle

logger = logging.getLogger(__name__)


def write_frame_atomically(frame: pd.DataFrame, out: Path) -> None:
    """Parquet or CSV by extension, into a temporary sibling renamed into place."""
    with atomic_file(out) as tmp:
        if out.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)


def write_recommendations(model_uri: str, data_dir: Path, out: Path, k: int, as_of: str | None,
                          tracking_uri: str, progress: bool = False) -> int:
    """Rank every cardholder of `data_dir` with the model at `model_uri`; returns the rows written."""
    from tqdm import tqdm

    from training.tracking import resolved_bundle

    dataset = load_dataset(data_dir)
    cutoff = parse_as_of(as_of, dataset)
    with resolved_bundle(model_uri, tracking_uri) as path:
        bundle = ModelBundle.load(path)
    with tqdm(total=len(dataset.cardholders), desc="ranking", unit="cardholder", disable=not progress,
              leave=False) as bar:
        frame = bundle.rank(dataset, cutoff, k, progress=bar.update)
    write_frame_atomically(frame, out)
    logger.info("wrote %d recommendation rows for %d cardholders to %s", len(frame),
                frame["user_id"].nunique(), out)
    return len(frame)
