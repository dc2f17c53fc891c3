"""What ranking with a model bundle reads from the contract tables: item metadata, card tiers, what was
seen, feature rows, and a dataset's eligibility and batch ranking built from them."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.builder import FeatureBuilder, FeatureStateError
from features.interactions import seen_matrix
from features.loader import Dataset
from recsys.bundle import ITEM_COLUMNS, BundleError, ModelBundle, build_eligibility
from recsys.cells import UNKNOWN
from recsys.ids import IdIndex
from recsys.ranking import Eligibility

_BUILDERS: weakref.WeakKeyDictionary[ModelBundle, FeatureBuilder] = weakref.WeakKeyDictionary()


def item_metadata(content: pd.DataFrame, items: IdIndex) -> pd.DataFrame:
    """The content columns eligibility needs, one row per item in index order."""
    frame = content.drop_duplicates("content_id")
    frame = frame.set_index(frame["content_id"].astype(str).to_numpy(dtype=object))
    missing = [value for value in items.ids if value not in frame.index][:5]
    if missing:
        raise BundleError(f"content ids {missing} of the model are not in the content table")
    meta = frame.reindex(items.ids)[list(ITEM_COLUMNS)].reset_index(drop=True)
    meta["content_id"] = meta["content_id"].astype(str)
    meta["transactional"] = meta["transactional"].fillna(False).astype(bool)
    for column in ("kind", "tags", "card_tiers"):
        meta[column] = meta[column].astype("string")
    for column in ("valid_from", "valid_to"):
        meta[column] = pd.to_datetime(meta[column], utc=True).astype("datetime64[us, UTC]")
    return meta


def current_item_meta(bundle_meta: pd.DataFrame, content: pd.DataFrame) -> pd.DataFrame:
    """The bundle's item metadata, updated with the current content table where it knows the item."""
    if not len(content):
        return bundle_meta
    ids = bundle_meta["content_id"].astype(str).to_numpy(dtype=object)
    known = pd.Index(content["content_id"].astype(str).to_numpy(dtype=object))
    present = known.get_indexer(ids)
    if (present < 0).all():
        return bundle_meta
    fresh = item_metadata(content.iloc[present[present >= 0]], IdIndex(ids[present >= 0]))
    meta = bundle_meta.copy()
    meta.loc[present >= 0, list(ITEM_COLUMNS)] = fresh[list(ITEM_COLUMNS)].to_numpy()
    return meta


def card_tiers_of(dataset: Dataset, user_ids: np.ndarray) -> np.ndarray:
    """Card tier per cardholder (`UNKNOWN` when empty or not in the cardholders table)."""
    holders = dataset.cardholders.drop_duplicates("user_id")
    tiers = pd.Series(holders["card_tier"].astype("string").to_numpy(dtype=object, na_value=UNKNOWN),
                      index=holders["user_id"].astype(str).to_numpy(dtype=object))
    return tiers.reindex(np.asarray(user_ids, dtype=object)).fillna(UNKNOWN).to_numpy(dtype=object)


def seen_pairs(dataset: Dataset, as_of: pd.Timestamp, user_ids: np.ndarray, items: IdIndex) -> sp.csr_matrix:
    """bool csr [len(user_ids), n_items]: read or pushed at or before `as_of`."""
    return seen_matrix(dataset, as_of, IdIndex(user_ids), items)


def feature_builder(bundle: ModelBundle) -> FeatureBuilder:
    """The bundle's fitted feature builder (restored from `feature_state` once per bundle)."""
    builder = _BUILDERS.get(bundle)
    if builder is None:
        try:
            builder = FeatureBuilder.from_dict(bundle.feature_state)
        except FeatureStateError as error:
            raise BundleError(f"the bundle's feature state is unusable ({error})") from error
        _BUILDERS[bundle] = builder
    return builder


def features_for(bundle: ModelBundle, user_ids: Sequence[str] | np.ndarray,
                 feature_rows: Sequence[Mapping[str, float]] | None = None) -> sp.csr_matrix:
    """Feature rows for `user_ids`: from `{feature name: weight}` mappings when given, else the rows
    stored at the bundle's as-of time (empty for cardholders the bundle does not know)."""
    builder = feature_builder(bundle)
    if feature_rows is not None:
        if len(feature_rows) != len(user_ids):
            raise BundleError(f"{len(feature_rows)} feature rows for {len(user_ids)} users: one each")
        return builder.encode_user_dicts(feature_rows)
    return bundle.stored_features(user_ids, len(builder.user_feature_names))


def user_factors_for(bundle: ModelBundle, user_ids: Sequence[str] | np.ndarray,
                     feature_rows: Sequence[Mapping[str, float]] | None = None) -> np.ndarray:
    """The model's factors for `user_ids` (unknown ids: represented from features alone)."""
    ids = np.asarray(user_ids, dtype=object)
    return bundle.model.user_factors(bundle.users.index_of(ids), features_for(bundle, ids, feature_rows))


def dataset_eligibility(bundle: ModelBundle, dataset: Dataset, as_of: pd.Timestamp,
                        user_ids: np.ndarray) -> Eligibility:
    """Eligibility of the bundle's items for `user_ids` at `as_of`, from the dataset's tables."""
    meta = current_item_meta(bundle.item_meta, dataset.content)
    return build_eligibility(meta, bundle.items, as_of, card_tiers_of(dataset, user_ids),
                             seen_pairs(dataset, as_of, user_ids, bundle.items))


def rank_dataset(
    bundle: ModelBundle,
    dataset: Dataset,
    as_of: pd.Timestamp,
    k: int,
    user_ids: np.ndarray | None = None,
    block_size: int = 50_000,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Contract recommendation rows (user_id, rank, content_id, score) for every cardholder of the
    dataset (or `user_ids`), with their features and eligibility at `as_of` (`ModelBundle.rank`)."""
    ids = (dataset.cardholders["user_id"].astype(str).to_numpy(dtype=object) if user_ids is None
           else np.asarray(user_ids, dtype=object))
    eligibility = dataset_eligibility(bundle, dataset, as_of, ids)
    features = feature_builder(bundle).transform_users(dataset, as_of, ids)
    return bundle.rank(ids, features, eligibility, k, block_size=block_size, progress=progress)
