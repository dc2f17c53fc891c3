"""Cardholder and item features, point-in-time, from a fitted and JSON-serialisable `FeatureBuilder`.

Every feature is a named column of a csr matrix holding a weight in [0, 1]: one-hot bands for the
profile, shares and levels of spend per spend category and window, recency bands, menu-click levels,
shares of article topics read. The builder is fitted once (vocabularies, band edges, level scales) at
the training as-of time; its state (`to_dict`) travels in the model bundle, so serving and batch
ranking compute exactly the same columns later, for any cardholder, including ones the model never
saw (`encode_user_dicts` turns a `{feature name: weight}` mapping into a row).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.config import FeatureConfig
from features.contract import CONTENT_KINDS, MENU_KEYS
from features.loader import Dataset
from features.mcc import MccTable
from features.timecut import known_at
from recsys.cells import UNKNOWN, split_list

logger = logging.getLogger(__name__)

STATE_FORMAT = 4
AGE_EDGES = (25, 35, 45, 55)
AGE_LABELS = ("<25", "25-34", "35-44", "45-54", "55+")
TENURE_EDGES_YEARS = (1, 3, 5, 10)
TENURE_LABELS = ("<1y", "1-3y", "3-5y", "5-10y", "10y+")
RECENCY_EDGES_DAYS = (7, 30, 90)
RECENCY_LABELS = ("0-7d", "8-30d", "31-90d", "90d+")
NEVER = "never"
DAY = pd.Timedelta(days=1)


class FeatureStateError(ValueError):
    """A serialised feature-builder state this code cannot read."""


def band(values: np.ndarray, edges: Sequence[float], labels: Sequence[str]) -> np.ndarray:
    """Label per value by `edges` (value < edges[0] -> labels[0], ...); NaN -> `unknown`."""
    values = np.asarray(values, dtype=np.float64)
    out = np.asarray(labels, dtype=object)[np.searchsorted(np.asarray(edges, dtype=np.float64), values,
                                                          side="right").clip(0, len(labels) - 1)]
    out[~np.isfinite(values)] = UNKNOWN
    return out


def days_before(as_of: pd.Timestamp, stamps: pd.Series) -> np.ndarray:
    return ((as_of - stamps) / DAY).to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass
class _Triplets:
    """Coordinate lists collected group by group, then turned into one csr matrix."""

    rows: list[np.ndarray]
    cols: list[np.ndarray]
    vals: list[np.ndarray]

    @classmethod
    def empty(cls) -> _Triplets:
        return cls([], [], [])

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray | float) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.broadcast_to(np.asarray(cols, dtype=np.int64), rows.shape)
        vals = np.broadcast_to(np.asarray(vals, dtype=np.float32), rows.shape)
        keep = (cols >= 0) & (vals != 0)
        self.rows.append(rows[keep])
        self.cols.append(cols[keep])
        self.vals.append(vals[keep])

    def add_dense(self, block: np.ndarray, cols: np.ndarray) -> None:
        rows, positions = np.nonzero(block)
        self.add(rows, np.asarray(cols)[positions], block[rows, positions])

    def to_csr(self, shape: tuple[int, int]) -> sp.csr_matrix:
        if not self.rows:
            return sp.csr_matrix(shape, dtype=np.float32)
        matrix = sp.coo_matrix(
            (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
            shape=shape, dtype=np.float32,
        ).tocsr()
        matrix.sum_duplicates()
        return matrix


class FeatureBuilder:
    """Fitted feature vocabularies and scales; `fit` once, then compute features for any as-of time."""

    def __init__(self, config: FeatureConfig | None = None, mcc_table: MccTable | None = None) -> None:
        self.config = config or FeatureConfig()
        self.mcc_table = mcc_table or MccTable.shipped()
        self._state: dict[str, Any] | None = None

    # ------------------------------------------------------------------ fitting and state
    @property
    def is_fitted(self) -> bool:
        return self._state is not None

    def fit(self, dataset: Dataset, as_of: pd.Timestamp) -> FeatureBuilder:
        """Learn vocabularies, band edges and level scales from what was known at `as_of`."""
        data = known_at(dataset, as_of)
        holders = data.cardholders
        card_tiers = sorted(set(holders["card_tier"].dropna().astype(str)) - {""})
        menu_keys = list(MENU_KEYS) + sorted(set(data.menu_clicks["menu_key"].astype(str)) - set(MENU_KEYS))
        tags = sorted({tag for cell in split_list(dataset.content["tags"]) for tag in cell})
        content_tiers = sorted({tier for cell in split_list(dataset.content["card_tiers"]) for tier in cell}
                               | set(card_tiers))
        limits = holders["credit_limit"].to_numpy(dtype=np.float64, na_value=np.nan)
        limits = limits[np.isfinite(limits)]
        n_bins = self.config.credit_limit_bins
        limit_edges = (
            np.unique(np.quantile(limits, np.linspace(0, 1, n_bins + 1)[1:-1])).tolist()
            if limits.size else []
        )
        self._state = {
            "format": STATE_FORMAT,
            "mccs": self._mcc_vocabulary(data, as_of),
            "title_words": title_vocabulary(dataset.content, self.config.title_min_items),
            "card_tiers": card_tiers,
            "menu_keys": menu_keys,
            "tags": tags,
            "content_tiers": content_tiers,
            "kinds": sorted(CONTENT_KINDS),
            "credit_limit_edges": limit_edges,
            "level_scales": {},
        }
        user_ids = holders["user_id"].astype(str).to_numpy()
        scales: dict[str, list[float]] = {}
        quantile = self.config.level_quantile
        events = self._spend_events(data, as_of, user_ids)
        for window in self.config.spend_windows_days:
            per_category = self._spend_by_category(events, len(user_ids), window)
            logs = np.log1p(np.column_stack([per_category, per_category.sum(axis=1)]))
            scales[str(window)] = [
                float(np.quantile(column[column > 0], quantile)) if (column > 0).any() else 1.0
                for column in logs.T
            ]
        self._state["level_scales"] = scales
        self._build_names()
        logger.info("fitted feature builder: %d user features, %d item features",
                    len(self.user_feature_names), len(self.item_feature_names))
        return self

    def _mcc_vocabulary(self, data: Dataset, as_of: pd.Timestamp) -> list[int]:
        """Raw MCCs used by at least `mcc_min_users` cardholders in the longest spend window."""
        tx = data.transactions
        if not len(tx):
            return []
        recent = tx.loc[days_before(as_of, tx["ts"]) < max(self.config.spend_windows_days)]
        users = recent.groupby("mcc")["user_id"].nunique()
        return sorted(int(code) for code in users.index[users.to_numpy() >= self.config.mcc_min_users])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: config, MCC table and everything `fit` learned."""
        state = self._require_state()
        return {**state, "config": self.config.to_dict(), "mcc_table": self.mcc_table.to_json()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureBuilder:
        if data.get("format") != STATE_FORMAT:
            raise FeatureStateError(
                f"feature state format {data.get('format')!r} is not {STATE_FORMAT}: "
                "retrain the model with this version of the engine"
            )
        state = dict(data)
        config = FeatureConfig.from_dict(state.pop("config"))
        builder = cls(config, MccTable.from_json(state.pop("mcc_table")))
        builder._state = state
        builder._build_names()
        return builder

    def _require_state(self) -> dict[str, Any]:
        if self._state is None:
            raise FeatureStateError("the feature builder is not fitted: call fit(dataset, as_of) first")
        return self._state

    def _build_names(self) -> None:
        state = self._require_state()
        categories = self.mcc_table.categories
        names: list[str] = [f"gender={value}" for value in ("M", "F", UNKNOWN)]
        names += [f"age_band={label}" for label in (*AGE_LABELS, UNKNOWN)]
        names += [f"city_tier={tier}" for tier in ("1", "2", "3", "4", "5", UNKNOWN)]
        names += [f"card_tier={tier}" for tier in (*state["card_tiers"], UNKNOWN)]
        names += [f"tenure_band={label}" for label in (*TENURE_LABELS, UNKNOWN)]
        names += [f"credit_limit_band={i}" for i in range(len(state["credit_limit_edges"]) + 1)]
        names.append(f"credit_limit_band={UNKNOWN}")
        for window in self.config.spend_windows_days:
            names += [f"spend{window}d_share:{category}" for category in categories]
            names += [f"spend{window}d_level:{category}" for category in categories]
            names += [f"spend{window}d_level:total", f"spend{window}d:none"]
        names += [f"mcc{self._mcc_window}d_share:{code}" for code in state["mccs"]]
        names += [f"visits{self._mcc_window}d_share:{code}" for code in state["mccs"]]
        names += [f"spend_recency={label}" for label in (*RECENCY_LABELS, NEVER)]
        names += ["online_share", "overseas_share"]
        names += [f"menu{self.config.menu_window_days}d_level:{key}" for key in state["menu_keys"]]
        names += [f"menu{self.config.menu_recent_days}d:{key}" for key in state["menu_keys"]]
        names += [f"clicks{self.config.menu_window_days}d_share:{key}" for key in state["menu_keys"]]
        names += [f"menu_recency={label}" for label in (*RECENCY_LABELS, NEVER)]
        names += [f"topic:{tag}" for tag in state["tags"]]
        names += ["reads_level", "reads:none"]
        names += [f"open_topic:{tag}" for tag in state["tags"]]
        names += ["opens_level", "opens:none"]
        self.user_feature_names: tuple[str, ...] = tuple(names)
        self._user_column = {name: j for j, name in enumerate(names)}
        self._user_weights = family_weights(names, USER_FAMILIES, self.config)
        item_names = [f"kind={kind}" for kind in state["kinds"]]
        item_names += [f"tag:{tag}" for tag in state["tags"]] + ["tag:none"]
        item_names += [f"title:{word}" for word in state["title_words"]]
        item_names += [f"tier:{tier}" for tier in state["content_tiers"]] + ["tiers=all", "transactional"]
        self.item_feature_names: tuple[str, ...] = tuple(item_names)
        self._item_column = {name: j for j, name in enumerate(item_names)}
        self._item_weights = family_weights(item_names, ITEM_FAMILIES, self.config)

    @property
    def _mcc_window(self) -> int:
        return max(self.config.spend_windows_days)

    def _columns(self, names: Iterable[str]) -> np.ndarray:
        """Column index per feature name (-1 for a name this builder does not know)."""
        lookup = self._user_column
        return np.fromiter((lookup.get(name, -1) for name in names), dtype=np.int64)

    # ------------------------------------------------------------------ cardholder features
    def transform_users(
        self, dataset: Dataset, as_of: pd.Timestamp, user_ids: Sequence[str] | np.ndarray | None = None
    ) -> sp.csr_matrix:
        """csr [n_users, n_user_features] from events up to `as_of`; rows follow `user_ids`
        (default: the cardholders table). An id not in the cardholders table gets the
        `unknown` profile and no activity features."""
        self._require_state()
        data = known_at(dataset, as_of)
        ids = (data.cardholders["user_id"].astype(str).to_numpy() if user_ids is None
               else np.asarray([str(value) for value in user_ids], dtype=object))
        n = len(ids)
        out = _Triplets.empty()
        self._profile(out, data, as_of, ids)
        self._spend(out, data, as_of, ids)
        self._menu(out, data, as_of, ids)
        self._topics(out, data, as_of, ids)
        self._opens(out, data, as_of, ids)
        return weighted(out.to_csr((n, len(self.user_feature_names))), self._user_weights)

    def user_feature_dicts(self, matrix: sp.csr_matrix) -> list[dict[str, float]]:
        """Rows of a user feature matrix as `{feature name: weight}` (the serving input form)."""
        matrix = sp.csr_matrix(matrix)
        names = self.user_feature_names
        return [
            {names[j]: float(v)
             for j, v in zip(matrix.indices[start:end], matrix.data[start:end], strict=True)}
            for start, end in zip(matrix.indptr[:-1], matrix.indptr[1:], strict=True)
        ]

    def encode_user_dicts(self, rows: Sequence[Mapping[str, float]], strict: bool = False) -> sp.csr_matrix:
        """csr rows from `{feature name: weight}` mappings; unknown names are ignored (or raise if strict)."""
        self._require_state()
        out = _Triplets.empty()
        for i, row in enumerate(rows):
            names = list(row)
            cols = self._columns(names)
            if strict and (cols < 0).any():
                unknown = [name for name, col in zip(names, cols, strict=True) if col < 0][:5]
                raise FeatureStateError(
                    f"unknown feature name(s) {unknown} in row {i}: use names from user_feature_names"
                )
            out.add(np.full(len(names), i), cols, np.asarray([float(row[name]) for name in names]))
        return out.to_csr((len(rows), len(self.user_feature_names)))

    def _one_hot(self, out: _Triplets, prefix: str, labels: np.ndarray) -> None:
        cols = self._columns(f"{prefix}={label}" for label in labels)
        unknown = self._user_column[f"{prefix}={UNKNOWN}"]
        out.add(np.arange(len(labels)), np.where(cols < 0, unknown, cols), 1.0)

    def _profile_frame(self, data: Dataset, ids: np.ndarray) -> pd.DataFrame:
        holders = data.cardholders.drop_duplicates("user_id")
        holders.index = pd.Index(holders["user_id"].astype(str).to_numpy(dtype=object))
        return holders.reindex(ids)

    def profile_labels(self, dataset: Dataset, as_of: pd.Timestamp, ids: np.ndarray) -> pd.DataFrame:
        """Profile bands per cardholder (gender, age_band, city_tier, card_tier, tenure_band) as text."""
        state = self._require_state()
        profile = self._profile_frame(dataset, ids)
        age = as_of.year - profile["birth_year"].to_numpy(dtype=np.float64, na_value=np.nan)
        tenure = days_before(as_of, profile["opened_at"]) / 365.25
        tenure = np.where(tenure < 0, np.nan, tenure)
        tier = profile["card_tier"].astype("string").fillna(UNKNOWN).to_numpy(dtype=object)
        tier = np.where(pd.Index(state["card_tiers"]).get_indexer(tier) >= 0, tier, UNKNOWN)
        gender = profile["gender"].astype("string").fillna(UNKNOWN).to_numpy(dtype=object)
        city = profile["city_tier"].astype("string").fillna(UNKNOWN).to_numpy(dtype=object)
        return pd.DataFrame({
            "gender": gender,
            "age_band": band(age, AGE_EDGES, AGE_LABELS),
            "city_tier": city,
            "card_tier": tier,
            "tenure_band": band(tenure, TENURE_EDGES_YEARS, TENURE_LABELS),
        }, index=pd.Index(ids, name="user_id"))

    def _profile(self, out: _Triplets, data: Dataset, as_of: pd.Timestamp, ids: np.ndarray) -> None:
        labels = self.profile_labels(data, as_of, ids)
        for column in labels.columns:
            self._one_hot(out, column, labels[column].to_numpy())
        limits = self._profile_frame(data, ids)["credit_limit"].to_numpy(dtype=np.float64, na_value=np.nan)
        edges = self._require_state()["credit_limit_edges"]
        bins = np.searchsorted(np.asarray(edges, dtype=np.float64), limits, side="right").astype(object)
        bins[~np.isfinite(limits)] = UNKNOWN
        self._one_hot(out, "credit_limit_band", bins)

    def _spend_events(self, data: Dataset, as_of: pd.Timestamp, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Per transaction of a known cardholder: row, age in days, category, amount, online, overseas."""
        tx = data.transactions
        if not len(tx):
            empty = np.zeros(0)
            return {"rows": empty.astype(np.int64), "age": empty, "category": empty.astype(np.int64),
                    "amount": empty, "online": empty.astype(bool), "overseas": empty.astype(bool)}
        rows = pd.Index(ids).get_indexer(tx["user_id"])
        known = rows >= 0
        return {
            "rows": rows[known],
            "age": days_before(as_of, tx["ts"])[known],
            "category": self.mcc_table.categorise(tx["mcc"])[known].astype(np.int64),
            "amount": tx["amount"].to_numpy(dtype=np.float64)[known],
            "online": tx["channel"].eq("online").fillna(False).to_numpy(dtype=bool)[known],
            "overseas": tx["overseas"].fillna(False).to_numpy(dtype=bool)[known],
        }

    def _spend_by_category(self, events: dict[str, np.ndarray], n: int, window: int) -> np.ndarray:
        """float64 [n, n_categories]: net spend (refunds netted, floored at 0) per category in the window."""
        n_categories = len(self.mcc_table.categories)
        use = events["age"] < window
        totals = np.bincount(events["rows"][use] * n_categories + events["category"][use],
                             weights=events["amount"][use], minlength=n * n_categories)
        return np.maximum(totals.reshape(n, n_categories), 0.0)

    def _spend(self, out: _Triplets, data: Dataset, as_of: pd.Timestamp, ids: np.ndarray) -> None:
        state = self._require_state()
        categories = self.mcc_table.categories
        events = self._spend_events(data, as_of, ids)
        n = len(ids)
        for window in self.config.spend_windows_days:
            per_category = self._spend_by_category(events, n, window)
            total = per_category.sum(axis=1)
            share = np.divide(per_category, total[:, None], out=np.zeros_like(per_category),
                              where=total[:, None] > 0)
            scales = np.asarray(state["level_scales"][str(window)], dtype=np.float64)
            levels = np.clip(np.log1p(np.column_stack([per_category, total])) / scales, 0.0, 1.0)
            out.add_dense(share, self._columns(f"spend{window}d_share:{c}" for c in categories))
            out.add_dense(levels, self._columns([*(f"spend{window}d_level:{c}" for c in categories),
                                                 f"spend{window}d_level:total"]))
            none = np.flatnonzero(total <= 0)
            out.add(none, self._user_column[f"spend{window}d:none"], 1.0)
        self._spend_mcc(out, data, as_of, ids)
        last = np.full(n, np.inf)
        np.minimum.at(last, events["rows"], events["age"])
        last[~np.isfinite(last)] = np.nan
        recency = band(last, RECENCY_EDGES_DAYS, RECENCY_LABELS)
        recency[~np.isfinite(last)] = NEVER
        out.add(np.arange(n), self._columns(f"spend_recency={label}" for label in recency), 1.0)
        in_window = events["age"] < max(self.config.spend_windows_days)
        users = events["rows"][in_window]
        count = np.bincount(users, minlength=n).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            online_share = np.bincount(users, weights=events["online"][in_window], minlength=n) / count
            overseas_share = np.bincount(users, weights=events["overseas"][in_window], minlength=n) / count
        has = np.flatnonzero(count > 0)
        out.add(has, self._user_column["online_share"], online_share[has])
        out.add(has, self._user_column["overseas_share"], overseas_share[has])

    def _spend_mcc(self, out: _Triplets, data: Dataset, as_of: pd.Timestamp, ids: np.ndarray) -> None:
        """Per raw MCC of the vocabulary, in the longest spend window: the share of net spend and the
        share of purchases (how often, whatever the amount: a frequent small habit weighs like a rare
        large ticket)."""
        codes = self._require_state()["mccs"]
        tx = data.transactions
        if not codes or not len(tx):
            return
        rows = pd.Index(ids).get_indexer(tx["user_id"])
        cols = pd.Index(codes).get_indexer(tx["mcc"].to_numpy(dtype=np.int64, na_value=-1))
        use = (rows >= 0) & (cols >= 0) & (days_before(as_of, tx["ts"]) < self._mcc_window)
        amounts = tx["amount"].to_numpy(dtype=np.float64)[use]
        # sparse: a cardholder uses a handful of the hundreds of codes
        for prefix, values in (("mcc", amounts), ("visits", (amounts > 0).astype(np.float64))):
            totals = sp.csr_matrix((values, (rows[use], cols[use])), shape=(len(ids), len(codes)))
            totals.sum_duplicates()
            totals.data = np.maximum(totals.data, 0.0)
            totals.eliminate_zeros()
            coo = totals.tocoo()
            total = np.asarray(totals.sum(axis=1)).ravel()
            columns = self._columns(f"{prefix}{self._mcc_window}d_share:{code}" for code in codes)
            out.add(coo.row, columns[coo.col], coo.data / total[coo.row])

    def _menu(self, out: _Triplets, data: Dataset, as_of: pd.Timestamp, ids: np.ndarray) -> None:
        state = self._require_state()
        clicks = data.menu_clicks
        keys = state["menu_keys"]
        last = np.full(len(ids), np.nan)
        if len(clicks):
            rows = pd.Index(ids).get_indexer(clicks["user_id"].astype(str))
            key_index = pd.Index(keys).get_indexer(clicks["menu_key"].astype(str))
            age = days_before(as_of, clicks["ts"])
            known = rows >= 0
            windows = ((self.config.menu_window_days, "level"), (self.config.menu_recent_days, ""))
            for window, prefix in windows:
                use = known & (key_index >= 0) & (age < window)
                counts = np.bincount(rows[use] * len(keys) + key_index[use],
                                     minlength=len(ids) * len(keys)).reshape(len(ids), len(keys))
                if prefix:
                    block = np.minimum(np.log1p(counts) / np.log1p(self.config.menu_count_cap), 1.0)
                    names = (f"menu{window}d_level:{key}" for key in keys)
                    # shares leave out how active a cardholder is overall, as purchase-count shares do
                    totals = counts.sum(axis=1, keepdims=True)
                    out.add_dense(counts / np.maximum(totals, 1),
                                  self._columns(f"clicks{window}d_share:{key}" for key in keys))
                else:
                    block = (counts > 0).astype(np.float64)
                    names = (f"menu{window}d:{key}" for key in keys)
                out.add_dense(block, self._columns(names))
            if known.any():
                last_age = pd.Series(age[known]).groupby(rows[known]).min()
                last[last_age.index.to_numpy()] = last_age.to_numpy()
        recency = band(last, RECENCY_EDGES_DAYS, RECENCY_LABELS)
        recency[~np.isfinite(last)] = NEVER
        out.add(np.arange(len(ids)), self._columns(f"menu_recency={label}" for label in recency), 1.0)

    def _topics(self, out: _Triplets, data: Dataset, as_of: pd.Timestamp, ids: np.ndarray) -> None:
        """Tag shares of articles read in the topic window (dwell-weighted), and how much was read."""
        reads = data.article_reads
        if len(reads):
            reads = reads.loc[days_before(as_of, reads["ts"]) < self.config.topic_window_days]
        self._tag_shares(out, data, ids, reads["user_id"], reads["content_id"],
                         dwell_weight(reads["dwell_seconds"], self.config), "topic", "reads",
                         self.config.read_count_cap)

    def _opens(self, out: _Triplets, data: Dataset, as_of: pd.Timestamp, ids: np.ndarray) -> None:
        """Tag shares of pushes opened in the topic window: the taste of cardholders who never read."""
        pushes = data.push_log
        opened = pushes["opened_ts"].notna() & (pushes["opened_ts"] <= as_of)
        pushes = pushes.loc[opened.to_numpy()]
        pushes = pushes.loc[days_before(as_of, pushes["opened_ts"]) < self.config.topic_window_days]
        self._tag_shares(out, data, ids, pushes["user_id"], pushes["content_id"], np.ones(len(pushes)),
                         "open_topic", "opens", self.config.read_count_cap)

    def _tag_shares(self, out: _Triplets, data: Dataset, ids: np.ndarray, users: pd.Series,
                    content_ids: pd.Series, weights: np.ndarray, prefix: str, level: str, cap: int) -> None:
        state = self._require_state()
        rows = (pd.Index(ids).get_indexer(users.astype(str)) if len(users) else np.zeros(0, np.int64))
        known = rows >= 0
        count = np.bincount(rows[known], minlength=len(ids)).astype(np.float64)
        level_value = np.minimum(np.log1p(count) / np.log1p(cap), 1.0)
        has = np.flatnonzero(count > 0)
        out.add(has, self._user_column[f"{level}_level"], level_value[has])
        out.add(np.flatnonzero(count == 0), self._user_column[f"{level}:none"], 1.0)
        if not known.any():
            return
        tags = state["tags"]
        content_tags = split_list(data.content["tags"])
        content_tags.index = data.content["content_id"].astype(str).to_numpy()
        exploded = content_tags.explode().dropna()
        tag_of = pd.DataFrame({"content_id": exploded.index.to_numpy(),
                               "tag": pd.Index(tags).get_indexer(exploded.astype(str))})
        tag_of = tag_of[tag_of["tag"] >= 0]
        events = pd.DataFrame({"row": rows[known],
                               "content_id": content_ids.astype(str).to_numpy()[known],
                               "weight": np.asarray(weights, dtype=np.float64)[known]})
        joined = events.merge(tag_of, on="content_id", how="inner")
        if joined.empty:
            return
        per_tag = joined.groupby(["row", "tag"], sort=False)["weight"].sum()
        user_rows = per_tag.index.get_level_values(0).to_numpy()
        tag_cols = per_tag.index.get_level_values(1).to_numpy()
        values = per_tag.to_numpy()
        totals = np.bincount(user_rows, weights=values, minlength=len(ids))
        topic_cols = self._columns(f"{prefix}:{tag}" for tag in tags)
        out.add(user_rows, topic_cols[tag_cols], values / totals[user_rows])

    # ------------------------------------------------------------------ segments and items
    def segments(self, dataset: Dataset, as_of: pd.Timestamp, ids: np.ndarray) -> np.ndarray:
        """Segment label per cardholder for per-segment popularity, e.g. `gold|35-44`."""
        labels = self.profile_labels(dataset, as_of, np.asarray(ids, dtype=object))
        fields = list(self.config.segment_by)
        if not fields:
            return np.full(len(ids), "all", dtype=object)
        joined = labels[fields[0]].astype(str)
        for name in fields[1:]:
            joined = joined + "|" + labels[name].astype(str)
        return joined.to_numpy(dtype=object)

    def transform_items(self, content: pd.DataFrame, item_ids: Sequence[str] | np.ndarray) -> sp.csr_matrix:
        """csr [n_items, n_item_features]: kind, tags (weights sum to 1), tier restriction, transactional."""
        self._require_state()
        frame = content.drop_duplicates("content_id")
        frame = frame.set_index(frame["content_id"].astype(str).to_numpy()).reindex(
            [str(value) for value in item_ids])
        n = len(frame)
        out = _Triplets.empty()
        column = self._item_column
        kinds = frame["kind"].astype("string").to_numpy(dtype=object, na_value="")
        out.add(np.arange(n), np.fromiter((column.get(f"kind={kind}", -1) for kind in kinds), np.int64), 1.0)
        for prefix, cells, fallback in (("tag:", split_list(frame["tags"]), "tag:none"),
                                        ("tier:", split_list(frame["card_tiers"]), "tiers=all")):
            for i, values in enumerate(cells):
                cols = [column[f"{prefix}{value}"] for value in values if f"{prefix}{value}" in column]
                if cols:
                    out.add(np.full(len(cols), i), np.asarray(cols), 1.0 / len(cols))
                else:
                    out.add(np.asarray([i]), column[fallback], 1.0)
        words = frame["title"].astype("string").fillna("").map(title_words) if "title" in frame else None
        for i, cell in enumerate([] if words is None else words):
            cols = [column[f"title:{word}"] for word in cell if f"title:{word}" in column]
            if cols:
                out.add(np.full(len(cols), i), np.asarray(cols), 1.0 / len(cols))
        transactional = frame["transactional"].fillna(False).to_numpy(dtype=bool)
        out.add(np.flatnonzero(transactional), column["transactional"], 1.0)
        return weighted(out.to_csr((n, len(self.item_feature_names))), self._item_weights)


USER_FAMILIES = (
    (("gender=", "age_band=", "city_tier=", "card_tier=", "tenure_band=", "credit_limit_band="),
     "profile_weight"),
    (("mcc",), "spend_mcc_weight"),
    (("visits",), "spend_visits_weight"),
    (("clicks",), "menu_share_weight"),
    (("spend", "online_share", "overseas_share"), "spend_category_weight"),
    (("menu",), "menu_weight"),
    (("topic:", "reads_level", "reads:none"), "read_topic_weight"),
    (("open_topic:", "opens_level", "opens:none"), "open_topic_weight"),
)
ITEM_FAMILIES = ((("tag:",), "item_tag_weight"), (("title:",), "item_title_weight"))


def family_weights(names: Sequence[str], families: Sequence[tuple[tuple[str, ...], str]],
                   config: FeatureConfig) -> np.ndarray:
    """float32 per column: the weight of the first family whose prefix the name has (1 if none)."""
    out = np.ones(len(names), dtype=np.float32)
    for j, name in enumerate(names):
        for prefixes, setting in families:
            if name.startswith(prefixes):
                out[j] = getattr(config, setting)
                break
    return out


def weighted(matrix: sp.csr_matrix, weights: np.ndarray) -> sp.csr_matrix:
    """Columns scaled by their family weight; the columns of weight-0 families are left out."""
    if np.all(weights == 1.0):
        return matrix
    out = sp.csr_matrix(matrix @ sp.diags(weights), dtype=np.float32)
    out.eliminate_zeros()
    return out


def title_words(title: str) -> list[str]:
    """Lower-case word tokens of a title (letters only; numbers and punctuation dropped)."""
    return sorted(set(re.findall(r"[^\W\d_]+", title.lower())))


def title_vocabulary(content: pd.DataFrame, min_items: int) -> list[str]:
    """Title words found in at least `min_items` contents and not in all of them."""
    if "title" not in content or not len(content):
        return []
    counts = pd.Series([word for title in content["title"].astype("string").fillna("")
                        for word in title_words(str(title))]).value_counts()
    keep = (counts >= min_items) & (counts < len(content))
    return sorted(counts.index[keep.to_numpy()].astype(str))


def exposure_days(data: Dataset, as_of: pd.Timestamp, item_ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """float64 [n_items]: days each item was on offer before `as_of`, from its validity window clipped
    to the span the read and push tables cover (an open bound is that span's edge); at least 1."""
    tables = ((data.article_reads, "ts"), (data.push_log, "sent_ts"))
    starts = [frame[column].min() for frame, column in tables if len(frame)]
    first = min(starts) if starts else as_of
    frame = data.content.drop_duplicates("content_id")
    frame = frame.set_index(frame["content_id"].astype(str).to_numpy()).reindex(
        [str(value) for value in item_ids])
    begin = pd.to_datetime(frame["valid_from"], utc=True).fillna(first).clip(lower=first)
    end = pd.to_datetime(frame["valid_to"], utc=True).fillna(as_of).clip(upper=as_of)
    days = ((end - begin) / DAY).to_numpy(dtype=np.float64, na_value=np.nan)
    return np.clip(np.nan_to_num(days, nan=1.0), 1.0, None)


def dwell_weight(dwell: pd.Series, config: FeatureConfig) -> np.ndarray:
    """Per read: dwell / reference clipped to [min_dwell_weight, 1]; unknown dwell: missing_dwell_weight."""
    seconds = dwell.to_numpy(dtype=np.float64, na_value=np.nan)
    weight = np.clip(seconds / config.dwell_reference_seconds, config.min_dwell_weight, 1.0)
    return np.where(np.isfinite(seconds), weight, config.missing_dwell_weight)
