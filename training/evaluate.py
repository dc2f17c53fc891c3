"""Time-split evaluation: fit at `as_of - holdout`, score what cardholders read or opened afterwards.

The holdout is every positive (article read, push opened) in `(split, as_of]` on an item the cardholder
could have been offered at the split: not read or pushed before it, inside its tier restriction, valid
at some time in the holdout window and not transactional. Each model ranks the same eligible items
for the same cardholders through `recsys.ranking.top_k`; metrics are computed on its top k. The
cold-start slice is the evaluated cardholders with no article read before the split (they are
evaluated on the pushes they opened); the chosen metric is also reported per slice (readers,
non-readers, new cardholders, each card tier) with a bootstrap interval over the slice's cardholders.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.builder import DAY, FeatureBuilder
from features.bundle_inputs import card_tiers_of, item_metadata, seen_pairs
from features.config import FeatureConfig
from features.interactions import marketing_items, positive_events
from features.loader import Dataset
from features.pipeline import build_training_matrices
from recsys import metrics
from recsys.bundle import build_eligibility
from recsys.matrices import TrainingMatrices
from recsys.models import Recommender
from recsys.ranking import Eligibility, top_k

logger = logging.getLogger(__name__)


NEW_CARDHOLDER_DAYS = 90


class HoldoutError(ValueError):
    """No cardholder has a held-out positive: the split cannot be evaluated."""


@dataclass(frozen=True)
class PushResponses:
    """Every push sent in the holdout window to a known cardholder: training row, item, opened by the
    as-of time, and whether the cardholder had read anything before the split."""

    rows: np.ndarray
    items: np.ndarray
    opened: np.ndarray
    cold: np.ndarray


@dataclass(frozen=True)
class Holdout:
    """Training input at the split and the held-out truth for the evaluated cardholders."""

    split: pd.Timestamp
    as_of: pd.Timestamp
    train: TrainingMatrices
    builder: FeatureBuilder
    rows: np.ndarray
    relevant: sp.csr_matrix
    eligibility: Eligibility
    cold: np.ndarray
    slices: dict[str, np.ndarray]
    pushes: PushResponses

    @property
    def n_users(self) -> int:
        return int(self.rows.size)

    def user_factors(self, model: Recommender, rows: np.ndarray | None = None) -> np.ndarray:
        rows = self.rows if rows is None else self.rows[rows]
        return model.user_factors(rows, self.train.user_features[rows])


def make_holdout(dataset: Dataset, as_of: pd.Timestamp, holdout_days: float,
                 config: FeatureConfig) -> Holdout:
    """Training matrices at `as_of - holdout_days` and the held-out positives after it."""
    split = as_of - holdout_days * DAY
    train, builder = build_training_matrices(dataset, split, config)
    users, items = train.users, train.items
    tiers = card_tiers_of(dataset, users.ids)
    seen = seen_pairs(dataset, split, users.ids, items)
    meta = item_metadata(dataset.content, items)
    # offerable at some moment of the holdout window, not only at its first instant
    window_meta = meta.assign(valid_from=meta["valid_from"].where(meta["valid_from"] > as_of, pd.NaT))
    eligibility = build_eligibility(window_meta, items, split, tiers, seen)
    events = positive_events(dataset, as_of, config, since=split)
    rows = users.index_of(events["user_id"].to_numpy()) if len(events) else np.zeros(0, np.int64)
    cols = items.index_of(events["content_id"].to_numpy()) if len(events) else np.zeros(0, np.int64)
    keep = (rows >= 0) & (cols >= 0)
    rows, cols = rows[keep], cols[keep]
    allowed = np.asarray(eligibility.item_allowed)[cols] & np.asarray(eligibility.group_item_allowed)[
        np.asarray(eligibility.user_group)[rows], cols]
    allowed &= ~np.asarray(seen[rows, cols]).ravel().astype(bool)
    relevant = sp.csr_matrix((np.ones(int(allowed.sum()), dtype=bool), (rows[allowed], cols[allowed])),
                             shape=(len(users), len(items)))
    relevant.sum_duplicates()
    evaluated = np.flatnonzero(np.diff(relevant.indptr) > 0)
    if evaluated.size == 0:
        raise HoldoutError(
            f"no cardholder read or opened an eligible, unseen item between {split.isoformat()} and "
            f"{as_of.isoformat()}: lengthen evaluation.holdout_days or move --as-of"
        )
    readers = dataset.article_reads.loc[(dataset.article_reads["ts"] <= split).to_numpy(), "user_id"]
    has_read = pd.Index(readers.astype(str).unique()).get_indexer(users.ids[evaluated]) >= 0
    logger.info("holdout %s..%s: %d evaluated cardholders (%d without reads), %d relevant pairs",
                split.isoformat(), as_of.isoformat(), evaluated.size, int((~has_read).sum()),
                int(relevant[evaluated].nnz))
    return Holdout(split=split, as_of=as_of, train=train, builder=builder, rows=evaluated,
                   relevant=relevant[evaluated].tocsr(), eligibility=eligibility.subset(evaluated),
                   cold=~has_read, slices=holdout_slices(dataset, split, users.ids[evaluated], has_read),
                   pushes=push_responses(dataset, split, as_of, train, readers))


def push_responses(dataset: Dataset, split: pd.Timestamp, as_of: pd.Timestamp, train: TrainingMatrices,
                   readers: pd.Series) -> PushResponses:
    """The pushes of rankable content sent in `(split, as_of]`, opened or not: most cardholders who
    never read receive some, so ranking opened above ignored pushes evaluates far more of them than
    held-out opens do. Transactional notices are left out: they are never ranked, and on a world where
    a third of the pushes are statement reminders they would make the figure mostly about whether the
    model scores reminders above marketing."""
    pushes = dataset.push_log
    pushes = pushes.loc[((pushes["sent_ts"] > split) & (pushes["sent_ts"] <= as_of)).to_numpy()]
    rows = train.users.index_of(pushes["user_id"].astype(str).to_numpy(dtype=object))
    items = train.items.index_of(pushes["content_id"].astype(str).to_numpy(dtype=object))
    opened = (pushes["opened_ts"].notna() & (pushes["opened_ts"] <= as_of)).to_numpy(dtype=bool)
    rankable = marketing_items(dataset, train.items)
    known = (rows >= 0) & (items >= 0)
    known[known] &= rankable[items[known]]
    rows, items, opened = rows[known], items[known], opened[known]
    cold = pd.Index(readers.astype(str).unique()).get_indexer(train.users.ids[rows]) < 0
    return PushResponses(rows=rows, items=items, opened=opened, cold=cold)


def push_auc(model: Recommender, holdout: Holdout, members: np.ndarray) -> tuple[float, int]:
    """(pooled AUC of the model's scores, opened vs ignored pushes; cardholders counted) over the
    holdout pushes selected by the bool mask `members`; NaN without both outcomes."""
    pushes = holdout.pushes
    rows, items, opened = pushes.rows[members], pushes.items[members], pushes.opened[members]
    users, inverse = np.unique(rows, return_inverse=True)
    if opened.all() or not opened.any():
        return float("nan"), int(users.size)
    factors = model.user_factors(users, holdout.train.user_features[users])
    scores = np.einsum("ij,ij->i", factors[inverse], model.item_factors()[items])
    return float(metrics.weighted_auc(scores, opened)[0]), int(users.size)


def holdout_slices(dataset: Dataset, split: pd.Timestamp, user_ids: np.ndarray,
                   has_read: np.ndarray) -> dict[str, np.ndarray]:
    """Bool masks over the evaluated cardholders: readers, non-readers, new cardholders (card opened
    within `NEW_CARDHOLDER_DAYS` before the split) and one per card tier."""
    holders = dataset.cardholders.drop_duplicates("user_id").set_index("user_id").reindex(user_ids)
    opened = pd.to_datetime(holders["opened_at"], utc=True, errors="coerce")
    age_days = ((split - opened) / DAY).to_numpy(dtype=np.float64, na_value=np.nan)
    slices = {"readers": has_read, "non_readers": ~has_read,
              "new_cardholders": np.nan_to_num(age_days, nan=np.inf) < NEW_CARDHOLDER_DAYS}
    tiers = holders["card_tier"].astype("string").fillna("unknown").to_numpy(dtype=object)
    for tier in sorted(set(tiers)):
        slices[f"tier:{tier}"] = tiers == tier
    return slices


def _auc(model: Recommender, holdout: Holdout, sample: np.ndarray) -> float:
    """Mean per-user AUC over eligible items (held-out positives vs the other eligible items)."""
    if sample.size == 0:
        return float("nan")
    scores = holdout.user_factors(model, sample) @ model.item_factors().T
    eligibility = holdout.eligibility.subset(sample)
    mask = eligible_mask(eligibility, scores.shape[1])
    return metrics.mean_over_users(metrics.auc(scores, holdout.relevant[sample], mask))


def eligible_mask(eligibility: Eligibility, n_items: int) -> np.ndarray:
    """Dense bool [n_users, n_items] of what each user may receive (for small user samples only)."""
    n_users = len(eligibility.user_group) if eligibility.user_group is not None else eligibility.seen.shape[0]
    mask = np.ones((n_users, n_items), dtype=bool)
    if eligibility.item_allowed is not None:
        mask &= np.asarray(eligibility.item_allowed)[None, :]
    if eligibility.user_group is not None:
        mask &= np.asarray(eligibility.group_item_allowed)[np.asarray(eligibility.user_group)]
    if eligibility.seen is not None:
        mask &= ~sp.csr_matrix(eligibility.seen).toarray().astype(bool)
    return mask


def recommend_holdout(model: Recommender, holdout: Holdout, k: int) -> np.ndarray:
    """int [n evaluated, k]: each evaluated cardholder's top k eligible items at the split."""
    recommended, _ = top_k(holdout.user_factors(model), model.item_factors(), k, holdout.eligibility)
    return recommended


def evaluate(model: Recommender, holdout: Holdout, k: int, auc_max_users: int = 5000,
             seed: int = 0, metric: str | None = None, recommended: np.ndarray | None = None
             ) -> dict[str, float]:
    """precision/recall/ndcg/map@k, auc and coverage@k, overall and `cold.` for the no-reads slice;
    `push_auc` (opened vs ignored holdout pushes, and the `push_users` it covers), the same two `cold.`;
    for `metric` (default nDCG@k) its 95% bootstrap interval (`<metric>.low`, `.high`) and per slice
    `slice.<name>.<metric>` with `.low`, `.high` and `slice.<name>.users`."""
    if recommended is None:
        recommended = recommend_holdout(model, holdout, k)
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    for prefix, members in (("", np.arange(holdout.n_users)), ("cold.", np.flatnonzero(holdout.cold))):
        if members.size == 0:
            continue
        values = metrics.ranking_report(recommended[members], holdout.relevant[members], k)
        out.update({f"{prefix}{name}": float(value) for name, value in values.items()})
        out[f"{prefix}coverage@{k}"] = metrics.catalogue_coverage(recommended[members],
                                                                  len(model.item_factors()))
        sample = members if members.size <= auc_max_users else np.sort(
            rng.choice(members, auc_max_users, replace=False))
        out[f"{prefix}auc"] = _auc(model, holdout, sample)
    everyone = np.ones(holdout.pushes.rows.size, dtype=bool)
    for prefix, members in (("", everyone), ("cold.", holdout.pushes.cold)):
        out[f"{prefix}push_auc"], out[f"{prefix}push_users"] = push_auc(model, holdout, members)
    name = (metric or f"ndcg@{k}").split("@")[0]
    if name in metrics.PER_USER:
        values = metrics.per_user(name, recommended, holdout.relevant, k)
        _, out[f"{name}@{k}.low"], out[f"{name}@{k}.high"] = metrics.bootstrap_interval(values, seed=seed)
        for slice_name, members in holdout.slices.items():
            mean, low, high = metrics.bootstrap_interval(values[members], seed=seed)
            key = f"slice.{slice_name}.{name}@{k}"
            out.update({key: mean, f"{key}.low": low, f"{key}.high": high,
                        f"slice.{slice_name}.users": float(members.sum())})
    return out


def epoch_scorer(holdout: Holdout, k: int, max_users: int, seed: int = 0) -> Callable[[Recommender], float]:
    """nDCG@k on a fixed sample of evaluated cardholders, cheap enough to call after every epoch."""
    rng = np.random.default_rng(seed)
    sample = (np.arange(holdout.n_users) if holdout.n_users <= max_users
              else np.sort(rng.choice(holdout.n_users, max_users, replace=False)))
    eligibility = holdout.eligibility.subset(sample)
    relevant = holdout.relevant[sample]

    def score(model: Recommender) -> float:
        recommended, _ = top_k(holdout.user_factors(model, sample), model.item_factors(), k, eligibility)
        return metrics.mean_over_users(metrics.ndcg_at_k(recommended, relevant, k))

    return score
