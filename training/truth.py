"""Scoring against a synthetic world's hidden truth: the expected open rate of each model's top-1 push.

For every cardholder with at least one eligible item at the as-of time, the truth's open probability
of the item a model would push first; the ceiling is the truth's own best eligible item.
`score_recommendations` scores a recommendation file (the `recsys recommend` output) as the share of
the popularity-to-oracle gap it closes, overall and for cardholders who never read articles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.ids import IdIndex
from recsys.ranking import Eligibility, top_k

if TYPE_CHECKING:
    from features.loader import Dataset
    from worlds.truth import WorldTruth

logger = logging.getLogger(__name__)


class TruthMismatchError(ValueError):
    """The truth file does not describe the data that was trained on."""


def load_truth(path: Path) -> WorldTruth:
    from worlds.truth import WorldTruth

    return WorldTruth.load(path)


def check_truth_covers(truth: WorldTruth, dataset: Dataset) -> None:
    """Refuse, before any fitting, a truth file written for another world."""
    users = truth.user_index(dataset.cardholders["user_id"].astype(str).to_numpy(dtype=object))
    items = truth.content_index(dataset.content["content_id"].astype(str).to_numpy(dtype=object))
    if (users < 0).any() or (items < 0).any():
        raise TruthMismatchError(
            f"the truth file lacks {int((users < 0).sum())} cardholder(s) and {int((items < 0).sum())} "
            f"item(s) of {dataset.root}: pass the truth written with this data directory (--truth)"
        )


def aligned_open_prob(truth: WorldTruth, users: IdIndex, items: IdIndex) -> np.ndarray:
    """float32 [n_users, n_items] truth open probabilities in the model's user and item order."""
    user_pos = truth.user_index(users.ids)
    item_pos = truth.content_index(items.ids)
    if (user_pos < 0).any() or (item_pos < 0).any():
        raise TruthMismatchError(
            f"the truth file lacks {int((user_pos < 0).sum())} cardholder(s) and {int((item_pos < 0).sum())} "
            "item(s) of the data: pass the truth written with this data directory (--truth)"
        )
    return np.ascontiguousarray(np.asarray(truth.open_prob)[user_pos][:, item_pos], dtype=np.float32)


def top1_open_rate(open_prob: np.ndarray, top1: np.ndarray) -> float:
    """Mean truth open probability of each cardholder's top-1 item (cardholders with none skipped)."""
    has = top1 >= 0
    if not has.any():
        return float("nan")
    return float(open_prob[np.flatnonzero(has), top1[has]].mean())


def best_eligible(open_prob: np.ndarray, eligibility: Eligibility) -> np.ndarray:
    """Index of each cardholder's truly best eligible item (-1 when nothing is eligible)."""
    identity = np.eye(open_prob.shape[1], dtype=np.float32)
    indices, _ = top_k(open_prob, identity, 1, eligibility)
    return indices[:, 0]


def expected_open_rates(
    open_prob: np.ndarray, eligibility: Eligibility, top1_by_model: dict[str, np.ndarray]
) -> dict[str, float]:
    """`open_rate_top1.<model>` per model plus `open_rate_top1.truth_best` (the ceiling)."""
    out = {f"open_rate_top1.{name}": top1_open_rate(open_prob, top1) for name, top1 in top1_by_model.items()}
    out["open_rate_top1.truth_best"] = top1_open_rate(open_prob, best_eligible(open_prob, eligibility))
    return out


@dataclass(frozen=True)
class Top1Gap:
    """Mean truth open probability of the top-1 item of the engine, popularity and the oracle."""

    users: int
    engine: float
    popularity: float
    oracle: float

    @property
    def gap_closed(self) -> float:
        """(engine - popularity) / (oracle - popularity); NaN when the oracle does not beat popularity."""
        gap = self.oracle - self.popularity
        return (self.engine - self.popularity) / gap if gap > 0 else float("nan")


@dataclass(frozen=True)
class GapScore:
    """A recommendation file scored against a world's truth (see `score_recommendations`)."""

    overall: Top1Gap
    non_readers: Top1Gap
    covered: float  # share of scored cardholders whose top-1 is known and eligible
    violations: int  # scored cardholders whose top-1 is not eligible (counted as nothing sent)

    def to_dict(self) -> dict[str, float]:
        out: dict[str, float] = {"gap_closed_top1": self.overall.gap_closed,
                                 "gap_closed_top1_non_readers": self.non_readers.gap_closed,
                                 "covered": self.covered, "violations": self.violations}
        for prefix, gap in (("", self.overall), ("non_readers.", self.non_readers)):
            for name in ("engine", "popularity", "oracle"):
                out[f"{prefix}{name}_top1"] = getattr(gap, name)
            out[f"{prefix}users"] = gap.users
        return out


def top1_gap(
    open_prob: np.ndarray,
    engine: np.ndarray,
    popularity: np.ndarray,
    oracle: np.ndarray,
    rows: np.ndarray | None = None,
) -> Top1Gap:
    """Gap closed over ``rows`` (bool mask; default all) of [n_users] top-1 item indices.

    An index of -1 means nothing is sent (open probability 0); cardholders for whom the oracle has
    no eligible item are left out.
    """
    rows = np.ones(len(open_prob), dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    rows = rows & (np.asarray(oracle) >= 0)
    picked = {}
    for name, top1 in (("engine", engine), ("popularity", popularity), ("oracle", oracle)):
        top1 = np.asarray(top1)[rows]
        users = np.flatnonzero(rows)
        values = np.where(top1 >= 0, open_prob[users, np.maximum(top1, 0)], 0.0)
        picked[name] = float(values.mean()) if len(values) else float("nan")
    return Top1Gap(users=int(rows.sum()), **picked)


def read_popularity_top1(dataset: Dataset, as_of: pd.Timestamp, items: IdIndex, eligibility: Eligibility,
                         n_users: int) -> np.ndarray:
    """Each of `n_users` cardholders' eligible item read most often up to `as_of` (-1 when none): the
    popularity every gap closed is measured from."""
    reads = dataset.article_reads.loc[(dataset.article_reads["ts"] <= as_of).to_numpy()]
    read_items = items.index_of(reads["content_id"].astype(str).to_numpy(dtype=object))
    counts = np.bincount(read_items[read_items >= 0], minlength=len(items)).astype(np.float32)
    return top_k(np.ones((n_users, 1), dtype=np.float32), counts[:, None], 1, eligibility)[0][:, 0]


def _pair_allowed(eligibility: Eligibility, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    allowed = np.ones(len(rows), dtype=bool)
    if eligibility.item_allowed is not None:
        allowed &= np.asarray(eligibility.item_allowed)[cols]
    if eligibility.user_group is not None:
        allowed &= np.asarray(eligibility.group_item_allowed)[np.asarray(eligibility.user_group)[rows], cols]
    if eligibility.seen is not None and len(rows):
        allowed &= ~np.asarray(eligibility.seen[rows, cols]).ravel().astype(bool)
    return allowed


def read_recommendations(path: str | Path) -> pd.DataFrame:
    """A recommendation file (.parquet or .csv with user_id, rank, content_id)."""
    path = Path(path)
    frame = pd.read_csv(path, dtype={"user_id": str, "content_id": str}) if path.suffix.lower() == ".csv" \
        else pd.read_parquet(path)
    missing = sorted({"user_id", "rank", "content_id"} - set(frame.columns))
    if missing:
        raise ValueError(f"recommendation file {path} lacks column(s) {', '.join(missing)}: "
                         "give the output of `recsys recommend`")
    return frame


def score_recommendations(
    recommendations: pd.DataFrame, dataset: Dataset, truth: WorldTruth, as_of: pd.Timestamp | None = None
) -> GapScore:
    """Gap closed at top-1 by ``recommendations`` (user_id, rank, content_id; rank 1 = first).

    Eligibility is the product's at ``as_of`` (default: the truth's): valid, not transactional, the
    card tier allowed, not already read or pushed. Popularity pushes each cardholder the eligible item
    read most often up to ``as_of``; the oracle the eligible item with the highest true open
    probability. A cardholder's top-1 is their lowest-ranked row; a missing, unknown or ineligible
    one counts as nothing sent. Non-readers are the truth's ``user_reader == False``.
    """
    from features.bundle_inputs import card_tiers_of, item_metadata, seen_pairs
    from recsys.bundle import build_eligibility

    check_truth_covers(truth, dataset)
    as_of = truth.as_of if as_of is None else as_of
    user_ids = np.asarray(truth.user_ids).astype(str).astype(object)
    users, items = IdIndex(user_ids), IdIndex(np.asarray(truth.content_ids).astype(str).astype(object))
    seen = seen_pairs(dataset, as_of, user_ids, items)
    eligibility = build_eligibility(item_metadata(dataset.content, items), items, as_of,
                                    card_tiers_of(dataset, user_ids), seen)
    open_prob = np.asarray(truth.open_prob, dtype=np.float32)

    popularity = read_popularity_top1(dataset, as_of, items, eligibility, len(users))
    oracle = best_eligible(open_prob, eligibility)

    ranked = recommendations.sort_values("rank", kind="stable").drop_duplicates("user_id")
    rows = users.index_of(ranked["user_id"].astype(str).to_numpy(dtype=object))
    cols = items.index_of(ranked["content_id"].astype(str).to_numpy(dtype=object))
    known = rows >= 0
    rows, cols = rows[known], cols[known]
    engine = np.full(len(users), -1, dtype=np.int64)
    engine[rows] = cols
    listed = engine >= 0
    allowed = np.zeros(len(users), dtype=bool)
    allowed[rows[cols >= 0]] = _pair_allowed(eligibility, rows[cols >= 0], cols[cols >= 0])
    scored = oracle >= 0
    violations = int((listed & ~allowed & scored).sum())
    engine = np.where(allowed, engine, -1)
    reader = np.asarray(truth.user_reader, dtype=bool)
    return GapScore(
        overall=top1_gap(open_prob, engine, popularity, oracle),
        non_readers=top1_gap(open_prob, engine, popularity, oracle, ~reader),
        covered=float((engine[scored] >= 0).mean()) if scored.any() else float("nan"),
        violations=violations,
    )
