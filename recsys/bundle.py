"""A self-contained model bundle, the eligibility rules at an as-of time, and batch ranking of everyone.

Layout of a bundle directory (written to a temporary sibling, then renamed into place):

    bundle.json       format version, versions of the package and libraries, as-of time, metrics, params
    features.json     the fitted FeatureBuilder state (vocabularies, band edges, scales, MCC table)
    users.parquet     user_id, segment: the model's user index order
    items.parquet     content_id, kind, tags, valid_from, valid_to, card_tiers, transactional: item order
    user_features.npz optional: the users' feature rows at the as-of time (serving known cardholders)
    model/            the Recommender (saved by its own `save`)

Ranking never predicts pair by pair: user factors for a block of cardholders times the item factors,
ineligible items masked, top-k selected (`recsys.ranking.top_k`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.atomic import atomic_directory
from recsys.cells import split_list
from recsys.eligibility import epoch_micros, tier_table, valid_between
from recsys.ids import IdIndex
from recsys.models import IncompatibleModelError, Recommender, load_model
from recsys.models.base import library_versions
from recsys.response_model import PushResponseModel
from recsys.times import utc_timestamp

if TYPE_CHECKING:
    from recsys.ranking import Eligibility

logger = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
MANIFEST = "bundle.json"
ITEM_COLUMNS = ("content_id", "kind", "tags", "valid_from", "valid_to", "card_tiers", "transactional")
RESPONSE_DIR = "response"
LIBRARIES = ("qianmian", "numpy", "scipy", "pandas", "lightfm-next", "implicit")


class BundleError(ValueError):
    """A model bundle that is missing, damaged or from an incompatible version."""


def bundle_versions() -> dict[str, str]:
    """Installed versions of the engine and the libraries a bundle depends on."""
    return library_versions(LIBRARIES)


@dataclass(eq=False)  # identity: a bundle is one loaded object, not a value
class ModelBundle:
    """Everything needed to rank cardholders later, in any process, without the training data."""

    model: Recommender
    users: IdIndex
    items: IdIndex
    feature_state: dict[str, Any]
    item_meta: pd.DataFrame
    user_segments: np.ndarray | None
    as_of: pd.Timestamp
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    user_features: sp.csr_matrix | None = None
    response: PushResponseModel | None = None  # P(open), P(mute), best hours; None: not fitted
    versions: dict[str, str] = field(default_factory=bundle_versions)
    format_version: int = BUNDLE_FORMAT

    def __post_init__(self) -> None:
        if len(self.item_meta) != len(self.items):
            raise BundleError(f"item metadata has {len(self.item_meta)} rows for {len(self.items)} items")
        if self.user_features is not None and self.user_features.shape[0] != len(self.users):
            raise BundleError(f"{self.user_features.shape[0]} feature rows for {len(self.users)} users")
        if self.user_segments is not None and len(self.user_segments) != len(self.users):
            raise BundleError(f"{len(self.user_segments)} segment labels for {len(self.users)} users")

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the bundle directory atomically (`recsys.atomic`); returns the path."""
        target = Path(path)
        with atomic_directory(target) as staging:
            self.model.save(staging / "model")
            (staging / "features.json").write_text(json.dumps(self.feature_state))
            users = pd.DataFrame({"user_id": self.users.ids.astype(str)})
            if self.user_segments is not None:
                users["segment"] = np.asarray(self.user_segments).astype(str)
            users.to_parquet(staging / "users.parquet", index=False)
            self.item_meta.to_parquet(staging / "items.parquet", index=False)
            if self.user_features is not None:
                sp.save_npz(staging / "user_features.npz", sp.csr_matrix(self.user_features))
            if self.response is not None:
                self.response.save(staging / RESPONSE_DIR)
            manifest = {
                "format_version": self.format_version,
                "model_kind": self.model.kind,
                "as_of": self.as_of.isoformat(),
                "n_users": len(self.users),
                "n_items": len(self.items),
                "versions": self.versions,
                "metrics": self.metrics,
                "params": self.params,
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        logger.info("saved model bundle to %s", target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelBundle:
        """Read a bundle; `BundleError` naming the problem when it is missing, damaged or incompatible."""
        root = Path(path)
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise BundleError(f"{root} is not a model bundle (no {MANIFEST}): check the path or model URI")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as error:
            raise BundleError(
                f"{manifest_path} is not valid JSON ({error}): the bundle is damaged"
            ) from error
        found = manifest.get("format_version")
        if found != BUNDLE_FORMAT:
            saved_with = manifest.get("versions", {}).get("qianmian", "an unknown version")
            raise BundleError(
                f"{root} is a bundle in format version {found!r} (written by qianmian {saved_with}); "
                f"this qianmian {bundle_versions()['qianmian']} reads format {BUNDLE_FORMAT}: "
                "retrain with `recsys train` or use the matching engine version"
            )
        try:
            model = load_model(root / "model")
            feature_state = json.loads((root / "features.json").read_text())
            users_frame = pd.read_parquet(root / "users.parquet")
            item_meta = pd.read_parquet(root / "items.parquet")
            features_path = root / "user_features.npz"
            user_features = sp.load_npz(features_path).tocsr() if features_path.is_file() else None
            response_path = root / RESPONSE_DIR
            response = PushResponseModel.load(response_path) if response_path.is_dir() else None
        except IncompatibleModelError as error:
            raise BundleError(f"{root}: {error}") from error
        except (OSError, ValueError) as error:
            raise BundleError(f"{root} is damaged or incomplete ({error}): write the bundle again") from error
        try:
            bundle = cls(
                model=model,
                users=IdIndex(users_frame["user_id"].astype(str)),
                items=IdIndex(item_meta["content_id"].astype(str)),
                feature_state=feature_state,
                item_meta=item_meta,
                user_segments=(users_frame["segment"].to_numpy(dtype=object)
                               if "segment" in users_frame else None),
                as_of=pd.Timestamp(manifest["as_of"]),
                metrics=manifest.get("metrics", {}),
                params=manifest.get("params", {}),
                user_features=user_features,
                response=response,
                versions=manifest.get("versions", {}),
                format_version=found,
            )
        except (KeyError, TypeError) as error:
            message = f"{root} is damaged or incomplete (missing {error}): write the bundle again"
            raise BundleError(message) from error
        return bundle

    # ------------------------------------------------------------------ ranking
    def stored_features(self, user_ids: Sequence[str] | np.ndarray, n_features: int) -> sp.csr_matrix:
        """The feature rows stored at the bundle's as-of time for `user_ids` (`n_features` columns; empty
        rows for cardholders the bundle does not know)."""
        index = self.users.index_of(np.asarray(user_ids, dtype=object))
        out = sp.csr_matrix((len(index), n_features), dtype=np.float32)
        if self.user_features is None or not (index >= 0).any():
            return out
        known = sp.csr_matrix(self.user_features)[np.maximum(index, 0)]
        return sp.csr_matrix(sp.diags((index >= 0).astype(np.float32)) @ known)

    def rank(
        self,
        user_ids: np.ndarray,
        user_features: sp.csr_matrix,
        eligibility: Eligibility,
        k: int,
        block_size: int = 50_000,
        progress: Callable[[int], None] | None = None,
    ) -> pd.DataFrame:
        """Contract recommendation rows (user_id, rank, content_id, score) for `user_ids`, given their
        feature rows and eligibility (`features.bundle_inputs.rank_dataset` reads both from tables).

        Cardholders the model was not fitted on are represented from their features alone.
        `progress(n)` is called after each block of n cardholders.
        """
        from recsys.ranking import top_k

        ids = np.asarray(user_ids, dtype=object)
        index = self.users.index_of(ids)
        item_factors = self.model.item_factors()
        parts = []
        for start in range(0, len(ids), block_size):
            rows = np.arange(start, min(start + block_size, len(ids)))
            factors = self.model.user_factors(index[rows], user_features[rows])
            indices, scores = top_k(factors, item_factors, k, eligibility.subset(rows))
            parts.append(recommendation_rows(ids[rows], indices, scores, self.items))
            if progress is not None:
                progress(rows.size)
        if not parts:
            return recommendation_rows(ids, np.zeros((0, k), np.int32), np.zeros((0, k), np.float32),
                                       self.items)
        return pd.concat(parts, ignore_index=True)


def recommendation_rows(user_ids: np.ndarray, indices: np.ndarray, scores: np.ndarray,
                        items: IdIndex) -> pd.DataFrame:
    """Long contract rows from top-k arrays; slots without an eligible item (-1) are dropped."""
    n, k = indices.shape
    valid = indices >= 0
    user_rows, ranks = np.nonzero(valid)
    return pd.DataFrame({
        "user_id": np.asarray(user_ids, dtype=object)[user_rows].astype(str),
        "rank": (ranks + 1).astype(np.int64),
        "content_id": items.ids[indices[valid]].astype(str) if valid.any() else np.zeros(0, dtype=str),
        "score": scores[valid].astype(np.float64),
    })


def build_eligibility(meta: pd.DataFrame, items: IdIndex, as_of: pd.Timestamp, user_tiers: np.ndarray,
                      seen: sp.csr_matrix, until: pd.Timestamp | None = None) -> Eligibility:
    """The `recsys.eligibility` rules for a batch: valid at `as_of` (or at some moment up to `until`),
    not transactional, open to each cardholder's tier, nothing already read or pushed (`seen`)."""
    from recsys.ranking import Eligibility

    if len(meta) != len(items):
        raise BundleError(f"item metadata has {len(meta)} rows for {len(items)} items")
    groups, user_group = np.unique(np.asarray(user_tiers, dtype=object).astype(str), return_inverse=True)
    valid = valid_between(epoch_micros(meta["valid_from"]), epoch_micros(meta["valid_to"]),
                          utc_timestamp(as_of).value // 1000,
                          None if until is None else utc_timestamp(until).value // 1000)
    marketing = ~meta["transactional"].fillna(False).to_numpy(dtype=bool)
    restrictions = [frozenset(parts) for parts in split_list(meta["card_tiers"])]
    return Eligibility(
        item_allowed=valid & marketing,
        user_group=user_group.astype(np.int32),
        group_item_allowed=tier_table(restrictions, groups.tolist()),
        seen=sp.csr_matrix(seen, dtype=bool),
    )
