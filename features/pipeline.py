"""Dataset + as-of time -> `TrainingMatrices` (interactions, negatives, features, segments)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.builder import FeatureBuilder, exposure_days
from features.config import FeatureConfig
from features.interactions import first_positive_days, interaction_matrices, offer_days, push_counts
from features.loader import Dataset
from features.timecut import known_at
from recsys.cluster import map_on_workers
from recsys.ids import IdIndex
from recsys.matrices import TrainingMatrices

if TYPE_CHECKING:
    from distributed import Client

    from features.partitions import PartitionedDataset

logger = logging.getLogger(__name__)


class EmptyDataError(ValueError):
    """The data has nothing to train on (no cardholders, no content or no positive interaction)."""


def build_training_matrices(
    dataset: Dataset,
    as_of: pd.Timestamp,
    config: FeatureConfig | None = None,
    builder: FeatureBuilder | None = None,
) -> tuple[TrainingMatrices, FeatureBuilder]:
    """Everything known at `as_of`, as model input; fits a builder unless a fitted one is given.

    Users are all cardholders and items all contents (also expired ones: they are still evidence of
    taste), in table order.
    """
    config = config or (builder.config if builder is not None else FeatureConfig())
    if not len(dataset.cardholders):
        raise EmptyDataError("the cardholders table has no rows: nothing to train on")
    if not len(dataset.content):
        raise EmptyDataError("the content table has no rows: nothing to rank")
    data = known_at(dataset, as_of)
    if builder is None:
        builder = FeatureBuilder(config).fit(data, as_of)
    users = IdIndex(data.cardholders["user_id"].astype(str))
    items = IdIndex(data.content["content_id"].astype(str))
    positives, negatives = interaction_matrices(data, as_of, users, items, config)
    if positives.nnz == 0:
        raise EmptyDataError(
            f"no article read or opened push at or before {as_of.isoformat()}: "
            "a model needs at least some positive interactions; "
            "check --as-of and the article_reads/push_log tables"
        )
    user_features = builder.transform_users(data, as_of, users.ids)
    item_features = builder.transform_items(data.content, items.ids)
    segments = builder.segments(data, as_of, users.ids)
    logger.info(
        "training matrices at %s: %d users, %d items, %d positives, %d negatives, %d/%d features",
        as_of.isoformat(), len(users), len(items), positives.nnz, 0 if negatives is None else negatives.nnz,
        user_features.shape[1], item_features.shape[1],
    )
    sends, opens = push_counts(data, as_of, items, config)
    matrices = TrainingMatrices(
        users=users,
        items=items,
        interactions=positives,
        negatives=negatives,
        user_features=user_features,
        user_feature_names=builder.user_feature_names,
        item_features=item_features,
        item_feature_names=builder.item_feature_names,
        user_segments=np.asarray(segments, dtype=object),
        item_exposure_days=exposure_days(data, as_of, items.ids),
        item_sends=sends,
        item_opens=opens,
        positive_days=first_positive_days(data, as_of, users, items, config, positives),
        item_offer_days=offer_days(data, items),
    )
    return matrices, builder


def bucket_user_features(bucket: int, parts: PartitionedDataset, builder: FeatureBuilder, as_of: pd.Timestamp
                         ) -> tuple[np.ndarray, sp.csr_matrix]:
    """One bucket's cardholders (their rows in the cardholders table) and their feature rows at
    `as_of`, from that bucket's data alone: a cardholder's features depend on their own events only."""
    data = parts.partition(bucket)
    rows = parts.cardholder_rows(bucket)
    features = builder.transform_users(data, as_of, rows["user_id"].to_numpy(dtype=object))
    return rows["row"].to_numpy(), features


def partitioned_user_features(parts: PartitionedDataset, builder: FeatureBuilder, as_of: pd.Timestamp,
                              client: Client | None = None) -> sp.csr_matrix:
    """`builder.transform_users` of every cardholder (rows in table order), computed bucket by bucket:
    on the Dask workers with a `client`, else one bucket at a time here."""
    if client is None:
        results = [bucket_user_features(bucket, parts, builder, as_of) for bucket in range(parts.buckets)]
    else:
        shared_parts, shared_builder = client.scatter([parts, builder], broadcast=True, hash=False)
        results = client.gather(map_on_workers(client, bucket_user_features, range(parts.buckets),
                                               parts=shared_parts, builder=shared_builder, as_of=as_of))
    order = np.argsort(np.concatenate([rows for rows, _ in results]), kind="stable")
    return sp.csr_matrix(sp.vstack([matrix for _, matrix in results], format="csr")[order])
