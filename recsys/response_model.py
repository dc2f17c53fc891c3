"""The fitted push response model: P(open) and P(mute or unfollow) of a push, a cardholder's better hours.

Two logistic models over the same terms, one coefficient vector each:

    logit P = intercept + user[u] + item[i] + kind[k(i)] + sum_f segment_f[s_f(u)]
              + hour[h] + sum_f segment_f_hour[s_f(u), bin(h)] + user_hour[u] . cycle(h)
              + activity * lift[u, bin(h)] + recent_slope * recent + excess_slope * max(0, recent - free)
              + score_weight * standardised ranking score (u, i)

`h` is the local send hour (the cardholder's time zone), `bin(h)` its three-hour part of the day,
`recent` the marketing pushes the cardholder received in the trailing 30 days, this one included, and
`cycle(h) = (cos, sin)(2 pi h / 24)`: a cardholder's own hour preference is one daily wave (a peak hour
and a strength), two numbers every push informs, where a value per day part would need opens in each.
Segments are card tier, age band and city tier: a cardholder with few pushes answers like the segment,
and the per-cardholder terms (`user`, `user_hour`) grow only as their own pushes say otherwise (L2
shrinkage).
`lift[u, b]` is the cardholder's own activity (spend, menu clicks, reads) in day part `b` relative to
everyone's, a prior on when they look at their phone. A Platt map (slope, intercept on the logit), fitted
on pushes after those the coefficients saw, calibrates each model.

`recent` must count the same pushes at serving as in the fit. The caps state holds only the pushes the
API reserved, not the push log the model learned from, so the model keeps each cardholder's marketing
push times of the `WINDOW_DAYS` before its as-of time (`history`, `history_until`); `recent_at` adds
them to the pushes the caps state knows after that time. Without them a cardholder pushed twelve times
last month looks rested on the first of this month, and the mute model under-predicts exactly where
mutes are likeliest.

Saved form: a directory with `model.json` (kind, format version, term layout, vocabularies, calibration)
and `arrays.npz` (coefficients and per-cardholder arrays, read with `allow_pickle=False`), written
atomically, so it can be published beside the ranking bundle. `training.response` fits it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.atomic import atomic_directory
from recsys.models.base import (
    ARRAYS,
    MANIFEST,
    IncompatibleModelError,
    ModelError,
    library_versions,
)
from recsys.times import utc_index, zone

logger = logging.getLogger(__name__)

KIND = "push-response"
FORMAT_VERSION = 1
HOURS = 24
BIN_HOURS = 3
HOUR_BINS = HOURS // BIN_HOURS
CYCLE = 2  # cos and sin of the hour's angle on the daily clock
SEGMENT_FIELDS = ("card_tier", "age_band", "city_tier")
WINDOW_DAYS = 30
FATIGUE_FREE = 4
TARGETS = ("open", "mute")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def hour_bin(hours: np.ndarray) -> np.ndarray:
    return np.asarray(hours, dtype=np.int64) // BIN_HOURS


def daily_cycle(hours: np.ndarray) -> np.ndarray:
    """float [n, CYCLE]: cos and sin of each hour's angle on the 24-hour clock."""
    angle = 2.0 * np.pi * np.asarray(hours, dtype=np.float64) / HOURS
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


_HOUR_CYCLE = daily_cycle(np.arange(HOURS))


def recent_counts(user_codes: np.ndarray, sent: np.ndarray, window_seconds: int) -> np.ndarray:
    """Pushes to the same cardholder in `(t - window, t]`, this one included, for each push."""
    order = np.lexsort((sent, user_codes))
    span = int(sent.max() - sent.min() + 2 * window_seconds + 1) if len(sent) else 1
    key = user_codes[order].astype(np.int64) * span + (sent[order] - sent.min() + window_seconds)
    first = np.searchsorted(key, key - window_seconds, side="right")
    counts = np.empty(len(sent), dtype=np.int64)
    counts[order] = np.arange(len(sent)) - first + 1
    return counts


def local_hours(sent: pd.Series | np.ndarray, timezones: np.ndarray, default_timezone: str) -> np.ndarray:
    """Local hour (0-23) of UTC send times in each cardholder's zone ("" or None: `default_timezone`)."""
    if isinstance(sent, pd.Series) and pd.api.types.is_datetime64_any_dtype(sent.dtype):
        # a datetime column converts in place: through an object array it costs a Python object per row
        stamps = pd.DatetimeIndex(sent)
        stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
    else:
        stamps = utc_index(sent)
    if stamps.hasnans:
        raise ResponseModelError("send times missing: every push needs its time sent")
    # zone names hashed, not sorted: a serving batch converts a few thousand sends in a dozen zones
    codes, names = pd.factorize(np.asarray(timezones, dtype=object))
    named = [str(name) or default_timezone for name in names] + [default_timezone]  # code -1: missing
    zone_names, group = np.unique(np.asarray(named, dtype=object), return_inverse=True)
    group = group[codes]
    hours = np.empty(len(stamps), dtype=np.int64)
    for g in np.unique(group):
        mask = group == g
        # the cached ZoneInfo, not the name: given a name, pandas reads the zone's file again on every call
        hours[mask] = stamps[mask].tz_convert(zone(str(zone_names[g]))).hour
    return hours


# the (level, cos, sin) precision's upper triangle, row by row: (0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)
WAVE_UPPER = np.triu_indices(3)


def wave_upper(precision: np.ndarray, n_users: int) -> np.ndarray:
    """float32 [n_users, 6]: per-cardholder wave precisions given as their upper triangles or, as models
    saved before only the triangles were kept hold them, as full symmetric [n_users, 3, 3] matrices."""
    precision = np.asarray(precision)
    if precision.shape == (n_users, 3, 3):
        return np.ascontiguousarray(precision[:, WAVE_UPPER[0], WAVE_UPPER[1]], dtype=np.float32)
    if precision.shape == (n_users, len(WAVE_UPPER[0])):
        return precision.astype(np.float32, copy=False)
    raise IncompatibleModelError(f"wave precision of shape {precision.shape} for {n_users} cardholders: "
                                 "refit the model")


def saved_wave_precision(arrays: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The wave precision of a saved model's arrays: its upper triangles (`wave_precision_upper`), or the
    full matrices (`wave_precision`) of a model saved before only the triangles were kept, or None
    (saved before either was kept). The triangles have a name of their own so that code reading only
    the full form loads a newer model without the live update instead of refusing it."""
    for name in ("wave_precision_upper", "wave_precision"):
        if name in arrays:
            return arrays[name]
    return None


def wave_matrices(upper: np.ndarray) -> np.ndarray:
    """float64 [n, 3, 3]: the symmetric matrices of upper triangles `upper` ([n, 6], `WAVE_UPPER` order)."""
    out = np.empty((len(upper), 3, 3))
    out[:, WAVE_UPPER[0], WAVE_UPPER[1]] = upper
    out[:, WAVE_UPPER[1], WAVE_UPPER[0]] = upper
    return out


class ResponseModelError(ModelError):
    """Inputs the response model cannot answer for (wrong shapes, hours outside 0-23)."""


@dataclass(frozen=True)
class Layout:
    """Where each term's coefficients sit in the flat coefficient vector."""

    n_users: int
    n_items: int
    n_kinds: int
    n_labels: tuple[int, ...]  # per segment field, "unknown" included

    def blocks(self) -> dict[str, int]:
        sizes = {"intercept": 1, "user": self.n_users, "item": self.n_items, "kind": self.n_kinds}
        for name, n in zip(SEGMENT_FIELDS, self.n_labels, strict=True):
            sizes[f"segment:{name}"] = n
        sizes["hour"] = HOURS
        for name, n in zip(SEGMENT_FIELDS, self.n_labels, strict=True):
            sizes[f"segment_hour:{name}"] = n * HOUR_BINS
        sizes.update({"user_hour": self.n_users * CYCLE, "activity": 1, "recent": 1, "excess": 1,
                      "score": 1})
        return sizes

    def offsets(self) -> dict[str, tuple[int, int]]:
        out, start = {}, 0
        for name, size in self.blocks().items():
            out[name] = (start, size)
            start += size
        return out

    @property
    def size(self) -> int:
        return sum(self.blocks().values())


@dataclass(frozen=True)
class UserRows:
    """Per-cardholder query inputs: model index (-1 unknown), segment codes, activity lift by day part."""

    index: np.ndarray  # int64 [n]
    segments: np.ndarray  # int64 [n, len(SEGMENT_FIELDS)]
    lift: np.ndarray  # float32 [n, HOUR_BINS]

    def __len__(self) -> int:
        return len(self.index)

    def take(self, rows: np.ndarray) -> UserRows:
        return UserRows(self.index[rows], self.segments[rows], self.lift[rows])


@dataclass(frozen=True)
class ItemRows:
    """Per-content inputs of a query: model index (-1 unknown) and kind code."""

    index: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def take(self, rows: np.ndarray) -> ItemRows:
        return ItemRows(self.index[rows], self.kind[rows])


@dataclass(frozen=True)
class Term:
    """One coefficient per push: row r adds `values[r] * coef[columns[r]]` to its logit where `mask[r]`."""

    columns: np.ndarray | int  # int64 [n], flat coefficient positions; an int: the same for every row
    values: np.ndarray | None  # float64 [n]; None: every value is 1.0
    mask: np.ndarray | None  # bool [n]; None: every row has the term


def terms(layout: Layout, users: UserRows, items: ItemRows, hours: np.ndarray, recent: np.ndarray,
          scores: np.ndarray | None) -> list[Term]:
    """The terms of the module docstring for each push, in the order of their columns (`Layout.blocks`;
    fit and predict alike: `design_matrix` lays them out, `linear_predictor` adds them up)."""
    n = len(users)
    if not len(items) == len(hours) == len(recent) == n or (scores is not None and len(scores) != n):
        raise ResponseModelError(
            f"{n} cardholder rows, {len(items)} item rows, {len(hours)} hours, {len(recent)} recent counts"
            f"{'' if scores is None else f', {len(scores)} scores'}: give one of each per push")
    hours = np.asarray(hours, dtype=np.int64)
    if n and (hours.min() < 0 or hours.max() >= HOURS):
        raise ResponseModelError(f"send hour {int(hours[(hours < 0) | (hours >= HOURS)][0])} outside 0-23: "
                                 "give the local hour of the day")
    offsets = layout.offsets()
    bins = hour_bin(hours)
    out: list[Term] = []

    def add(block: str, cols: np.ndarray | int, values: np.ndarray | None = None,
            mask: np.ndarray | None = None) -> None:
        start, _ = offsets[block]
        columns = start + np.asarray(cols, dtype=np.int64) if np.ndim(cols) else start + int(cols)
        out.append(Term(columns, None if values is None else np.asarray(values, dtype=np.float64), mask))

    known = users.index >= 0
    user = np.maximum(users.index, 0)
    add("intercept", 0)
    add("user", user, mask=known)
    add("item", np.maximum(items.index, 0), mask=items.index >= 0)
    add("kind", items.kind)
    for f, name in enumerate(SEGMENT_FIELDS):
        add(f"segment:{name}", users.segments[:, f])
    add("hour", hours)
    for f, name in enumerate(SEGMENT_FIELDS):
        add(f"segment_hour:{name}", users.segments[:, f] * HOUR_BINS + bins)
    wave = _HOUR_CYCLE[hours]  # looked up: computing cos and sin per push cost a third of the terms
    for k in range(CYCLE):
        add("user_hour", user * CYCLE + k, wave[:, k], mask=known)
    add("activity", 0, users.lift[np.arange(n), bins])
    recent = np.asarray(recent, dtype=np.float64)
    add("recent", 0, recent)
    add("excess", 0, np.maximum(0.0, recent - FATIGUE_FREE))
    if scores is not None:
        add("score", 0, np.asarray(scores, dtype=np.float64))
    return out


def design_matrix(layout: Layout, users: UserRows, items: ItemRows, hours: np.ndarray, recent: np.ndarray,
                  scores: np.ndarray | None) -> sp.csr_matrix:
    """csr [n, layout.size]: one row per push, the terms of the module docstring (`terms`)."""
    n = len(users)
    rows_list, cols_list, vals_list = [], [], []
    all_rows = np.arange(n)
    for term in terms(layout, users, items, hours, recent, scores):
        keep = all_rows if term.mask is None else all_rows[term.mask]
        rows_list.append(keep)
        cols_list.append(np.full(len(keep), term.columns) if np.ndim(term.columns) == 0
                         else term.columns[keep])
        vals_list.append(np.ones(len(keep)) if term.values is None else term.values[keep])
    coordinates = (np.concatenate(rows_list), np.concatenate(cols_list))
    matrix = sp.csr_matrix((np.concatenate(vals_list), coordinates), shape=(n, layout.size))
    matrix.sum_duplicates()
    return matrix


def linear_predictor(pushes: Sequence[Term], n: int, coef: np.ndarray) -> np.ndarray:
    """float [n]: `design_matrix(...) @ coef` bit for bit without building the matrix. scipy's product
    adds each row's value-times-coefficient products to 0.0 in column order, which is the order of the
    terms (each has its own columns), so the terms are added to every row one after another (a value of
    1.0 times a coefficient is the coefficient)."""
    out = np.zeros(n)
    for term in pushes:
        part = coef[term.columns]
        if term.values is not None:
            part = term.values * part
        if term.mask is None:
            out += part
        else:
            out[term.mask] += part[term.mask]
    return out


@dataclass(frozen=True)
class Platt:
    """Calibration map p = sigmoid(slope * logit + intercept); the identity by default."""

    slope: float = 1.0
    intercept: float = 0.0

    def apply(self, logit: np.ndarray) -> np.ndarray:
        return sigmoid(self.slope * np.asarray(logit) + self.intercept)


@dataclass
class PushResponseModel:
    """Fitted open and mute models; indices are positions in `user_ids` / `content_ids`."""

    user_ids: np.ndarray
    content_ids: np.ndarray
    kinds: tuple[str, ...]
    labels: dict[str, tuple[str, ...]]  # segment field -> vocabulary ("unknown" last)
    user_segments: np.ndarray  # int64 [n_users, len(SEGMENT_FIELDS)]
    user_lift: np.ndarray  # float32 [n_users, HOUR_BINS]
    item_kind: np.ndarray  # int64 [n_items]
    coef: dict[str, np.ndarray]  # target -> flat coefficients
    calibration: dict[str, Platt]
    score_center: float = 0.0
    score_scale: float = 1.0
    uses_score: bool = False
    default_timezone: str = "Asia/Shanghai"
    send_hours: tuple[int, ...] = tuple(range(HOURS))  # local hours the fitted pushes were sent at
    info: dict[str, Any] = field(default_factory=dict)
    # int64 [n_users, m]: epoch seconds of each cardholder's marketing pushes in the WINDOW_DAYS up to
    # `history_until` (0 pads); pushes the caps state knows after `history_until` are added at serving
    history: np.ndarray | None = None
    history_until: int = 0
    # float32 [n_users, 6]: the precision of each cardholder's (level, cos, sin) open terms at the fit,
    # the penalties plus the curvature of their fitted pushes, a symmetric 3 x 3 kept as its upper
    # triangle (`WAVE_UPPER`; `wave_matrices` rebuilds it; a full [n_users, 3, 3] given is kept so);
    # the prior `live_wave` updates (None in models fitted before it was kept: no live update)
    wave_precision: np.ndarray | None = None

    def __post_init__(self) -> None:
        layout = self.layout
        for target in TARGETS:
            if target not in self.coef or len(self.coef[target]) != layout.size:
                raise IncompatibleModelError(
                    f"{target} coefficients missing or of the wrong length for this layout: refit the model")
        if self.history is None:
            self.history = np.zeros((len(self.user_ids), 0), dtype=np.int64)
        if self.wave_precision is not None:
            self.wave_precision = wave_upper(self.wave_precision, len(self.user_ids))
        if len(self.history) != len(self.user_ids):
            raise IncompatibleModelError(f"history has {len(self.history)} rows for {len(self.user_ids)} "
                                         "cardholders: refit the model")
        self._user_lookup = pd.Index(np.asarray(self.user_ids).astype(str))
        self._item_lookup = pd.Index(np.asarray(self.content_ids).astype(str))

    @property
    def layout(self) -> Layout:
        return Layout(len(self.user_ids), len(self.content_ids), len(self.kinds),
                      tuple(len(self.labels[name]) for name in SEGMENT_FIELDS))

    # ------------------------------------------------------------------ query rows
    def user_rows(self, user_ids: Sequence[str] | np.ndarray,
                  segments: Mapping[str, np.ndarray] | None = None) -> UserRows:
        """Inputs for `user_ids`; cardholders unknown at fit time take `segments` labels (else "unknown")."""
        ids = np.asarray(user_ids, dtype=object).astype(str)
        index = self._user_lookup.get_indexer(ids).astype(np.int64)
        known = index >= 0
        codes = np.empty((len(ids), len(SEGMENT_FIELDS)), dtype=np.int64)
        for f, name in enumerate(SEGMENT_FIELDS):
            vocabulary = pd.Index(self.labels[name])
            unknown_code = len(vocabulary) - 1
            given = None
            if segments is not None and name in segments:
                given = np.asarray(segments[name]).astype(str)
                if len(given) != len(ids):
                    raise ResponseModelError(
                        f"segments[{name!r}] has {len(given)} labels for {len(ids)} cardholders: one each")
            fallback = (np.full(len(ids), unknown_code) if given is None
                        else np.where((c := vocabulary.get_indexer(given)) >= 0, c, unknown_code))
            codes[:, f] = np.where(known, self.user_segments[np.maximum(index, 0), f], fallback)
        lift = np.where(known[:, None], self.user_lift[np.maximum(index, 0)], 0.0).astype(np.float32)
        return UserRows(index, codes, lift)

    def item_rows(self, content_ids: Sequence[str] | np.ndarray, kinds: np.ndarray | None = None) -> ItemRows:
        """Inputs for `content_ids`; contents unknown at fit time take `kinds` (else the average kind)."""
        ids = np.asarray(content_ids, dtype=object).astype(str)
        index = self._item_lookup.get_indexer(ids).astype(np.int64)
        vocabulary = pd.Index(self.kinds)
        given = (np.full(len(ids), -1) if kinds is None
                 else vocabulary.get_indexer(np.asarray(kinds, dtype=object).astype(str)))
        kind = np.where(index >= 0, self.item_kind[np.maximum(index, 0)], given)
        # an unknown kind gets the most common kind's coefficient: the neutral choice for a new content
        kind = np.where(kind >= 0, kind, int(np.bincount(self.item_kind, minlength=len(self.kinds)).argmax()))
        return ItemRows(index, kind.astype(np.int64))

    # ------------------------------------------------------------------ probabilities
    def logit(self, target: str, users: UserRows, items: ItemRows, hours: np.ndarray, recent: np.ndarray,
              scores: np.ndarray | None = None) -> np.ndarray:
        """Uncalibrated logit of `target` ("open" or "mute") per push."""
        if target not in TARGETS:
            raise ResponseModelError(f"unknown target {target!r}: use one of {TARGETS}")
        pushes = self._terms(users, items, hours, recent, scores)
        return linear_predictor(pushes, len(users), self.coef[target])

    def logits(self, users: UserRows, items: ItemRows, hours: np.ndarray, recent: np.ndarray,
               scores: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """`logit` of every target, from the same terms (working them out is most of a logit's cost)."""
        pushes = self._terms(users, items, hours, recent, scores)
        return {target: linear_predictor(pushes, len(users), self.coef[target]) for target in TARGETS}

    def _terms(self, users: UserRows, items: ItemRows, hours: np.ndarray, recent: np.ndarray,
               scores: np.ndarray | None) -> list[Term]:
        return terms(self.layout, users, items, np.asarray(hours), np.asarray(recent),
                     self.standardise(scores))

    def standardise(self, scores: np.ndarray | None) -> np.ndarray | None:
        if scores is None or not self.uses_score:
            return None
        values = np.asarray(scores, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ResponseModelError("ranking scores must be finite: score with the published ranking model")
        return (values - self.score_center) / self.score_scale

    def probability(self, target: str, users: UserRows, items: ItemRows, hours: np.ndarray,
                    recent: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probability of `target` per push (aligned rows)."""
        return self.calibration[target].apply(self.logit(target, users, items, hours, recent, scores))

    def open_probability(self, users: UserRows, items: ItemRows, hours: np.ndarray, recent: np.ndarray,
                         scores: np.ndarray | None = None) -> np.ndarray:
        """P(open) of each push: aligned cardholder rows, item rows, local send hours, recent counts.

        `recent` counts marketing pushes in the trailing 30 days, this one included; `scores` are the
        ranking model's scores for the pairs (ignored when the model was fitted without them).
        """
        return self.probability("open", users, items, hours, recent, scores)

    def mute_probability(self, users: UserRows, items: ItemRows, hours: np.ndarray, recent: np.ndarray,
                         scores: np.ndarray | None = None) -> np.ndarray:
        """P(mute or unfollow right after the push), same inputs as `open_probability`."""
        return self.probability("mute", users, items, hours, recent, scores)

    # ------------------------------------------------------------------ recent pushes
    def history_counts(self, users: UserRows, at: np.ndarray) -> np.ndarray:
        """int [n, ...]: marketing pushes of the fitted push log in `(at - WINDOW_DAYS, min(at,
        history_until)]` for each cardholder row and each time `at` (epoch seconds, [n] or [n, d])."""
        at = np.asarray(at, dtype=np.int64)
        times = self.history[np.maximum(users.index, 0)]
        times = np.where((users.index >= 0)[:, None], times, 0)
        shape = at.shape
        grid = at.reshape(len(users), -1)
        upper = np.minimum(grid, self.history_until)[:, :, None]
        inside = (times[:, None, :] > (grid[:, :, None] - WINDOW_DAYS * 86_400)) & (times[:, None, :] > 0)
        return (inside & (times[:, None, :] <= upper)).sum(axis=2).reshape(shape)

    def recent_logit(self, target: str, recent: np.ndarray) -> np.ndarray:
        """The part of `target`'s uncalibrated logit that depends on the recent push count."""
        offsets = self.layout.offsets()
        coef = self.coef[target]
        r = np.asarray(recent, dtype=np.float64)
        return coef[offsets["recent"][0]] * r + coef[offsets["excess"][0]] * np.maximum(0.0, r - FATIGUE_FREE)

    # ------------------------------------------------------------------ send time
    def hour_effects(self, users: UserRows, target: str = "open",
                     wave: np.ndarray | None = None) -> np.ndarray:
        """float [n, 24]: the hour-dependent part of each cardholder's logit (higher = better hour);
        `wave` (float [n, CYCLE]) is added to each cardholder's own daily wave (`live_wave`)."""
        offsets = self.layout.offsets()
        coef = self.coef[target]

        def block(name: str) -> np.ndarray:
            start, size = offsets[name]
            return coef[start:start + size]

        bins = hour_bin(np.arange(HOURS))
        out = np.repeat(block("hour")[None, :], len(users), axis=0)
        for f, name in enumerate(SEGMENT_FIELDS):
            table = block(f"segment_hour:{name}").reshape(-1, HOUR_BINS)
            out += table[users.segments[:, f]][:, bins]
        user_hour = block("user_hour").reshape(-1, CYCLE)
        personal = np.where((users.index >= 0)[:, None], user_hour[np.maximum(users.index, 0)], 0.0)
        if wave is not None:
            personal = personal + wave
        out += personal @ _HOUR_CYCLE.T + block("activity")[0] * users.lift[:, bins]
        return out

    def best_hours(self, users: UserRows, k: int = 3, allowed: Sequence[int] | None = None,
                   wave: np.ndarray | None = None) -> list[list[int]]:
        """Each cardholder's `k` best local send hours among `allowed`, best first.

        `allowed` defaults to `send_hours`: the daily wave says nothing reliable about hours the push
        log never used. Hours are ranked by the open model's hour terms net of the mute model's, so an
        hour that gets opens but also mutes ranks lower; ties keep the earlier hour first. `wave`: the
        change to each cardholder's daily wave that the sends since the fit say (`live_wave`).
        """
        chosen = self.send_hours if allowed is None else allowed
        hours = np.unique(np.asarray(list(chosen), dtype=np.int64))
        if not len(hours) or hours.min() < 0 or hours.max() >= HOURS:
            raise ResponseModelError(f"allowed hours {list(hours)} must be a non-empty subset of 0-23")
        if k < 1:
            raise ResponseModelError(f"k must be >= 1, got {k}")
        value = (self.hour_effects(users, "open", wave)
                 - self.hour_effects(users, "mute") * self.mute_hour_weight)
        value = value[:, hours]
        order = np.argsort(-np.round(value, 9), axis=1, kind="stable")[:, :k]
        return hours[order].tolist()

    def live_wave(self, users: UserRows, row: np.ndarray, hours: np.ndarray, opened: np.ndarray,
                  logit_at: np.ndarray) -> np.ndarray:
        """float [n, CYCLE]: the change to each cardholder's daily wave that their sends since the fit say.

        The marketing pushes sent after `history_until`, flat over the batch: `row[j]` the position in
        `users` of push j's cardholder, `hours[j]` its local send hour, `opened[j]` whether it was opened
        (`recsys.live_hours.live_sends`); `logit_at[i, h]` the uncalibrated open logit of a push at hour h
        to cardholder i (NaN: not known, the send is left out). The fit's objective with these pushes
        added, one Newton step from the fitted coefficients: the fit's precision of the cardholder's
        level and wave (`wave_precision`) is the prior, the calibrated probabilities of the new pushes the
        evidence, so a few pushes move the wave little; the level moves too, so pushes opened more or
        less often than predicted at every hour alike leave the wave where it was.
        Zero for cardholders without such pushes, unknown to the model, or a model without the precision.
        """
        out = np.zeros((len(users), CYCLE))
        if self.wave_precision is None or not len(row):
            return out
        row = np.asarray(row, dtype=np.int64)
        hours = np.asarray(hours, dtype=np.int64)
        y = np.asarray(opened, dtype=np.float64)
        logit = np.asarray(logit_at, dtype=np.float64)[row, hours]
        keep = np.isfinite(logit) & (users.index[row] >= 0)
        row, hours, y, logit = row[keep], hours[keep], y[keep], logit[keep]
        if not len(row):
            return out
        # only the cardholders with pushes: their precisions rebuilt, the evidence added at their slot
        moved, slot = np.unique(row, return_inverse=True)
        platt = self.calibration["open"]
        p = platt.apply(logit)
        level_wave = np.column_stack([np.ones(len(row)), daily_cycle(hours)])  # level, cos, sin
        gradient = np.zeros((len(moved), 3))
        np.add.at(gradient, slot, (platt.slope * (y - p))[:, None] * level_wave)
        precision = wave_matrices(self.wave_precision[users.index[moved]])
        weight = (platt.slope ** 2 * p * (1.0 - p))[:, None, None]
        curvature = weight * level_wave[:, :, None] * level_wave[:, None, :]
        np.add.at(precision, slot, curvature)
        out[moved] = np.linalg.solve(precision, gradient[:, :, None])[:, 1:, 0]
        return out

    @property
    def mute_hour_weight(self) -> float:
        """Mutes are rare: their hour terms count in proportion to the mute-to-open base rates."""
        return float(self.info.get("mute_rate", 0.0) / max(self.info.get("open_rate", 1.0), 1e-9))

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the model to `directory` (replaced atomically if it exists); returns the path."""
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        manifest = {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "libraries": library_versions(("numpy", "scipy")),
            "params": {},
            "extra": {
                "kinds": list(self.kinds),
                "labels": {name: list(values) for name, values in self.labels.items()},
                "calibration": {t: [self.calibration[t].slope, self.calibration[t].intercept]
                                for t in TARGETS},
                "score_center": self.score_center, "score_scale": self.score_scale,
                "uses_score": self.uses_score, "default_timezone": self.default_timezone,
                "send_hours": list(self.send_hours), "history_until": int(self.history_until),
                "layout": self.layout.blocks(), "info": self.info,
            },
        }
        arrays = {"user_ids": np.asarray(self.user_ids).astype(str), "content_ids":
                  np.asarray(self.content_ids).astype(str), "user_segments": self.user_segments,
                  "user_lift": self.user_lift, "item_kind": self.item_kind,
                  "history": np.asarray(self.history, dtype=np.int64),
                  **({} if self.wave_precision is None else {"wave_precision_upper": self.wave_precision}),
                  **{f"coef_{t}": self.coef[t] for t in TARGETS}}
        with atomic_directory(target) as staging:
            np.savez(staging / ARRAYS, **arrays)
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        logger.info("saved push response model to %s", target)
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> PushResponseModel:
        """Read a model written by `save`; `IncompatibleModelError` for another kind or format version."""
        from recsys.models.base import read_manifest

        manifest = read_manifest(directory)
        if manifest["kind"] != KIND or manifest["format_version"] != FORMAT_VERSION:
            raise IncompatibleModelError(
                f"{directory} holds a {manifest['kind']!r} model in format {manifest['format_version']}, "
                f"this code reads {KIND!r} format {FORMAT_VERSION}: refit the response model with this "
                "version")
        extra = manifest.get("extra", {})
        try:
            with np.load(Path(directory) / ARRAYS, allow_pickle=False) as arrays:
                model = cls(
                    user_ids=arrays["user_ids"].astype(object),
                    content_ids=arrays["content_ids"].astype(object),
                    kinds=tuple(extra["kinds"]),
                    labels={name: tuple(extra["labels"][name]) for name in SEGMENT_FIELDS},
                    user_segments=arrays["user_segments"], user_lift=arrays["user_lift"],
                    item_kind=arrays["item_kind"], coef={t: arrays[f"coef_{t}"] for t in TARGETS},
                    calibration={t: Platt(*extra["calibration"][t]) for t in TARGETS},
                    score_center=float(extra["score_center"]), score_scale=float(extra["score_scale"]),
                    uses_score=bool(extra["uses_score"]), default_timezone=str(extra["default_timezone"]),
                    send_hours=tuple(int(h) for h in extra["send_hours"]),
                    info=dict(extra.get("info", {})),
                    # models saved before the history was kept count the caps state alone
                    history=arrays["history"] if "history" in arrays.files else None,
                    history_until=int(extra.get("history_until", 0)),
                    wave_precision=saved_wave_precision(arrays),
                )
        except KeyError as error:
            raise IncompatibleModelError(
                f"{directory} lacks the saved state {error}: the model is damaged, save it again") from error
        if model.layout.blocks() != extra.get("layout"):
            raise IncompatibleModelError(f"{directory}: saved term layout does not match its arrays: refit")
        return model

    def to_files(self) -> dict[str, bytes]:
        """The saved form as `{file name: bytes}` (for stores that hold blobs, such as a publication)."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="qianmian-response-") as scratch:
            root = self.save(Path(scratch) / "model")
            return {path.name: path.read_bytes() for path in sorted(root.iterdir()) if path.is_file()}

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> PushResponseModel:
        """A model from `to_files` output; `IncompatibleModelError` when files are missing or foreign."""
        import tempfile

        missing = [name for name in (MANIFEST, ARRAYS) if name not in files]
        if missing:
            raise IncompatibleModelError(f"the saved response model lacks {missing}: publish it again")
        with tempfile.TemporaryDirectory(prefix="qianmian-response-") as scratch:
            for name in (MANIFEST, ARRAYS):
                (Path(scratch) / name).write_bytes(files[name])
            return cls.load(scratch)


class WorldResponse:
    """A fitted model behind the simulator's `Response` protocol: users and items are positions in the
    world's `user_ids` / `content_ids`, as `simulation.replay.SimWorld` asks.

    Without `local_hours` a probability is the mean over the model's `send_hours` (the simulator of
    today sends at slot times it does not pass on). `scorer(users, items)` gives ranking scores by
    position; it is required when the model was fitted with scores.
    """

    window_days = WINDOW_DAYS

    def __init__(self, model: PushResponseModel, user_ids: np.ndarray, content_ids: np.ndarray,
                 segments: Mapping[str, np.ndarray] | None = None, kinds: np.ndarray | None = None,
                 scorer: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> None:
        if model.uses_score and scorer is None:
            raise ResponseModelError("the response model was fitted with ranking scores: give a scorer")
        self.model = model
        self.users = model.user_rows(user_ids, segments)
        self.items = model.item_rows(content_ids, kinds)
        self.scorer = scorer

    def logit(self, target: str, users: np.ndarray, items: np.ndarray, recent: np.ndarray,
              local_hours: np.ndarray) -> np.ndarray:
        """Uncalibrated logits of `target` (broadcast positions, recent counts and local hours)."""
        users, items, recent, hours = np.broadcast_arrays(np.asarray(users), np.asarray(items),
                                                          np.asarray(recent), np.asarray(local_hours))
        shape = users.shape
        users, items = users.ravel(), items.ravel()
        scores = None if self.scorer is None else np.asarray(self.scorer(users, items), dtype=np.float64)
        return self.model.logit(target, self.users.take(users), self.items.take(items), hours.ravel(),
                                recent.ravel(), scores).reshape(shape)

    def _probability(self, target: str, users: np.ndarray, items: np.ndarray, recent: np.ndarray,
                     local_hours: np.ndarray | None) -> np.ndarray:
        users, items, recent = np.broadcast_arrays(np.asarray(users), np.asarray(items), np.asarray(recent))
        shape = users.shape
        users, items, recent = users.ravel(), items.ravel(), recent.ravel()
        rows, item_rows = self.users.take(users), self.items.take(items)
        scores = None if self.scorer is None else np.asarray(self.scorer(users, items), dtype=np.float64)
        if local_hours is not None:
            hours = np.broadcast_to(np.asarray(local_hours), shape).ravel()
            return self.model.probability(target, rows, item_rows, hours, recent, scores).reshape(shape)
        total = np.zeros(len(users))
        for hour in self.model.send_hours:
            hours = np.full(len(users), hour)
            total += self.model.probability(target, rows, item_rows, hours, recent, scores)
        return (total / len(self.model.send_hours)).reshape(shape)

    def open_probability(self, users: np.ndarray, items: np.ndarray, recent_pushes: np.ndarray,
                         local_hours: np.ndarray | None = None) -> np.ndarray:
        return self._probability("open", users, items, recent_pushes, local_hours)

    def mute_probability(self, users: np.ndarray, recent_pushes: np.ndarray, items: np.ndarray,
                         local_hours: np.ndarray | None = None) -> np.ndarray:
        return self._probability("mute", users, items, recent_pushes, local_hours)

    def describe(self) -> str:
        info, nan = self.model.info, float("nan")
        return (f"{info.get('pushes', 0):,} pushes to {info.get('fitted_to', '?')}; open rate "
                f"{info.get('open_rate', nan):.3f}, mute rate {info.get('mute_rate', nan):.4f}; "
                f"holdout ECE open {info.get('holdout_open_ece', nan):.4f}")
