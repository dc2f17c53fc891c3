"""Publish a model bundle for the ranking API: everything it needs, computed offline, into Redis.

For every cardholder of the data directory: the user factors, the sparse feature row (for reasons),
the items already seen, card tier, time zone and opt-in. Shared by all: item factors and metadata,
the feature-builder state, the affine map from features to factors (for cardholders the publication
does not hold) and overall / per-card-tier popularity. Written under a new version; made live by one
atomic switch after the last key is written and the version verified, under the publish lock: one
publish at a time, and one that lost its lock cannot switch (`recsys.publication`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import redis
import scipy.sparse as sp

from features.bundle_inputs import card_tiers_of, current_item_meta, feature_builder, seen_pairs
from features.loader import Dataset
from features.popularity import popularity, popularity_counts
from recsys.cells import split_list
from recsys.cluster import map_on_workers, progress_bar
from recsys.fallback import Popularity, PopularityCounts
from recsys.publication import (
    LEASE_SECONDS,
    PublicationStore,
    PublicationWriter,
    PublishLockedError,
    UserRecord,
    encode_user,
    index_dtype,
)
from recsys.redis_client import connect
from recsys.times import utc_timestamp

if TYPE_CHECKING:
    from features.partitions import PartitionedDataset
    from recsys.bundle import ModelBundle

logger = logging.getLogger(__name__)

MAX_SEEN = 4096
AFFINE_SAMPLE, MEMORY_SAMPLE = 64, 200
AFFINE_TOLERANCE = 1e-3


class PublishError(ValueError):
    """A publish that cannot proceed (no cardholders, a bundle that does not fit the data)."""


@dataclass(frozen=True)
class PublishReport:
    version: str
    previous: str | None
    deleted: list[str]
    users: int
    items: int
    dim: int
    affine_features: bool
    record_bytes_mean: float
    redis_bytes_per_user: float | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _epoch_seconds(values: pd.Series) -> list[float | None]:
    stamps = pd.to_datetime(values, utc=True)
    return [None if pd.isna(v) else v.timestamp() for v in stamps]


def bundle_fingerprint(path: str | os.PathLike[str]) -> str:
    """sha256 over a bundle directory's files (names and bytes): the same bundle, the same print."""
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def l1_normalise(matrix: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(abs(matrix).sum(axis=1)).ravel()
    sums[sums == 0] = 1.0
    return sp.csr_matrix(sp.diags((1.0 / sums).astype(np.float32)) @ matrix)


def affine_feature_map(model: Any, n_features: int, sample: sp.csr_matrix
                       ) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(A, c, normalisation) with `user_factors(-1, X) == N(X) @ A + c`, when the model allows it.

    `normalisation` is "none" (N(X) = X) or "l1" (rows scaled to sum 1, as the hybrid model does
    with `normalize_features`). Checked on `sample` (real feature rows); None for models that ignore
    features or are neither, whose unknown cardholders then fall back to popularity.
    """
    if n_features == 0:
        return None
    offset = model.user_factors(np.array([-1]), sp.csr_matrix((1, n_features), dtype=np.float32))[0]
    unit_rows = sp.identity(n_features, format="csr", dtype=np.float32)
    basis = model.user_factors(np.full(n_features, -1), unit_rows)
    mapping = (basis - offset).astype(np.float32)
    if not np.abs(mapping).max() > 0:
        return None
    if not sample.shape[0]:
        return mapping, offset.astype(np.float32), "none"
    expected = model.user_factors(np.full(sample.shape[0], -1), sample)
    scale = max(1.0, float(np.abs(expected).max()))
    for name, rows in (("none", sample), ("l1", l1_normalise(sample))):
        predicted = rows @ mapping + offset
        if float(np.abs(predicted - expected).max()) <= AFFINE_TOLERANCE * scale:
            return mapping, offset.astype(np.float32), name
    logger.info("model is not affine in user features: unknown cardholders get popularity")
    return None


def publish(
    bundle: ModelBundle,
    dataset: Dataset | PartitionedDataset,
    store: PublicationStore,
    *,
    as_of: pd.Timestamp | None = None,
    model_uri: str = "",
    registry: tuple[str, str] | None = None,
    fingerprint: str = "",
    block_size: int = 4096,
    chunk: int = 2000,
    progress: Callable[[int], None] | None = None,
    records_hook: Callable[[Iterator[tuple[str, bytes]]], Iterator[tuple[str, bytes]]] | None = None,
    dask: DaskPartitions | None = None,
    lease: float = LEASE_SECONDS,
) -> PublishReport:
    """Compute and write a new version, then switch the live pointer; older versions are pruned.

    `records_hook` wraps the stream of user records on its way to Redis (operational checks and
    fault-injection tests). With `dask` (and `dataset` its `PartitionedDataset`), the cardholder records
    are computed and written per bucket on the Dask workers, each reading only its bucket's rows
    (`records_hook` runs there); the switch waits for every bucket.
    If anything fails before the switch, the new version's keys are removed and the live version
    is untouched.
    """
    started = time.perf_counter()
    as_of = utc_timestamp(as_of if as_of is not None else bundle.as_of)
    if (dask is None) != isinstance(dataset, Dataset):
        raise PublishError("publish per partition on Dask takes a PartitionedDataset, and only then")
    prepared: list[Any] = []
    if dask is None:
        population = whole_population(bundle, dataset, as_of)
    else:
        population, prepared = partitioned_population(bundle, dask, as_of)
    if not population.users:
        raise PublishError(f"{dataset.root}: the cardholders table is empty: nothing to publish")
    model = bundle.model
    builder = feature_builder(bundle)
    items = bundle.items
    n_items = len(items)
    item_factors = np.ascontiguousarray(model.item_factors(), dtype=np.float32)
    dim = item_factors.shape[1]

    fallback = population.fallback
    tiers = fallback.tiers
    zone_names = population.zone_names
    sample = population.sample
    n_features = sample.shape[1]
    affine = affine_feature_map(model, n_features, sample)

    meta = current_item_meta(bundle.item_meta, dataset.content)
    titles = dataset.content.drop_duplicates("content_id").set_index("content_id")["title"]
    titles.index = titles.index.astype(str)
    item_ids = items.ids.astype(str).tolist()
    item_dtype, feature_dtype = index_dtype(n_items), index_dtype(n_features)
    manifest = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "as_of": as_of.isoformat(),
        "model_uri": model_uri,
        # The registered model name and version number `model_uri` named when published, if any.
        "registry_model": registry[0] if registry else None,
        "registry_version": registry[1] if registry else None,
        "fingerprint": fingerprint,
        "model_kind": model.kind,
        "model_params": model.params(),
        "bundle_metrics": bundle.metrics,
        "dim": dim,
        "n_users": population.users,
        "item_index_dtype": item_dtype.str,
        "feature_index_dtype": feature_dtype.str,
        "tiers": tiers,
        "timezones": zone_names,
        "feature_names": list(builder.user_feature_names),
        "affine_features": affine is not None,
        "response_model": bundle.response is not None,
        "feature_normalisation": affine[2] if affine is not None else None,
        "items": {
            "ids": item_ids,
            "titles": [str(titles.get(i, i)) for i in item_ids],
            "kinds": meta["kind"].astype("string").fillna("article").tolist(),
            "tags": split_list(meta["tags"]).tolist(),
            "card_tiers": split_list(meta["card_tiers"]).tolist(),
            "transactional": meta["transactional"].fillna(False).astype(bool).tolist(),
            "valid_from": _epoch_seconds(meta["valid_from"]),
            "valid_to": _epoch_seconds(meta["valid_to"]),
        },
    }
    arrays = {"item_factors": item_factors, "pop_overall": fallback.overall,
              "pop_segments": fallback.per_tier}
    if affine is not None:
        arrays["feature_map"], arrays["feature_offset"] = affine[0], affine[1]

    layout = RecordLayout(as_of=as_of, tiers=tiers, timezones=zone_names, item_dtype=item_dtype,
                          feature_dtype=feature_dtype, block_size=block_size)
    stream = None
    if isinstance(dataset, Dataset):
        holders = dataset.cardholders.drop_duplicates("user_id")
        stream = user_records(bundle, dataset, holders, layout, progress)
    writer: PublicationWriter = store.begin(lease=lease)
    try:
        try:
            writer.write_meta(manifest, arrays, bundle.feature_state,
                              None if bundle.response is None else bundle.response.to_files())
            if stream is not None:
                if records_hook is not None:
                    stream = records_hook(stream)
                writer.write_users(stream, chunk=chunk)
            else:
                _write_partitions(dask, prepared, writer, bundle, layout, chunk, records_hook)
            previous = writer.commit()
        except BaseException:
            writer.abort()
            raise
        deleted = store.prune(keep=2)
    finally:
        writer.release()
    redis_bytes = _sample_memory(store, writer.version, population.memory_ids)
    report = PublishReport(
        version=writer.version, previous=previous, deleted=deleted, users=writer.users_written, items=n_items,
        dim=dim, affine_features=affine is not None,
        record_bytes_mean=writer.bytes_written / max(1, writer.users_written),
        redis_bytes_per_user=redis_bytes, seconds=time.perf_counter() - started,
    )
    logger.info("published %s: %d cardholders, %d items, %.0f B/record", report.version, report.users,
                report.items, report.record_bytes_mean)
    return report


@dataclass(frozen=True)
class RecordLayout:
    """What encoding a cardholder's record needs besides the cardholder: shared by every partition."""

    as_of: pd.Timestamp
    tiers: list[str]
    timezones: list[str]
    item_dtype: np.dtype
    feature_dtype: np.dtype
    block_size: int


@dataclass(frozen=True)
class DaskPartitions:
    """Publish `parts` bucket by bucket on a Dask cluster: `redis_url` is the publication's Redis as
    the workers reach it."""

    client: Any  # distributed.Client
    redis_url: str
    parts: PartitionedDataset
    progress: bool = False  # Dask's progress bars on the console


@dataclass(frozen=True)
class Population:
    """What the shared state needs from all cardholders: count, popularity, time zones, the 64
    cardholders the affine map is checked on (their feature rows) and the 200 whose memory is sampled."""

    users: int
    fallback: Popularity
    zone_names: list[str]
    sample: sp.csr_matrix
    memory_ids: np.ndarray


def sample_rows(n: int, size: int) -> np.ndarray:
    """A seeded sample of `size` of `n` rows (all when fewer): the same rows on every path."""
    return np.random.default_rng(0).choice(n, size=min(size, n), replace=False)


def whole_population(bundle: ModelBundle, dataset: Dataset, as_of: pd.Timestamp) -> Population:
    holders = dataset.cardholders.drop_duplicates("user_id")
    ids = holders["user_id"].astype(str).to_numpy(dtype=object)
    zones = holders["timezone"].astype("string").fillna("").to_numpy(dtype=object)
    sample_ids = ids[np.sort(sample_rows(len(ids), AFFINE_SAMPLE))]
    sample = feature_builder(bundle).transform_users(dataset, as_of, sample_ids)
    return Population(len(ids), popularity(dataset, as_of, bundle.items), sorted(set(zones.tolist()) | {""}),
                      sp.csr_matrix(sample, dtype=np.float32), ids[sample_rows(len(ids), MEMORY_SAMPLE)])


@dataclass(frozen=True)
class UserInputs:
    """What a slice of cardholders' records are encoded from, computed once from their rows (the rows
    are then no longer needed): ids, feature and seen-item rows, card tier and time zone names, opt-in."""

    ids: np.ndarray
    features: sp.csr_matrix
    seen: sp.csr_matrix
    tiers: np.ndarray
    zones: np.ndarray
    opt_in: np.ndarray
    user_index: np.ndarray


def user_inputs(bundle: ModelBundle, dataset: Dataset, holders: pd.DataFrame, as_of: pd.Timestamp
                ) -> UserInputs:
    """The `UserInputs` of each row of `holders` (a slice of the deduplicated cardholders table)."""
    ids = holders["user_id"].astype(str).to_numpy(dtype=object)
    return UserInputs(
        ids=ids,
        features=sp.csr_matrix(feature_builder(bundle).transform_users(dataset, as_of, ids),
                               dtype=np.float32),
        seen=sp.csr_matrix(seen_pairs(dataset, as_of, ids, bundle.items)),
        tiers=card_tiers_of(dataset, ids).astype(str),
        zones=holders["timezone"].astype("string").fillna("").to_numpy(dtype=object),
        opt_in=holders["push_opt_in"].astype("boolean").fillna(True).to_numpy(dtype=bool),
        user_index=bundle.users.index_of(ids),
    )


def user_records(bundle: ModelBundle, dataset: Dataset, holders: pd.DataFrame, layout: RecordLayout,
                 progress: Callable[[int], None] | None = None) -> Iterator[tuple[str, bytes]]:
    """`(user_id, record)` for each row of `holders` (a slice of the deduplicated cardholders table).

    Features and seen items are computed here, before the first record is asked for: the caller
    does that outside the publish lock, whose lease only writes renew.
    """
    return encoded_records(bundle, user_inputs(bundle, dataset, holders, layout.as_of), layout, progress)


def encoded_records(bundle: ModelBundle, inputs: UserInputs, layout: RecordLayout,
                    progress: Callable[[int], None] | None = None) -> Iterator[tuple[str, bytes]]:
    """`(user_id, record)` for each cardholder of `inputs`, factors computed a block at a time."""
    ids, features, seen = inputs.ids, inputs.features, inputs.seen
    tier_index = pd.Index(layout.tiers).get_indexer(inputs.tiers)
    zone_index = pd.Index(layout.timezones).get_indexer(inputs.zones)
    for start in range(0, len(ids), layout.block_size):
        stop = min(start + layout.block_size, len(ids))
        factors = bundle.model.user_factors(inputs.user_index[start:stop], features[start:stop])
        factors = factors.astype(np.float32)
        for j, row in enumerate(range(start, stop)):
            lo, hi = features.indptr[row], features.indptr[row + 1]
            seen_items = seen.indices[seen.indptr[row]:seen.indptr[row + 1]][:MAX_SEEN]
            record = UserRecord(
                group=int(tier_index[row]), timezone=int(zone_index[row]),
                opt_in=bool(inputs.opt_in[row]), factors=factors[j], feature_index=features.indices[lo:hi],
                feature_values=features.data[lo:hi], seen=seen_items,
            )
            yield ids[row], encode_user(record, layout.item_dtype, layout.feature_dtype)
        if progress is not None:
            progress(stop - start)


@dataclass(frozen=True)
class BucketSummary:
    """One bucket's share of the `Population`: popularity counts, time zones, the sampled cardholders
    it holds (`user_id`, table row) and the feature rows of those in the affine sample."""

    counts: PopularityCounts
    zones: set[str]
    chosen: pd.DataFrame
    features: sp.csr_matrix


def prepare_bucket(bucket: int, parts: PartitionedDataset, bundle: ModelBundle, as_of: pd.Timestamp,
                   affine_rows: np.ndarray, memory_rows: np.ndarray) -> tuple[BucketSummary, UserInputs]:
    """On a worker, the only read of one bucket's rows: its share of the `Population` and the inputs
    of its cardholders' records (kept on the worker until the layout is known and they are written)."""
    data = parts.partition(bucket)
    counts = popularity_counts(data, as_of, bundle.items)
    holders = data.cardholders.drop_duplicates("user_id")
    zones = set(data.cardholders["timezone"].astype("string").fillna("").tolist())
    rows = parts.cardholder_rows(bucket)
    chosen = rows.loc[rows["row"].isin(np.concatenate([affine_rows, memory_rows])).to_numpy()]
    in_affine = chosen.loc[chosen["row"].isin(affine_rows).to_numpy()]
    features = sp.csr_matrix(feature_builder(bundle).transform_users(data, as_of, in_affine["user_id"]),
                             dtype=np.float32)
    return BucketSummary(counts, zones, chosen, features), user_inputs(bundle, data, holders, as_of)


def summary_of(prepared: tuple[BucketSummary, UserInputs]) -> BucketSummary:
    return prepared[0]


def partitioned_population(bundle: ModelBundle, dask: DaskPartitions, as_of: pd.Timestamp
                           ) -> tuple[Population, list[Any]]:
    """The `Population` of `whole_population`, added up from every bucket on the workers, and the
    futures of the buckets' prepared record inputs (held on the workers that computed them)."""
    parts, client = dask.parts, dask.client
    n = parts.users
    affine_rows, memory_rows = np.sort(sample_rows(n, AFFINE_SAMPLE)), sample_rows(n, MEMORY_SAMPLE)
    shared_bundle, shared_parts = client.scatter([bundle, parts], broadcast=True, hash=False)
    prepared = map_on_workers(client, prepare_bucket, range(parts.buckets), parts=shared_parts,
                              bundle=shared_bundle, as_of=as_of, affine_rows=affine_rows,
                              memory_rows=memory_rows)
    progress_bar(prepared, dask.progress)
    results: list[BucketSummary] = client.gather(client.map(summary_of, prepared, pure=False))
    chosen = pd.concat([result.chosen for result in results], ignore_index=True)
    id_of = pd.Series(chosen["user_id"].astype(str).to_numpy(dtype=object), index=chosen["row"].to_numpy())
    affine = [(part.chosen.loc[part.chosen["row"].isin(affine_rows).to_numpy(), "row"].to_numpy(),
               part.features) for part in results]
    order = np.argsort(np.concatenate([rows for rows, _ in affine]), kind="stable")
    sample = sp.csr_matrix(sp.vstack([matrix for _, matrix in affine], format="csr")[order], dtype=np.float32)
    fallback = PopularityCounts.combine([result.counts for result in results]).shares()
    zones = set().union(*(result.zones for result in results))
    population = Population(n, fallback, sorted(zones | {""}), sample,
                            id_of.loc[memory_rows].to_numpy(dtype=object))
    return population, prepared


def write_partition(prepared: tuple[BucketSummary, UserInputs], redis_url: str, prefix: str, version: str,
                    token: int, lease_ms: int, bundle: ModelBundle, layout: RecordLayout, chunk: int,
                    records_hook: Callable | None) -> tuple[int, int]:
    """On a worker: one bucket's records under `version`, through a writer holding the publish's
    fencing token (so a publish that lost its lock stops here too); returns (records, bytes)."""
    client = connect(redis_url, socket_timeout=30, socket_connect_timeout=5)
    try:
        writer = PublicationWriter(PublicationStore(client, prefix), version, token, lease_ms)
        stream = encoded_records(bundle, prepared[1], layout)
        if records_hook is not None:
            stream = records_hook(stream)
        writer.write_users(stream, chunk=chunk)
        return writer.users_written, writer.bytes_written
    finally:
        client.close()


def _write_partitions(dask: DaskPartitions, prepared: list[Any], writer: PublicationWriter,
                      bundle: ModelBundle, layout: RecordLayout, chunk: int, records_hook: Callable | None
                      ) -> None:
    """Every bucket written by the workers from its prepared inputs (where they are held); returns only
    when all have finished (so an abort after a failure removes everything), raising the first failure.
    A rerun bucket rewrites the same keys, so the count the commit verifies stays exact."""
    from distributed import wait
    from tqdm import tqdm

    client = dask.client
    # a fresh key: with content-hashed keys, the release of the same bundle scattered for the
    # population could land after this scatter and drop the data the writes depend on
    [shared_bundle] = client.scatter([bundle], broadcast=True, hash=False)
    futures = map_on_workers(client, write_partition, prepared, redis_url=dask.redis_url,
                             prefix=writer.store.prefix, version=writer.version, token=writer.token,
                             lease_ms=writer.lease_ms, bundle=shared_bundle, layout=layout,
                             chunk=chunk, records_hook=records_hook)
    prepared.clear()  # each bucket's inputs are released once its records are written
    # workers renew the lease only as they write: keep it while they compute their first records
    with tqdm(total=len(futures), desc="writing", unit="bucket", disable=not dask.progress) as bar:
        while True:
            try:
                wait(futures, timeout=writer.lease_ms / 3000)
                break
            except TimeoutError:
                bar.update(sum(future.done() for future in futures) - bar.n)
                try:
                    writer.renew()
                except PublishLockedError:
                    wait(futures)  # fenced off too, they stop at their next chunk; then the abort
                    raise
        bar.update(len(futures) - bar.n)
    for users, size in client.gather(futures):
        writer.users_written += users
        writer.bytes_written += size


def _sample_memory(store: PublicationStore, version: str, sample: np.ndarray) -> float | None:
    """Mean Redis MEMORY USAGE of the `sample` user keys (key, value and overhead), if the server tells."""
    pipe = store.client.pipeline(transaction=False)
    for user_id in sample:
        pipe.memory_usage(store.user_key(version, str(user_id)), samples=0)
    try:
        sizes = [size for size in pipe.execute() if size is not None]
    except redis.ResponseError:  # MEMORY USAGE may be disabled (renamed) on managed servers
        return None
    return float(np.mean(sizes)) if sizes else None
