"""The request-time ranking pipeline over a published version.

Named stages: representation (published factors, else features, else popularity) -> candidates
(requested ids, else every published item minus those already seen; transactional notices may
repeat) -> eligibility at `now` (validity window, card tier, transactional only when requested, no
marketing for opted-out cardholders) -> score -> order. The caps stage follows in `serving.ranker`,
over this order.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import chain
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.caps.decisions import Candidate
from recsys.eligibility import cardholder_items, tier_table, valid_between
from recsys.models.base import IncompatibleModelError
from recsys.publication import PublicationError, PublishedVersion, RecordBatch
from recsys.ranking import best_per_row
from recsys.response_model import ItemRows, PushResponseModel

logger = logging.getLogger(__name__)

UNKNOWN_GROUP = -1  # the group (row of `group_allowed`) of a cardholder with no known card tier
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^spend\d+d_(?:share|level):total$"), "matches your card spend"),
    (re.compile(r"^spend\d+d_(?:share|level):(?P<x>.+)$"), "matches your {x} spend"),
    (re.compile(r"^topic:(?P<x>.+)$"), "you read about {x}"),
    (re.compile(r"^menu\d+d(?:_level)?:(?P<x>.+)$"), "you recently used {x}"),
    (re.compile(r"^card_tier=(?P<x>(?!unknown$).+)$"), "popular with {x} cardholders"),
    (re.compile(r"^online_share$"), "matches your online shopping"),
    (re.compile(r"^overseas_share$"), "matches your overseas spend"),
)
# Caps candidates are built once per campaign name; names come from requests, so the cache is bounded
# (campaigns running at once number in the tens) and names past it are built per request instead.
CAMPAIGN_CACHE_SIZE = 256
SMALL_BLOCK = 4  # up to this many cardholders, one at a time is faster than a matrix block
# A block's score matrix holds about this many scores (256 KB of float32), so selection reads it back
# from cache; fewer rows than MIN_BLOCK would spend more on per-block array calls than on the scores.
# 1k batches, 200 items: 64 rows a block 5.8 ms, 320 rows 4.8 ms; 2,000 items: 64 rows 14.4 ms, 524 16.0.
BLOCK_SCORES = 65_536
MIN_BLOCK = 64
SIMILAR_REASON = "opened by cardholders with similar activity"
PROFILE_REASON = "popular with cardholders like you"


def _seconds(values: list[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def score_rows(item_factors_t: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """float32 [n, n_items]: each of n cardholders' factors [n, d] times every item's ([d, n_items]).

    One BLAS vector-matrix product per cardholder (a stacked matmul): every row comes from the same
    call on the same shapes, so a cardholder's scores are the same bits alone or in a block of any
    size (one matrix product for the block would not be: its last bits depend on the shapes). Scores
    of some items are taken from the full row for the same reason."""
    rows = np.asarray(factors, dtype=np.float32)
    return np.matmul(rows[:, None, :], item_factors_t)[:, 0, :]


def feature_phrase(name: str) -> str:
    """A short, human reason for a user feature name (from `features.builder` naming)."""
    for pattern, template in _PHRASES:
        match = pattern.match(name)
        if match:
            return template.format(x=match.groupdict().get("x", "").replace("_", " "))
    return PROFILE_REASON


@dataclass(slots=True)
class Representation:
    """How a cardholder is scored: factors (None: popularity only) and what the reasons can use."""

    factors: np.ndarray | None
    group: int
    timezone: str | None
    opt_in: bool
    feature_index: np.ndarray
    feature_values: np.ndarray
    seen: np.ndarray
    fallback: str | None  # None, "features", "segment_popularity" or "popularity"


@dataclass(slots=True)
class Ranked:
    """Ordered eligible candidates (best first) with scores, and requested ids that were skipped."""

    items: np.ndarray
    scores: np.ndarray
    skipped: Sequence[tuple[str, str]] = ()
    item_list: list[int] | None = None  # `items` and `scores` as lists, see `lists`
    score_list: list[float] | None = None
    finite: bool = False  # True: every score is known to be finite (`_rank_rows` tests a block at once)

    def lists(self) -> tuple[list[int], list[float]]:
        """`items` and `scores` as Python lists, converted once: the caps request and the answer read
        them, and a batch's blocks convert all their rows in one call."""
        if self.item_list is None or self.score_list is None:
            self.item_list, self.score_list = self.items.tolist(), self.scores.tolist()
        return self.item_list, self.score_list


@dataclass(slots=True)
class Cardholders:
    """A batch of cardholders as arrays, what ranking, the caps requests, reasons and answers of a batch
    read (row i: the batch's i-th).

    A row without factors (`scored` False) is ranked by popularity and its row of `factors` is unused;
    `fitted`: published factors (no fallback). Each row's features and seen items are at
    `feature_starts[i]:feature_starts[i + 1]` of `feature_index` / `feature_values`, and likewise
    `seen_starts` of `seen`."""

    factors: np.ndarray  # float32 [n, d]
    scored: np.ndarray  # bool [n]
    fitted: np.ndarray  # bool [n]
    group: np.ndarray  # int64 [n]
    opt_in: np.ndarray  # bool [n]
    feature_starts: np.ndarray  # int64 [n + 1]
    feature_index: np.ndarray
    feature_values: np.ndarray  # float32
    seen_starts: np.ndarray  # int64 [n + 1]
    seen: np.ndarray
    timezone: list[str | None]
    fallback: list[str | None]  # as `Representation.fallback`

    def __len__(self) -> int:
        return len(self.group)

    @classmethod
    def published(cls, records: RecordBatch, timezones: Sequence[str]) -> Cardholders:
        """Cardholders the publication holds, straight from their decoded records (`timezones`: the
        manifest's, which the records index)."""
        every = np.ones(len(records), dtype=bool)
        names = [name or None for name in timezones]
        zones = [names[zone] if zone < len(names) else None for zone in records.timezone.tolist()]
        return cls(records.factors, every, every, records.group, records.opt_in, records.feature_starts,
                   records.feature_index, records.feature_values, records.seen_starts, records.seen, zones,
                   [None] * len(records))

    @classmethod
    def of(cls, users: Sequence[Representation], dim: int) -> Cardholders:
        """The batch arrays of cardholders represented one by one (published, from features or not
        known at all, in any mix)."""
        n = len(users)
        scored = np.fromiter((user.factors is not None for user in users), dtype=bool, count=n)
        factors = np.zeros((n, dim), dtype=np.float32)
        if scored.any():
            rows = np.flatnonzero(scored)
            factors[rows] = np.array([users[i].factors for i in rows.tolist()])
        fitted = np.fromiter((user.fallback is None for user in users), dtype=bool, count=n)
        group = np.fromiter((user.group for user in users), dtype=np.int64, count=n)
        opt_in = np.fromiter((user.opt_in for user in users), dtype=bool, count=n)
        feature_starts, seen_starts = _starts([len(u.feature_index) for u in users]), _starts(
            [len(u.seen) for u in users])
        return cls(factors, scored, fitted, group, opt_in, feature_starts,
                   _joined([u.feature_index for u in users], np.int64),
                   _joined([u.feature_values for u in users], np.float32), seen_starts,
                   _joined([u.seen for u in users], np.int64), [u.timezone for u in users],
                   [u.fallback for u in users])

    def user(self, row: int) -> Representation:
        """Row `row` as one cardholder's representation (its arrays are views of the batch's)."""
        features = slice(self.feature_starts[row], self.feature_starts[row + 1])
        return Representation(self.factors[row] if self.scored[row] else None, int(self.group[row]),
                              self.timezone[row], bool(self.opt_in[row]), self.feature_index[features],
                              self.feature_values[features],
                              self.seen[self.seen_starts[row]:self.seen_starts[row + 1]], self.fallback[row])

    def rows(self, start: int, stop: int) -> Cardholders:
        """Rows `start:stop` (array views, no copy)."""
        features = self.feature_starts[start:stop + 1]
        seen = self.seen_starts[start:stop + 1]
        return Cardholders(self.factors[start:stop], self.scored[start:stop], self.fitted[start:stop],
                           self.group[start:stop], self.opt_in[start:stop], features - features[0],
                           self.feature_index[features[0]:features[-1]],
                           self.feature_values[features[0]:features[-1]], seen - seen[0],
                           self.seen[seen[0]:seen[-1]], self.timezone[start:stop], self.fallback[start:stop])

    def also_seen(self, extra: Sequence[Sequence[int]]) -> Cardholders:
        """The same rows with the item indices `extra[i]` among row i's seen items (as one more
        eligibility exclusion: the content the caps state says was pushed since the publication)."""
        lengths = np.fromiter((len(items) for items in extra), dtype=np.int64, count=len(extra))
        if not lengths.any():
            return self
        rows = np.concatenate([np.repeat(np.arange(len(self)), np.diff(self.seen_starts)),
                               np.repeat(np.arange(len(self)), lengths)])
        items = np.concatenate([self.seen.astype(np.int64, copy=False),
                                np.fromiter((i for items in extra for i in items), dtype=np.int64,
                                            count=int(lengths.sum()))])
        order = np.argsort(rows, kind="stable")
        seen_starts = _starts(np.diff(self.seen_starts) + lengths)
        return replace(self, seen_starts=seen_starts, seen=items[order])

    def take(self, rows: np.ndarray) -> Cardholders:
        """The given rows, in that order."""
        feature_starts, features = _segments(self.feature_starts, rows)
        seen_starts, seen = _segments(self.seen_starts, rows)
        picked = rows.tolist()
        return Cardholders(self.factors[rows], self.scored[rows], self.fitted[rows], self.group[rows],
                           self.opt_in[rows], feature_starts, self.feature_index[features],
                           self.feature_values[features], seen_starts, self.seen[seen],
                           [self.timezone[i] for i in picked], [self.fallback[i] for i in picked])


def _starts(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    return starts


def _joined(parts: Sequence[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _segments(starts: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The row starts of `rows` taken out of flat arrays with row starts `starts`, and the positions
    of their entries in those arrays."""
    lengths = starts[rows + 1] - starts[rows]
    taken = _starts(lengths)
    return taken, np.repeat(starts[rows] - taken[:-1], lengths) + np.arange(taken[-1])


UNKNOWN_CONTENT = ("content id unknown to the published catalogue: check the id (a new content needs a "
                   "model trained and published with it)")


class LiveModel:
    """A published version held in memory, ready to rank; immutable once built."""

    def __init__(self, published: PublishedVersion, builder: Any | None = None):
        self.version = published.version
        self.manifest = published.manifest
        items = published.manifest["items"]
        self.item_ids: list[str] = list(items["ids"])
        self.item_position = {item_id: i for i, item_id in enumerate(self.item_ids)}
        self.titles: list[str] = list(items["titles"])
        self.kinds: list[str] = list(items["kinds"])
        self.tags: list[tuple[str, ...]] = [tuple(t) for t in items["tags"]]
        self.transactional = np.asarray(items["transactional"], dtype=bool)
        self.marketing = ~self.transactional
        self.valid_from = _seconds(items["valid_from"])
        self.valid_to = _seconds(items["valid_to"])
        self.tiers: list[str] = list(published.manifest["tiers"])
        self.tier_position = {tier: g for g, tier in enumerate(self.tiers)}
        self.timezones: list[str] = list(published.manifest["timezones"])
        # Row g: items a cardholder of tier g may get; the last row (UNKNOWN_GROUP) is the unknown tier.
        item_tiers = [frozenset(tiers) for tiers in items["card_tiers"]]
        self.group_allowed = tier_table(item_tiers, [*self.tiers, None])
        arrays = published.arrays
        self.item_factors = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        self.item_factors_t = self.item_factors.T  # every score goes through this one array: same bits
        self.pop_overall = arrays["pop_overall"]
        self.pop_segments = arrays["pop_segments"]
        self.feature_names: list[str] = list(published.manifest["feature_names"])
        self.feature_map = arrays.get("feature_map")
        self.feature_offset = arrays.get("feature_offset")
        self.l1_features = published.manifest.get("feature_normalisation") == "l1"
        # Reasons compare items: what lifts this item above the average item for this cardholder.
        self.centred_items = self.item_factors - self.item_factors.mean(axis=0, keepdims=True)
        self.centred_items_t = self.centred_items.T
        self.contributions = None
        if self.feature_map is not None:
            contributions = self.feature_map @ self.centred_items.T
            self.contributions = np.ascontiguousarray(contributions, dtype=np.float32)
            self.contributions_by_item = np.ascontiguousarray(self.contributions.T)
        self.phrases = [feature_phrase(name) for name in self.feature_names]
        # `reasons_many` picks from these by index: each feature's phrase, then the two reasons that
        # name no feature
        self.reason_texts = np.array([*self.phrases, SIMILAR_REASON, PROFILE_REASON], dtype=object)
        self.builder = builder
        self._cap_candidates: dict[str | None, list[Candidate]] = {}
        self._valid_cache: tuple[float, np.ndarray] | None = None
        self.item_dtype = published.item_dtype
        self.feature_dtype = published.feature_dtype
        self.response: PushResponseModel | None = None  # None: published without response models
        if published.response_files:
            try:
                self.response = PushResponseModel.from_files(published.response_files)
            except (IncompatibleModelError, OSError, ValueError) as error:
                raise PublicationError(f"version {self.version}: its response model cannot be read "
                                       f"({error}): publish again") from error
        # the response model's inputs of every published item, looked up by name once per version
        self.response_items: ItemRows | None = None if self.response is None else self.response.item_rows(
            np.asarray(self.item_ids, dtype=object), np.asarray(self.kinds, dtype=object))

    def cap_candidates(self, campaign: str | None) -> list[Candidate]:
        """Caps candidates for every item (built once per campaign name, reused by every request)."""
        cached = self._cap_candidates.get(campaign)
        if cached is None:
            cached = [
                Candidate(item_id, kind, tags, bool(transactional), campaign)
                for item_id, kind, tags, transactional
                in zip(self.item_ids, self.kinds, self.tags, self.transactional.tolist(), strict=True)
            ]
            if len(self._cap_candidates) < CAMPAIGN_CACHE_SIZE:
                self._cap_candidates[campaign] = cached
        return cached

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def block_rows(self) -> int:
        """Cardholders per matrix block of `rank_block`."""
        return max(MIN_BLOCK, BLOCK_SCORES // max(self.n_items, 1))

    # ------------------------------------------------------------------ representation
    def known(self, records: RecordBatch) -> Cardholders:
        """Cardholders of decoded published records."""
        return Cardholders.published(records, self.timezones)

    def cardholders(self, users: Sequence[Representation]) -> Cardholders:
        return Cardholders.of(users, self.item_factors.shape[1])

    def unknown(self, features: dict[str, float] | None) -> Representation:
        """A cardholder the publication lacks: from supplied features, else (segment) popularity."""
        group = UNKNOWN_GROUP
        index = np.zeros(0, np.int64)
        values = np.zeros(0, np.float32)
        if features:
            for name, weight in features.items():
                if name.startswith("card_tier=") and weight > 0:
                    group = self.tier_position.get(name.split("=", 1)[1], UNKNOWN_GROUP)
            if self.builder is not None:
                row = self.builder.encode_user_dicts([features])
                index, values = row.indices.astype(np.int64), row.data.astype(np.float32)
        if len(index) and self.feature_map is not None:
            factors = self.normalised(values) @ self.feature_map[index] + self.feature_offset
            return Representation(factors.astype(np.float32), group, None, True, index, values,
                                  np.zeros(0, np.int64), "features")
        source = "segment_popularity" if group != UNKNOWN_GROUP else "popularity"
        return Representation(None, group, None, True, index, values, np.zeros(0, np.int64), source)

    def normalised(self, values: np.ndarray) -> np.ndarray:
        if not self.l1_features:
            return values
        total = float(np.abs(values).sum())
        return values / total if total > 0 else values

    # ------------------------------------------------------------------ candidates and eligibility
    def valid_at(self, now: datetime) -> np.ndarray:
        """Items inside their validity window at `now`."""
        moment = now.timestamp()
        cached = self._valid_cache
        if cached is not None and cached[0] == moment:
            return cached[1]
        valid = valid_between(self.valid_from, self.valid_to, moment)
        valid.flags.writeable = False
        self._valid_cache = (moment, valid)
        return valid

    def allowed(self, cardholders: Cardholders, valid: np.ndarray) -> np.ndarray:
        """bool [len(cardholders), n_items]: the marketing items each may get, given the items `valid` now."""
        return cardholder_items(valid & self.marketing, self.group_allowed[cardholders.group],
                                cardholders.opt_in, cardholders.seen_starts, cardholders.seen)

    def candidates(self, user: Representation, now: datetime, requested: list[str] | None,
                   valid: np.ndarray | None = None) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """Eligible item indices at `now` (unordered) and the requested ids skipped, with why.

        Without `requested`: every marketing item `allowed` gives. Requested ids may also name
        transactional items (sent even to opted-out cardholders); each skipped one says which rule
        of `recsys.eligibility` kept it out."""
        valid = self.valid_at(now) if valid is None else valid
        skipped: list[tuple[str, str]] = []
        if requested is None:
            return np.flatnonzero(self.allowed(self.cardholders([user]), valid)[0]), skipped
        allowed = valid & self.group_allowed[user.group]
        if not user.opt_in:
            allowed = allowed & self.transactional
        chosen = []
        seen = set(user.seen.tolist()) if len(user.seen) else ()
        for content_id in requested:
            position = self.item_position.get(content_id)
            if position is None:
                skipped.append((content_id, UNKNOWN_CONTENT))
            elif not valid[position]:
                skipped.append((content_id, "outside its validity window at this time"))
            elif not self.group_allowed[user.group, position]:
                skipped.append((content_id, "not offered to this cardholder's card tier"))
            elif not allowed[position]:
                skipped.append((content_id, "cardholder opted out of marketing pushes"))
            elif position in seen and not self.transactional[position]:
                # A transactional notice (bill due, statement ready) is due again each cycle.
                skipped.append((content_id, "already read or pushed to this cardholder"))
            else:
                chosen.append(position)
        return np.asarray(chosen, dtype=np.int64), skipped

    # ------------------------------------------------------------------ scoring
    def scores(self, user: Representation, items: np.ndarray) -> np.ndarray:
        if user.factors is not None:
            return score_rows(self.item_factors_t, user.factors[None, :])[0, items]
        return self.popularity(user.group)[items].astype(np.float32)

    def rank(self, user: Representation, now: datetime, requested: list[str] | None,
             valid: np.ndarray | None = None) -> Ranked:
        items, skipped = self.candidates(user, now, requested, valid)
        scores = self.scores(user, items)
        order = np.argsort(-scores, kind="stable")
        return Ranked(items[order], scores[order], skipped)

    def rank_block(self, users: Cardholders | Sequence[Representation], now: datetime, width: int,
                   valid: np.ndarray | None = None) -> list[Ranked]:
        """The best `width` eligible items of every published item, for many cardholders at once.

        Same result as `rank(user, now, None)[:width]` (ties: lower item index first), with one
        matrix product for the block instead of one per cardholder.
        """
        valid = self.valid_at(now) if valid is None else valid
        batch = users if isinstance(users, Cardholders) else self.cardholders(users)
        if len(batch) <= SMALL_BLOCK:
            return [self._rank_one(batch, row, valid, width) for row in range(len(batch))]
        rows = self.block_rows
        if len(batch) > rows:
            parts = (batch.rows(start, min(start + rows, len(batch))) for start in range(0, len(batch), rows))
            return [ranked for part in parts for ranked in self.rank_block(part, now, width, valid)]
        return self._rank_rows(batch, valid, width)

    def _rank_rows(self, batch: Cardholders, valid: np.ndarray, width: int) -> list[Ranked]:
        """`rank_block` for one block of more than SMALL_BLOCK cardholders."""
        m = self.n_items
        if batch.scored.all():
            scores = score_rows(self.item_factors_t, batch.factors)
        else:
            scores = np.empty((len(batch), m), dtype=np.float32)
            with_factors = np.flatnonzero(batch.scored)
            if len(with_factors):
                scores[with_factors] = score_rows(self.item_factors_t, batch.factors[with_factors])
            for i in np.flatnonzero(~batch.scored).tolist():
                scores[i] = self.popularity(int(batch.group[i]))
        scores = np.where(self.allowed(batch, valid), scores, np.float32(-np.inf))  # half a masked store
        # ties in item order, as `rank` keeps them; ineligible items (-inf) last, so each row's
        # eligible ones are a prefix
        order, values = best_per_row(scores, min(width, m))
        order = order.astype(np.int64)
        full = order.shape[1]
        counts = np.isfinite(values).sum(axis=1)
        rows = zip(order, values, order.tolist(), values.tolist(), strict=True)
        if counts.min() == full:  # every row full (the usual case): whole rows, no slicing, all finite
            return [Ranked(items, scores, (), item_list, score_list, True)
                    for items, scores, item_list, score_list in rows]
        # a block's short rows (opted out, or little left eligible) are a few: only they are sliced
        return [Ranked(items, scores, (), item_list, score_list, True) if count == full
                else Ranked(items[:count], scores[:count], (), item_list[:count], score_list[:count])
                for (items, scores, item_list, score_list), count in zip(rows, counts.tolist(), strict=True)]

    def popularity(self, group: int) -> np.ndarray:
        """The scores of a cardholder without factors: its tier's popularity, else the overall one."""
        return self.pop_segments[group] if group != UNKNOWN_GROUP else self.pop_overall

    def _rank_one(self, batch: Cardholders, row: int, valid: np.ndarray, width: int) -> Ranked:
        """`rank_block` for one cardholder: the scheduler's hot path, with as few array passes as possible."""
        pool = np.flatnonzero(self.allowed(batch.rows(row, row + 1), valid)[0])
        if batch.scored[row]:
            row_scores = score_rows(self.item_factors_t, batch.factors[row:row + 1])[0, pool]
        else:
            row_scores = self.popularity(int(batch.group[row]))[pool]
        if len(pool) > 4 * width:
            cut = np.partition(row_scores, len(row_scores) - width)[len(row_scores) - width]
            keep = row_scores >= cut
            pool, row_scores = pool[keep], row_scores[keep]
        order = np.argsort(-row_scores, kind="stable")[:width]
        return Ranked(pool[order], row_scores[order].astype(np.float32, copy=False))

    def reasons(self, user: Representation, items: Sequence[int] | np.ndarray) -> list[str]:
        """One short reason per item: the user feature (or collaborative part) adding most to its score."""
        return self.reasons_many([user], [items])[0]

    def reasons_many(self, users: Cardholders | Sequence[Representation],
                     items: Sequence[Sequence[int] | np.ndarray]) -> list[list[str]]:
        """`reasons` for many cardholders at once (`items[i]` for cardholder i), in a few array passes.

        Each cardholder's figures are computed alike whoever shares the call (products elementwise,
        sums in a fixed order), so a reason does not depend on how requests were batched."""
        batch = users if isinstance(users, Cardholders) else self.cardholders(users)
        counts = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
        if not counts.any():
            return [[] for _ in items]
        # the rows a feature may explain, found over the batch; the others (few) take one shared reason
        explainable = batch.scored & (np.diff(batch.feature_starts) > 0)
        if self.contributions is None:
            explainable[:] = False
        if explainable.all():
            # the usual batch, explained as it is: a row without items (blocked by the caps) costs less
            # than taking the others out; its reasons are dropped
            out = self._feature_reasons(batch, items, counts)
            for row in np.flatnonzero(counts < counts.max()).tolist():
                out[row] = out[row][:counts[row]]
            return out
        out = [[] for _ in items]
        answered = counts > 0
        for row in np.flatnonzero(answered & ~explainable).tolist():
            if not batch.scored[row]:
                group = int(batch.group[row])
                tier = self.tiers[group] if group != UNKNOWN_GROUP else None
                reason = f"popular with {tier} cardholders" if tier else "popular with cardholders"
            else:
                reason = SIMILAR_REASON
            out[row] = [reason] * int(counts[row])
        rows = np.flatnonzero(answered & explainable)
        if len(rows):
            picked = [items[row] for row in rows.tolist()]
            texts = self._feature_reasons(batch.take(rows), picked, counts[rows])
            for row, text, count in zip(rows.tolist(), texts, counts[rows].tolist(), strict=True):
                out[row] = text[:count]
        return out

    def _feature_reasons(self, explained: Cardholders, items: Sequence[Sequence[int] | np.ndarray],
                         counts: np.ndarray) -> list[list[str]]:
        """`reasons_many` of cardholders who all have factors and features: per row, a reason for each of
        its `counts[i]` items, then for item 0 up to the longest row's count (cut off by the caller)."""
        # every (cardholder, feature) pair flat, one segment per cardholder: segment sums and maxima
        # run in a fixed order within each segment, whatever else is in the call
        lengths = np.diff(explained.feature_starts)
        starts = explained.feature_starts[:-1]
        feature_index = explained.feature_index.astype(np.int64)
        values = explained.feature_values.astype(np.float32)  # a copy: scaled in place below
        if self.l1_features:
            totals = np.add.reduceat(np.abs(values), starts)
            values /= np.repeat(np.where(totals > 0, totals, np.float32(1)), lengths)
        n, n_items = len(explained), int(counts.max())
        item_index = np.zeros((n, n_items), dtype=np.int64)  # a row's missing items read item 0
        item_index[np.arange(n_items)[None, :] < counts[:, None]] = np.fromiter(
            chain.from_iterable(items), dtype=np.int64, count=int(counts.sum()))
        best_feature = np.empty((n, n_items), dtype=np.int64)
        best_value = np.empty((n, n_items), dtype=np.float32)
        # flat positions in the item-major table: one `take` per column instead of 2-D fancy indexing
        contributions = self.contributions_by_item.ravel()
        row_starts = item_index * self.contributions_by_item.shape[1]
        for column in range(n_items):
            parts = contributions.take(np.repeat(row_starts[:, column], lengths) + feature_index) * values
            # each row's first pair reaching its maximum: the first reaching position at or after its start
            reaching = np.flatnonzero(parts == np.repeat(np.maximum.reduceat(parts, starts), lengths))
            first = reaching[np.searchsorted(reaching, starts)]
            best_feature[:, column] = feature_index[first]
            best_value[:, column] = parts[first]
        # the collaborative part: the factors the features do not explain (a sparse row times the map:
        # each row's products summed in its own feature order)
        features = sp.csr_matrix((values, feature_index, explained.feature_starts),
                                 shape=(n, self.feature_map.shape[0]))
        from_features = features @ self.feature_map + self.feature_offset
        fitted = explained.fitted
        residual = np.take_along_axis(score_rows(self.centred_items_t, explained.factors - from_features),
                                      item_index, axis=1)
        residual[~fitted] = -np.inf
        # each answer's phrase picked in the array (a feature's, else the collaborative or profile
        # reason), then one conversion to lists of the shared phrase strings
        otherwise = np.where(fitted, len(self.phrases), len(self.phrases) + 1)[:, None]
        picked = np.where((best_value > 0) & (best_value >= residual), best_feature, otherwise)
        return self.reason_texts.take(picked).tolist()
