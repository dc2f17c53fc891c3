"""How well each estimate of item appeal ranks the items on offer, against the truth, free of model noise.

For each world of `benchmarks/quality.py` (synthetic ones with their truth file, and the shared
independent world with its `independent.hidden.npz`) it builds the training matrices at the world's
as-of time (the features of `--config`) and prints the Spearman correlation of each item estimate with
the item's true mean open probability over every cardholder, among the items on offer at the as-of
time (transactional notices left out): all of them, the new ones (on offer for at most `--new-days`
days) and the others, and the share of the true ten best items' mean truth that each estimate's ten
best reach; then, as `benchmarks/quality.py` scores a model, the top-1 gap closed (overall / non-readers)
when every cardholder is offered the eligible items in the estimate's order alone ("alone"): eligibility
leaves out what a cardholder was already pushed, so where campaigns were targeted the cardholders left
for an item are the ones its campaign passed over, which a correlation over items cannot show. The
estimates:

- `engagement`: today's `engagement_rate`, log((cardholders who read or opened it + 1) / days on offer);
- `open rate`: today's default, `open_rate_logit` over that engagement rate;
- `tag prior`: the log of the events per day predicted from the item's tag and kind columns by a
  Poisson regression with a log link, log days on offer as offset and an L2 penalty `--l2` on the slopes,
  fitted over the items on offer for at least `--prior-days` days;
- `empirical Bayes`: the log of the Gamma-Poisson posterior mean rate, (events + prior x m) / (days + m),
  with m pseudo-days from the method of moments over the same items, so a new item is ranked like the
  items of its tags until it has shown otherwise; `... + open rate`: that rate in place of the engagement
  rate in `open_rate_logit`; `EB to one rate`: the same with an intercept-only prior (the control);
- `age-fair exposure`: events per *expected* day instead of per day on offer: each day of an item's life
  weighted by how many cardholders an average item gains at that age (events per item-day at risk,
  pooled over items in age bins), so an item's early weeks count as they do for every item;
- `linear tag ceiling`: a ridge of the truth itself on the tag and kind columns (in sample): the most
  any linear prior from tags and kind could carry.

    .venv/bin/python benchmarks/appeal_estimates.py --users 3000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.quality import world_arguments, worlds  # noqa: E402
from benchmarks.taste_transfer import load_world_truth, on_offer  # noqa: E402

DAY = pd.Timedelta(days=1)
AGE_EDGES = np.array([0, 1, 2, 3, 5, 7, 10, 14, 21, 28, 42, 56, 84, 120, 180, 365, np.inf])
HEAD = 10


def tag_prior_rate(features: sp.csr_matrix, events: np.ndarray, days: np.ndarray, fit: np.ndarray,
                   l2: float) -> np.ndarray:
    """Per item: events per day predicted from its feature row by a Poisson regression (log link, offset
    log days, intercept unpenalised, slopes penalised by `l2`) fitted over the items `fit`."""
    if fit.sum() < 1 or events[fit].sum() <= 0:
        raise ValueError("a tag prior needs at least one fitted item with an event")
    design = sp.hstack([np.ones((features.shape[0], 1)), features], format="csr")
    rows, counts, offset = design[fit], events[fit], np.log(days[fit])
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = rows @ beta + offset
        mean = np.exp(eta)
        value = float((mean - counts * eta).sum() + 0.5 * (penalty * beta * beta).sum())
        return value, rows.T @ (mean - counts) + penalty * beta

    start = np.zeros(design.shape[1])
    start[0] = np.log(counts.sum() / days[fit].sum())
    beta = minimize(loss, start, jac=True, method="L-BFGS-B").x
    return np.exp(design @ beta)


def pseudo_days(events: np.ndarray, days: np.ndarray, prior: np.ndarray, fit: np.ndarray) -> float:
    """m of a Gamma(prior x m, m) spread of item rates around `prior`, by the method of moments over
    `fit`: Var(events) = days x prior + days^2 x prior / m; infinite when no spread beyond Poisson's."""
    expected = days[fit] * prior[fit]
    excess = float(((events[fit] - expected) ** 2 - expected).sum())
    return float((days[fit] ** 2 * prior[fit]).sum() / excess) if excess > 0 else np.inf


def shrunk_rate(events: np.ndarray, days: np.ndarray, prior: np.ndarray, m: float) -> np.ndarray:
    """Gamma-Poisson posterior mean rate per item: (events + prior x m) / (days + m)."""
    if not np.isfinite(m):
        return prior.astype(np.float64)
    return (events + prior * m) / (days + m)


def age_profile(dataset, as_of: pd.Timestamp, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(days of each item on offer in each age bin of `AGE_EDGES` [items, bins], clipped to the data span
    as `exposure_days`; cardholders an average item gains per day at each age over the overall
    average [bins]), from first reads and opens of marketing items up to `as_of`."""
    tables = ((dataset.article_reads, "ts"), (dataset.push_log, "sent_ts"))
    first = min(frame[column].min() for frame, column in tables if len(frame))
    frame = dataset.content.drop_duplicates("content_id")
    frame = frame.set_index(frame["content_id"].astype(str).to_numpy(dtype=object)).reindex(item_ids)
    born = pd.to_datetime(frame["valid_from"], utc=True).fillna(first)
    end = pd.to_datetime(frame["valid_to"], utc=True).fillna(as_of).clip(upper=as_of)
    start_age = ((born.clip(lower=first) - born) / DAY).to_numpy(np.float64)
    end_age = np.maximum(((end - born) / DAY).to_numpy(np.float64), start_age)
    overlap = np.clip(np.minimum(end_age[:, None], AGE_EDGES[1:])
                      - np.maximum(start_age[:, None], AGE_EDGES[:-1]), 0, None)
    pushes = dataset.push_log
    opens = pushes.loc[pushes["opened_ts"].notna(), ["user_id", "content_id", "opened_ts"]]
    events = pd.concat([dataset.article_reads[["user_id", "content_id", "ts"]],
                        opens.rename(columns={"opened_ts": "ts"})])
    events = events[events["ts"] <= as_of].sort_values("ts").drop_duplicates(["user_id", "content_id"])
    column = pd.Index(item_ids).get_indexer(events["content_id"].astype(str))
    marketing = ~frame["transactional"].fillna(False).to_numpy(dtype=bool)
    keep = column >= 0
    keep[keep] &= marketing[column[keep]]
    age = np.asarray((events["ts"].to_numpy()[keep] - born.to_numpy()[column[keep]]) / DAY, dtype=np.float64)
    gained = np.histogram(np.clip(age, 0, None), bins=AGE_EDGES)[0].astype(np.float64)
    at_risk = overlap[marketing].sum(axis=0)
    per_day = np.divide(gained, at_risk, out=np.zeros_like(gained), where=at_risk > 0)
    return overlap, per_day / (gained.sum() / at_risk.sum())


def age_fair_exposure(overlap: np.ndarray, relative_gain: np.ndarray) -> np.ndarray:
    """Per item: its days on offer, each weighted by what an average item gains at that age; at least 1."""
    return np.maximum(overlap @ relative_gain, 1.0)


def ridge_ceiling(features: sp.csr_matrix, truth: np.ndarray, rows: np.ndarray, l2: float) -> np.ndarray:
    """In-sample ridge prediction of `truth` from the feature columns over `rows` (with intercept)."""
    design = np.hstack([np.ones((int(rows.sum()), 1)), features[rows].toarray()])
    penalty = l2 * np.eye(design.shape[1])
    penalty[0, 0] = 0.0
    prediction = np.full(truth.shape, np.nan)
    prediction[rows] = design @ np.linalg.solve(design.T @ design + penalty, design.T @ truth[rows])
    return prediction


def estimates(data, dataset, as_of: pd.Timestamp, truth: np.ndarray, live: np.ndarray,
              args: argparse.Namespace, prior_sends: float) -> dict[str, np.ndarray]:
    from recsys.models.appeal import engagement_rate, open_rate_logit

    events = np.diff(data.interactions_csr().tocsc().indptr).astype(np.float64)
    days = np.asarray(data.item_exposure_days, dtype=np.float64)
    marketing = ~transactional_items(data)
    fit = marketing & (days >= args.prior_days)
    features = sp.csr_matrix(data.item_features)
    prior = tag_prior_rate(features, events, days, fit, args.l2)
    age_fair = engagement_rate(events, age_fair_exposure(*age_profile(dataset, as_of,
                                                                      np.asarray(data.items.ids, str))))
    m = pseudo_days(events, days, prior, fit)
    one_rate = np.full(days.shape, events[fit].sum() / days[fit].sum())
    shrunk = np.log(shrunk_rate(events, days, prior, m))
    engagement = engagement_rate(events, days)

    def open_rate(rate: np.ndarray) -> np.ndarray:
        logit = open_rate_logit(data.item_sends, data.item_opens, rate, prior_sends)
        return rate if logit is None else logit

    return {
        "engagement (today)": engagement,
        "open rate (today's default)": open_rate(engagement),
        "tag prior": np.log(prior),
        f"empirical Bayes (m {m:.1f} days)": shrunk,
        "empirical Bayes + open rate": open_rate(shrunk),
        "EB to one rate": np.log(shrunk_rate(events, days, one_rate,
                                             pseudo_days(events, days, one_rate, fit))),
        "age-fair exposure": age_fair,
        "age-fair exposure + open rate": open_rate(age_fair),
        "linear tag ceiling": ridge_ceiling(features, truth, live, args.l2),
    }


def transactional_items(data) -> np.ndarray:
    """bool per item: a transactional notice (never ranked)."""
    names = list(data.item_feature_names)
    if "transactional" not in names:
        return np.zeros(data.n_items, dtype=bool)
    return np.asarray(data.item_features[:, names.index("transactional")].toarray()).ravel() > 0


def head_share(estimate: np.ndarray, truth: np.ndarray, rows: np.ndarray) -> float:
    """Mean truth of the estimate's `HEAD` best items among `rows`, over that of the truth's best."""
    values, order = truth[rows], np.argsort(-estimate[rows], kind="stable")
    return float(values[order[:HEAD]].mean() / np.sort(values)[::-1][:HEAD].mean())


def ranked_alone(estimate: np.ndarray, n_users: int, eligibility, k: int = 5) -> np.ndarray:
    """[n_users, k] item indices: each cardholder's eligible items in the order of `estimate` alone
    (items without an estimate last), -1 where fewer are eligible."""
    from recsys.ranking import top_k

    known = np.isfinite(estimate)
    if not known.any():
        raise ValueError("the estimate has no finite value to rank by")
    order = np.where(known, estimate, estimate[known].min() - 1.0).astype(np.float32)
    indices, _ = top_k(np.ones((n_users, 1), dtype=np.float32), order[:, None], k, eligibility)
    return indices


def measure(name: str, world: Path, as_of: pd.Timestamp, truth_path: Path | None, args) -> None:
    from benchmarks.quality import eligibility_at, recommendation_frame, score
    from features.loader import load_dataset
    from features.pipeline import build_training_matrices
    from features.timecut import known_at
    from training.config import load_config

    config = load_config(args.config)
    dataset = load_dataset(world)
    data, _ = build_training_matrices(dataset, as_of, config.features)
    truth_world = load_world_truth(truth_path)
    column = pd.Index(truth_world.item_ids).get_indexer(np.asarray(data.items.ids, dtype=str))
    truth = truth_world.open_prob[:, column].mean(axis=0).astype(np.float64)
    live = on_offer(dataset.content, np.asarray(data.items.ids, dtype=object), as_of)
    new = live & (np.asarray(data.item_exposure_days) <= args.new_days)
    groups = {"on offer": live, "new": new, "older": live & ~new}
    pushed = int((live & (np.asarray(data.item_sends) > 0)).sum())
    print(f"\n{name}: {live.sum()} items on offer ({new.sum()} new, {pushed} ever pushed)")
    known = known_at(dataset, as_of)
    _, gain = age_profile(known, as_of, np.asarray(data.items.ids, dtype=str))
    print("  cardholders gained per item-day by age (days " + ", ".join(
        f"{low:g}-{high:g}: {value:.2f}" for low, high, value in zip(AGE_EDGES[:-1], AGE_EDGES[1:], gain,
                                                                     strict=True) if value > 0)
          + "), over the average")
    print(f"  {'estimate':<34} " + " ".join(f"{group:>9}" for group in groups) + f" {'top-' + str(HEAD):>7}"
          + "   alone: top-1 gap closed (all / non-readers)")
    prior_sends = float(config.model.params.get("open_rate_prior_sends", 50.0))
    eligibility = eligibility_at(data, dataset, as_of)
    for label, estimate in estimates(data, known, as_of, truth, live, args, prior_sends).items():
        rhos = [spearmanr(estimate[rows], truth[rows]).statistic if rows.sum() > 2 else np.nan
                for rows in groups.values()]
        recs = recommendation_frame(ranked_alone(estimate, data.n_users, eligibility), data)
        overall, non_readers = score(world, recs, dataset, truth_path)
        print(f"  {label:<34} " + " ".join(f"{rho:9.3f}" for rho in rhos)
              + f" {head_share(estimate, truth, live):7.3f}   {overall:6.3f} / {non_readers:6.3f}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_arguments(parser, users=3000)
    parser.add_argument("--new-days", type=float, default=14.0,
                        help="an item on offer this long or less is new")
    parser.add_argument("--prior-days", type=float, default=14.0, help="items the tag prior is fitted on")
    parser.add_argument("--l2", type=float, default=1.0, help="L2 penalty of the tag prior's slopes")
    args = parser.parse_args()
    print("Spearman correlation with the true mean open probability; top-10: the share of the true ten "
          "best items' mean open probability reached by the estimate's ten best")
    with tempfile.TemporaryDirectory(prefix="qianmian-appeal-") as scratch:
        for name, world, as_of, truth_path in worlds(args, Path(scratch)):
            measure(name, world, as_of, truth_path, args)


if __name__ == "__main__":
    main()
