"""The world a simulation replays: cardholders and their segments, contents, each cardholder's ranked
candidates, how cardholders answer pushes (the response model) and the recent push history.

`load_world` builds it from a contract data directory (`world_of` from a loaded `Dataset`, e.g. one
partition of cardholders) plus either the synthetic world's hidden truth
(its `ResponseModel`) or, for real data, the response model published with the ranking bundle
(`recsys.response_model`, fitted on the push log by `recsys train`): one response model for the API
and the simulator. Candidates come from a model bundle when one is given (the
engine's own ranking), else from the popularity fallback the API serves (`recsys.fallback`); either
way ranking uses the eligibility rules at the as-of time (valid, not transactional, tier allowed, not
seen; `recsys.eligibility`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from features.bundle_inputs import card_tiers_of
from recsys.cells import split_list
from recsys.times import utc_timestamp
from simulation.local_calendar import NEVER
from simulation.vector_caps import Items, SimulationError

if TYPE_CHECKING:
    from features.loader import Dataset
    from recsys.bundle import ModelBundle
    from recsys.fallback import Popularity

logger = logging.getLogger(__name__)

FOREVER = np.int64(2**53)
ACTIVITY_DAYS = 90
HISTORY_DAYS = 62  # push history replayed into the cap state: a calendar month and the response window
ACTIVITY_LEVELS = ("low", "medium", "high")
DEFAULT_CANDIDATES = 20  # ranked candidates per cardholder the caps may choose from


class Response(Protocol):
    """How cardholders answer a push; indices are the response model's own user / item positions."""

    def open_probability(self, users: np.ndarray, items: np.ndarray, recent_pushes: np.ndarray,
                         local_hours: np.ndarray | None = None) -> np.ndarray:
        ...

    def mute_probability(self, users: np.ndarray, recent_pushes: np.ndarray, items: np.ndarray) -> np.ndarray:
        ...


@dataclass(frozen=True)
class History:
    """Pushes sent before the simulation starts: world user row, item index, send time, answers."""

    rows: np.ndarray
    items: np.ndarray
    sent: np.ndarray  # int64 seconds
    opened: np.ndarray
    muted: np.ndarray

    def subset(self, rows: np.ndarray) -> History:
        """Only the history of `rows`, renumbered to their positions in `rows`."""
        position = np.full(max(int(self.rows.max(initial=-1)) + 1, 1), -1, dtype=np.int64)
        keep_rows = np.asarray(rows, dtype=np.int64)
        position[keep_rows[keep_rows < len(position)]] = np.flatnonzero(keep_rows < len(position))
        mapped = position[self.rows] if len(self.rows) else self.rows
        keep = mapped >= 0
        return History(mapped[keep], self.items[keep], self.sent[keep], self.opened[keep], self.muted[keep])


@dataclass(frozen=True)
class SimWorld:
    """Everything a simulation needs, as aligned arrays (row = cardholder, item = content index)."""

    user_ids: np.ndarray
    timezones: np.ndarray  # IANA name, "" when unknown (the policy's default zone applies)
    opted_in: np.ndarray
    segments: dict[str, np.ndarray]  # segment name -> label per cardholder
    content_ids: np.ndarray
    items: Items
    valid_from: np.ndarray  # int64 seconds, NEVER when open-ended
    valid_to: np.ndarray  # int64 seconds, FOREVER when open-ended
    candidates: np.ndarray  # int64 [n, K] item indices best first, -1 padding
    response: Response
    response_users: np.ndarray  # row -> response model user index
    response_items: np.ndarray  # item -> response model item index
    history: History
    as_of: pd.Timestamp
    response_source: str
    ranking_source: str
    # the engine's own response model (a bundle's, behind `WorldResponse`): what send or hold decides with
    decision_model: Any = None
    decision_users: np.ndarray | None = None  # row -> decision model user index
    # row -> the cardholder's row in the whole cardholders table: what its random draws are indexed by,
    # so a partition of the population draws what the whole population would (None: 0..n-1)
    population_rows: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def draw_rows(self) -> np.ndarray:
        """Each row's index into the population's random draws."""
        if self.population_rows is None:
            return np.arange(self.n_users, dtype=np.int64)
        return self.population_rows

    def zones_under(self, default_timezone: str) -> np.ndarray:
        """Each cardholder's zone, the policy's default where none is known."""
        return np.where(self.timezones == "", default_timezone, self.timezones).astype(object)

    def sample(self, n: int, seed: int = 0) -> SimWorld:
        """A reproducible random subset of at most `n` cardholders (the whole world when smaller)."""
        if n >= self.n_users:
            return self
        rows = np.sort(np.random.default_rng(seed).choice(self.n_users, size=n, replace=False))
        return replace(
            self,
            user_ids=self.user_ids[rows],
            timezones=self.timezones[rows],
            opted_in=self.opted_in[rows],
            segments={name: labels[rows] for name, labels in self.segments.items()},
            candidates=self.candidates[rows],
            response_users=self.response_users[rows],
            decision_users=None if self.decision_users is None else self.decision_users[rows],
            history=self.history.subset(rows),
            population_rows=self.draw_rows[rows],
        )


def _seconds(values: pd.Series, missing: np.int64) -> np.ndarray:
    stamps = pd.to_datetime(values, utc=True)
    out = np.full(len(stamps), missing, dtype=np.int64)
    present = stamps.notna().to_numpy()
    if present.any():
        out[present] = stamps[present].to_numpy(dtype="datetime64[s]").astype(np.int64)
    return out


def activity_counts(dataset: Dataset, user_ids: np.ndarray, as_of: pd.Timestamp) -> np.ndarray:
    """Events (spend, menu clicks, reads) of each cardholder in the 90 days to `as_of`."""
    since = as_of - pd.Timedelta(days=ACTIVITY_DAYS)
    counts = pd.Series(0, index=pd.Index(user_ids, dtype=object), dtype=np.int64)
    for name, column in (("transactions", "ts"), ("menu_clicks", "ts"), ("article_reads", "ts")):
        frame = dataset.table(name)
        if not len(frame):
            continue
        recent = frame.loc[((frame[column] > since) & (frame[column] <= as_of)).to_numpy(), "user_id"]
        counts = counts.add(recent.astype(str).value_counts(), fill_value=0)
    return counts.reindex(user_ids).fillna(0).to_numpy(dtype=np.int64)


@dataclass(frozen=True)
class CountHistogram:
    """How many cardholders have each activity count: what disjoint partitions add up exactly."""

    values: np.ndarray  # int64, ascending, distinct
    counts: np.ndarray  # int64, cardholders with each value

    @classmethod
    def of(cls, values: np.ndarray) -> CountHistogram:
        distinct, counts = np.unique(np.asarray(values, dtype=np.int64), return_counts=True)
        return cls(distinct, counts.astype(np.int64))

    @staticmethod
    def combine(parts: list[CountHistogram]) -> CountHistogram:
        values = np.concatenate([part.values for part in parts]) if parts else np.zeros(0, np.int64)
        counts = np.concatenate([part.counts for part in parts]) if parts else np.zeros(0, np.int64)
        distinct, inverse = np.unique(values, return_inverse=True)
        return CountHistogram(distinct, np.bincount(inverse, weights=counts, minlength=len(distinct))
                              .astype(np.int64))

    def quantiles(self, qs: tuple[float, ...]) -> tuple[float, ...]:
        """`np.quantile(expanded, qs)` (linear interpolation) without expanding the histogram."""
        total = int(self.counts.sum())
        if not total:
            return tuple(0.0 for _ in qs)
        ends = np.cumsum(self.counts)
        out = []
        for q in qs:
            position = (total - 1) * q
            low = int(np.floor(position))
            high = min(low + 1, total - 1)
            below, above = self.values[np.searchsorted(ends, [low, high], side="right")].astype(np.float64)
            out.append(float(np.quantile(np.array([below, above]), position - low)))
        return tuple(out)


def activity_bounds(histogram: CountHistogram) -> tuple[float, float]:
    """The tercile bounds of the activity counts (`low` up to the first, `high` above the second)."""
    low, high = histogram.quantiles((1 / 3, 2 / 3))
    return low, high


def activity_levels(dataset: Dataset, user_ids: np.ndarray, as_of: pd.Timestamp,
                    bounds: tuple[float, float] | None = None) -> np.ndarray:
    """`low` / `medium` / `high` by terciles of events (spend, menu clicks, reads) in the last 90 days;
    `bounds` are the terciles of a whole population when `user_ids` are a partition of it."""
    values = activity_counts(dataset, user_ids, as_of)
    low, high = bounds if bounds is not None else activity_bounds(CountHistogram.of(values))
    levels = np.full(len(values), ACTIVITY_LEVELS[1], dtype=object)
    levels[values <= low] = ACTIVITY_LEVELS[0]
    levels[values > high] = ACTIVITY_LEVELS[2]
    return levels


def split_tags(cells: pd.Series) -> tuple[tuple[str, ...], ...]:
    """`dining|weekend` cells -> tuples of tags (empty cell -> ())."""
    return tuple(tuple(parts) for parts in split_list(cells))


def rank_candidates(dataset: Dataset, user_ids: np.ndarray, content_ids: np.ndarray, as_of: pd.Timestamp,
                    k: int, bundle: ModelBundle | None = None, bundle_label: str = "",
                    shares: Popularity | None = None) -> tuple[np.ndarray, str]:
    """Top-k candidate item indices (into `content_ids`) per cardholder, best first; -1 padding.

    With a model bundle, the engine's own ranking (its factors and eligibility); otherwise the
    API's popularity fallback (`recsys.fallback`) under the same eligibility rules, counted on
    `dataset` unless `shares` (a whole population's, counted per partition) are given.
    """
    from features.bundle_inputs import dataset_eligibility, feature_builder, item_metadata, seen_pairs
    from features.popularity import popularity
    from recsys.bundle import build_eligibility
    from recsys.ids import IdIndex
    from recsys.ranking import top_k

    items = IdIndex(content_ids)
    if bundle is None:
        tiers = card_tiers_of(dataset, user_ids)
        meta = item_metadata(dataset.content, items)
        seen = seen_pairs(dataset, as_of, user_ids, items)
        eligibility = build_eligibility(meta, items, as_of, tiers, seen)
        shares = shares if shares is not None else popularity(dataset, as_of, items)
        user_factors, item_factors = shares.factors(tiers)
        indices, _ = top_k(user_factors, item_factors, k, eligibility)
        return indices.astype(np.int64), "per-card-tier popularity of reads and opens (no --model)"
    features = feature_builder(bundle).transform_users(dataset, as_of, user_ids)
    factors = bundle.model.user_factors(bundle.users.index_of(user_ids), features)
    eligibility = dataset_eligibility(bundle, dataset, as_of, user_ids)
    indices, _ = top_k(factors, bundle.model.item_factors(), k, eligibility)
    # bundle item order -> this world's content order (items the content table lacks are dropped)
    mapped = np.where(indices >= 0, items.index_of(bundle.items.ids)[np.maximum(indices, 0)], -1)
    return _compact(mapped), f"model {bundle_label or 'bundle'} (as of {bundle.as_of.date()})"


def _compact(indices: np.ndarray) -> np.ndarray:
    """Move -1 entries to the end of each row, keeping the order of the rest."""
    order = np.argsort(indices < 0, axis=1, kind="stable")
    return np.take_along_axis(indices, order, axis=1).astype(np.int64)


def load_world(
    data_dir: str | Path,
    truth_path: str | Path | None = None,
    bundle: ModelBundle | None = None,
    bundle_label: str = "",
    k: int = DEFAULT_CANDIDATES,
    max_users: int | None = None,
    seed: int = 0,
) -> SimWorld:
    """Build the simulation world of a data directory (see the module docstring)."""
    from features.loader import load_dataset
    from features.partitions import sampled_rows

    dataset = load_dataset(data_dir)
    truth = load_truth(truth_path)
    as_of = world_as_of(dataset.time_range(), truth, data_dir)
    population = len(dataset.cardholders.drop_duplicates("user_id"))
    keep = None
    if max_users is not None and max_users < population:
        keep = sampled_rows(population, max_users, seed)
    return world_of(dataset, as_of, truth=truth, truth_path=truth_path, bundle=bundle,
                    bundle_label=bundle_label, k=k, keep=keep, population_rows=keep)


def load_truth(truth_path: str | Path | None, mmap: bool = False) -> Any:
    """The synthetic world's hidden truth (`worlds.truth.WorldTruth`), None without a path; `mmap` maps
    its cardholders x contents open probabilities (which a replay never reads) instead of reading them."""
    if truth_path is None:
        return None
    from worlds.truth import WorldTruth

    return WorldTruth.load(truth_path, mmap=mmap)


def world_as_of(span: tuple[pd.Timestamp, pd.Timestamp] | None, truth: Any, source: str | Path
                ) -> pd.Timestamp:
    """The simulation's as-of time: the truth's, else the last event of the data (`span`)."""
    if truth is not None:
        return utc_timestamp(pd.Timestamp(truth.as_of))
    if span is None:
        raise SimulationError(f"{source}: no events to date the simulation from; give --truth or data "
                              "with transactions, clicks, reads or pushes")
    return utc_timestamp(span[1])


def world_of(
    dataset: Dataset,
    as_of: pd.Timestamp,
    *,
    truth: Any = None,
    truth_path: str | Path | None = None,
    bundle: ModelBundle | None = None,
    bundle_label: str = "",
    k: int = DEFAULT_CANDIDATES,
    keep: np.ndarray | None = None,
    population_rows: np.ndarray | None = None,
    terciles: tuple[float, float] | None = None,
    popularity: Popularity | None = None,
) -> SimWorld:
    """The world of `dataset`'s cardholders (only the positions `keep` of its deduplicated cardholders
    table when given). For a partition of a population, `population_rows` are its cardholders' rows in
    the whole table (their random draws), `terciles` the population's activity terciles and
    `popularity` its popularity fallback, so each cardholder is replayed as in the whole world."""
    data_dir = dataset.root
    holders = dataset.cardholders.drop_duplicates("user_id")
    user_ids = holders["user_id"].astype(str).to_numpy(dtype=object)
    if keep is not None:
        holders = holders.iloc[keep]
        user_ids = user_ids[keep]
    timezones = holders["timezone"].astype("string").fillna("").to_numpy(dtype=object)
    opted_in = holders["push_opt_in"].astype("boolean").fillna(True).to_numpy(dtype=bool)
    tiers = card_tiers_of(dataset, user_ids)
    segments = {"card_tier": tiers, "activity": activity_levels(dataset, user_ids, as_of, terciles)}

    content = dataset.content.drop_duplicates("content_id")
    content_ids = content["content_id"].astype(str).to_numpy(dtype=object)
    items = Items(
        kinds=content["kind"].astype(str).to_numpy(dtype=object),
        tags=split_tags(content["tags"]),
        transactional=content["transactional"].astype("boolean").fillna(False).to_numpy(dtype=bool),
    )
    candidates, ranking_source = rank_candidates(dataset, user_ids, content_ids, as_of, k, bundle,
                                                 bundle_label, popularity)

    history = _history(dataset, user_ids, content_ids, as_of)
    if truth is not None:
        response = truth.response_model()
        response_users = truth.user_index(user_ids.astype(str))
        response_items = truth.content_index(content_ids.astype(str))
        if (response_users < 0).any() or (response_items < 0).any():
            raise SimulationError(
                f"the truth file {truth_path} does not describe this data directory "
                f"({int((response_users < 0).sum())} cardholders, {int((response_items < 0).sum())} contents "
                "unknown to it): give the truth written with this world by `recsys synth`"
            )
        response_source = f"synthetic world truth {truth_path} (hidden response model)"
    elif bundle is not None and bundle.response is not None:
        from recsys.response_model import WorldResponse

        response = WorldResponse(bundle.response, user_ids, content_ids, kinds=items.kinds)
        response_users = np.arange(len(user_ids), dtype=np.int64)
        response_items = np.arange(len(content_ids), dtype=np.int64)
        response_source = "the bundle's response model: " + response.describe()
    else:
        raise SimulationError(
            f"{data_dir} has no hidden truth and no response model was given to answer the pushes: give "
            "--truth (a synthetic world's), or --model with a bundle trained with response models "
            "(`recsys train` fits them on push_log)")
    world = SimWorld(
        user_ids=user_ids,
        timezones=timezones,
        opted_in=opted_in,
        segments=segments,
        content_ids=content_ids,
        items=items,
        valid_from=_seconds(content["valid_from"], NEVER),
        valid_to=_seconds(content["valid_to"], FOREVER),
        candidates=candidates,
        response=response,
        response_users=response_users,
        response_items=response_items,
        history=history,
        as_of=as_of,
        response_source=response_source,
        ranking_source=ranking_source,
        population_rows=None if population_rows is None else np.asarray(population_rows, dtype=np.int64),
    )
    if bundle is not None and bundle.response is not None:
        from recsys.response_model import WorldResponse

        world = replace(world, decision_model=WorldResponse(bundle.response, user_ids, content_ids,
                                                            kinds=items.kinds),
                        decision_users=np.arange(len(user_ids), dtype=np.int64))
    logger.info("simulation world: %d cardholders, %d contents, as of %s; ranking: %s; response: %s",
                world.n_users, len(content_ids), as_of.isoformat(), ranking_source, response_source)
    return world


def _history(dataset: Dataset, user_ids: np.ndarray, content_ids: np.ndarray, as_of: pd.Timestamp) -> History:
    from recsys.ids import IdIndex

    pushes = dataset.push_log
    since = as_of - pd.Timedelta(days=HISTORY_DAYS)
    pushes = pushes.loc[((pushes["sent_ts"] > since) & (pushes["sent_ts"] <= as_of)).to_numpy()]
    rows = IdIndex(user_ids).index_of(pushes["user_id"].astype(str).to_numpy(dtype=object))
    items = IdIndex(content_ids).index_of(pushes["content_id"].astype(str).to_numpy(dtype=object))
    keep = (rows >= 0) & (items >= 0)
    opened = (pushes["opened_ts"].notna() & (pushes["opened_ts"] <= as_of)).to_numpy(dtype=bool)
    muted = pushes["muted"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    sent = _seconds(pushes["sent_ts"], NEVER)
    order = np.argsort(sent[keep], kind="stable")
    return History(rows[keep][order], items[keep][order], sent[keep][order], opened[keep][order],
                   muted[keep][order])
