"""A learned second stage over the engine's candidates, against the engine's plain sum, on the same fits.

For each world of `benchmarks/quality.py` it takes the validation fit `recsys train` makes to choose
its epochs and weights (`training.selection.fit_on_validation`), ranks every evaluated cardholder's
top `--candidates` eligible items by the engine's sum, and describes each (cardholder, item) pair by
what the engine already has: the sum, the LightFM part alone and the wide part alone (each as a z-score
among the cardholder's candidates, and the sum's and LightFM's ranks), the item's appeal (the
standardised estimate `item_appeal_weight` scales), its days on offer, age and days left, and the
cardholder's reads, marketing pushes, opens, open rate and menu clicks over the last 90 days and
whether they ever read. A `HistGradientBoostingClassifier` learns which pairs were read or opened in
the validation window. The engine is then fitted at the world's as-of time with the chosen settings
(as `quality.py` does), the classifier reorders each cardholder's candidates from that fit, and both
orders are scored by the world's hidden truth (top-1 gap closed, overall / non-readers). Variants
(`VARIANTS`) fit the same learner without the activity columns, on the engine's signals alone, and on
the window's marketing pushes (opened against ignored) instead of its reads and opens.

Two checks against the window the rankers learned from: the share of held-out validation cardholders
whose first item they read or opened there (rankers refitted on the other cardholders), and the truth's
open probability of every cardholder's first item on that same validation fit. The truth is read for
scoring only, never for fitting or choosing.

    nice -n 15 .venv/bin/python benchmarks/second_stage.py --users 3000 --seed 11
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import eligibility_at, recommendation_frame, score, world_arguments, worlds  # noqa: E402

ACTIVITY_DAYS = 90
DAY = pd.Timedelta(days=1)
FEATURES = ("sum_z", "sum_rank", "lightfm_z", "lightfm_rank", "wide_z", "appeal", "days_on_offer", "age_days",
            "days_left", "reads", "pushes", "opens", "open_rate", "menu_clicks", "reader")
# rankers fitted on the same candidates: every feature, without the cardholder's activity, and the
# engine's own signals alone (no item timing, no activity); then the first and the last on the window's
# marketing pushes, opened against ignored, instead of its reads and opens
VARIANTS = {"second stage": FEATURES, "without activity": FEATURES[:9], "scores only": FEATURES[:6]}


def pair_scores(model, factors: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The model's score of each candidate [users, k] (-inf where there is none)."""
    items = model.item_factors()[np.maximum(candidates, 0)]
    scores = np.einsum("uf,ukf->uk", factors, items).astype(np.float64)
    return np.where(candidates >= 0, scores, -np.inf)


def against(reference: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z-score, rank from 0) of each of a cardholder's `scores` [users, m] among their candidates'
    `reference` scores [users, k] (-inf = no candidate): the rank counts the candidates scored higher."""
    values = np.where(np.isfinite(reference), reference, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean, spread = np.nanmean(values, axis=1, keepdims=True), np.nanstd(values, axis=1, keepdims=True)
        z = (scores - mean) / spread
    rank = (values[:, None, :] > scores[:, :, None]).sum(axis=2)
    return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0), rank.astype(np.float64)


def item_appeal(model, data) -> np.ndarray:
    """The standardised per-item estimate the model's item appeal weight scales (`recsys.models.appeal`)."""
    rate = model.appeal_rate(data)
    return (rate - rate.mean()) / (rate.std() or 1.0)


def item_columns(model, data, dataset, cut: pd.Timestamp) -> dict[str, np.ndarray]:
    from features.bundle_inputs import item_metadata

    meta = item_metadata(dataset.content, data.items)
    return {"appeal": item_appeal(model, data),
            "days_on_offer": np.asarray(data.item_exposure_days, dtype=np.float64),
            "age_days": ((cut - meta["valid_from"]) / DAY).to_numpy(dtype=np.float64, na_value=np.nan),
            "days_left": ((meta["valid_to"] - cut) / DAY).to_numpy(dtype=np.float64, na_value=np.nan)}


def activity(dataset, cut: pd.Timestamp, user_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Per cardholder, what they did in the `ACTIVITY_DAYS` before `cut` (and whether they ever read)."""
    from features.interactions import marketing_items
    from recsys.ids import IdIndex

    since = cut - ACTIVITY_DAYS * DAY
    index = pd.Index(np.asarray(user_ids, dtype=str))

    def count(frame: pd.DataFrame, column: str, start: pd.Timestamp | None = since) -> np.ndarray:
        keep = frame[column] <= cut
        if start is not None:
            keep &= frame[column] > start
        counts = frame.loc[keep.to_numpy(), "user_id"].astype(str).value_counts()
        return counts.reindex(index, fill_value=0).to_numpy(dtype=np.float64)

    content = IdIndex.from_values(dataset.content["content_id"].astype(str))
    marketing = set(content.ids[marketing_items(dataset, content)])
    pushes = dataset.push_log.loc[dataset.push_log["content_id"].astype(str).isin(marketing).to_numpy()]
    opened = pushes.loc[(pushes["opened_ts"].notna() & (pushes["opened_ts"] <= cut)).to_numpy()]
    sent, opens = count(pushes, "sent_ts"), count(opened, "sent_ts")
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(sent > 0, opens / sent, np.nan)
    return {"reads": count(dataset.article_reads, "ts"), "pushes": sent, "opens": opens, "open_rate": rate,
            "menu_clicks": count(dataset.menu_clicks, "ts"),
            "reader": (count(dataset.article_reads, "ts", None) > 0).astype(np.float64)}


def candidates_and_features(model, data, dataset, cut: pd.Timestamp, rows: np.ndarray, eligibility,
                            k: int, pairs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(candidate items [users, k], features [users, m, len(FEATURES)] of the items `pairs` [users, m],
    by default the candidates) of the cardholders `rows` of `data` under the model's current (chosen)
    weights; each score is described against the cardholder's candidates. The model is left as it was."""
    from recsys.ranking import top_k

    appeal, wide = model.item_appeal_weight, model.wide_weight
    factors = model.user_factors(rows, data.user_features[rows])
    candidates, _ = top_k(factors, model.item_factors(), k, eligibility)
    pairs = candidates if pairs is None else pairs
    total = [pair_scores(model, factors, items) for items in (candidates, pairs)]
    model.set_item_appeal(0.0, data)
    model.set_wide(0.0, data)
    factors = model.user_factors(rows, data.user_features[rows])
    lightfm = [pair_scores(model, factors, items) for items in (candidates, pairs)]
    model.set_wide(1.0, data)
    factors = model.user_factors(rows, data.user_features[rows])
    wide_part = [pair_scores(model, factors, items) - base
                 for items, base in zip((candidates, pairs), lightfm, strict=True)]
    model.set_wide(wide, data)
    model.set_item_appeal(appeal, data)
    columns: dict[str, np.ndarray] = {}
    columns["sum_z"], columns["sum_rank"] = against(*total)
    columns["lightfm_z"], columns["lightfm_rank"] = against(*lightfm)
    columns["wide_z"], _ = against(np.where(np.isfinite(total[0]), wide_part[0], -np.inf), wide_part[1])
    safe = np.maximum(pairs, 0)
    for name, values in item_columns(model, data, dataset, cut).items():
        columns[name] = values[safe]
    for name, values in activity(dataset, cut, np.asarray(data.users.ids)[rows]).items():
        columns[name] = np.repeat(values[:, None], pairs.shape[1], axis=1)
    return candidates, np.stack([columns[name] for name in FEATURES], axis=-1)


def fit_ranker(features: np.ndarray, labels: np.ndarray, valid: np.ndarray, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    ranker = HistGradientBoostingClassifier(learning_rate=0.05, max_iter=300, max_leaf_nodes=15,
                                            min_samples_leaf=100, l2_regularization=1.0,
                                            early_stopping=True, random_state=seed)
    return ranker.fit(features[valid], labels[valid])


def reorder(ranker, candidates: np.ndarray, features: np.ndarray, k: int = 5) -> np.ndarray:
    """Each cardholder's top `k` candidates by the ranker's probability (-1 where there are none)."""
    valid = candidates >= 0
    probability = np.full(candidates.shape, -np.inf)
    probability[valid] = ranker.predict_proba(features[valid])[:, 1]
    order = np.argsort(-probability, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(candidates, order, axis=1)


def window_hits(candidates: np.ndarray, features: np.ndarray, labels: np.ndarray,
                columns: dict[str, list[int]], seed: int) -> str:
    """The share of held-out validation cardholders whose first item was read or opened in the window,
    first by the plain sum, then by each variant's ranker fitted on the other cardholders."""
    fit, held = np.arange(candidates.shape[0]) % 2 == 0, np.arange(candidates.shape[0]) % 2 == 1
    hits = [f"plain sum {labels[held, 0].mean():.3f}"]
    for variant, used in columns.items():
        ranker = fit_ranker(features[fit][..., used], labels[fit], candidates[fit] >= 0, seed)
        first = reorder(ranker, candidates[held], features[held][..., used], k=1)[:, 0]
        hit = np.take_along_axis(labels[held], np.argmax(candidates[held] == first[:, None], axis=1)[:, None],
                                 axis=1)[:, 0] & (first >= 0)
        hits.append(f"{variant} {hit.mean():.3f}")
    return ", ".join(hits)


def in_window_truth(model, validation, dataset, world: Path, truth_path: Path | None, rankers: dict,
                    columns: dict[str, list[int]], k: int) -> str:
    """The truth's mean open probability of every cardholder's first item at the validation split, by
    the plain sum and by each ranker, on the fit the rankers learned from (so not a question of time)."""
    from validation_figures import shared_truth

    from training.truth import aligned_open_prob, best_eligible, load_truth, top1_open_rate

    train = validation.train
    truth = shared_truth(world) if truth_path is None else load_truth(truth_path)
    eligibility = eligibility_at(train, dataset, validation.split)
    candidates, features = candidates_and_features(model, train, dataset, validation.split,
                                                   np.arange(train.n_users), eligibility, k)
    open_prob = aligned_open_prob(truth, train.users, train.items)
    rates = {"plain sum": top1_open_rate(open_prob, candidates[:, 0])}
    for variant, ranker in rankers.items():
        first = reorder(ranker, candidates, features[..., columns[variant]], k=1)[:, 0]
        rates[variant] = top1_open_rate(open_prob, first)
    rates["best eligible"] = top1_open_rate(open_prob, best_eligible(open_prob, eligibility))
    return ", ".join(f"{key} {value:.4f}" for key, value in rates.items())


def measure(name: str, world: Path, as_of, truth_path: Path | None, config, k: int) -> dict:
    from features.loader import load_dataset
    from features.pipeline import build_training_matrices
    from training.selection import fit_on_validation

    start = time.perf_counter()
    dataset = load_dataset(world)
    fitted = fit_on_validation(dataset, as_of - pd.Timedelta(days=config.holdout_days), config,
                               echo=lambda line: None)
    validation, selection = fitted.validation, fitted.selection
    candidates, features = candidates_and_features(fitted.model, validation.train, dataset, validation.split,
                                                   validation.rows, validation.eligibility, k)
    users = np.repeat(np.arange(candidates.shape[0]), candidates.shape[1])
    labels = np.asarray(validation.relevant[users, np.maximum(candidates, 0).ravel()]).ravel()
    labels = labels.reshape(candidates.shape).astype(bool) & (candidates >= 0)
    columns = {variant: [FEATURES.index(name) for name in names] for variant, names in VARIANTS.items()}
    rankers = {variant: fit_ranker(features[..., used], labels, candidates >= 0, config.seed)
               for variant, used in columns.items()}
    print(f"  {name}: the window's first choice hit, cardholders of odd rows by rankers fitted on even rows: "
          + window_hits(candidates, features, labels, columns, config.seed), flush=True)
    pushes = validation.pushes
    push_eligibility = eligibility_at(validation.train, dataset, validation.split).subset(pushes.rows)
    _, push_features = candidates_and_features(fitted.model, validation.train, dataset, validation.split,
                                               pushes.rows, push_eligibility, k, pairs=pushes.items[:, None])
    sent = np.ones((pushes.rows.size, 1), dtype=bool)
    for variant, used in {"push opens": columns["second stage"], "push opens, scores": columns["scores only"]
                          }.items():
        rankers[variant] = fit_ranker(push_features[..., used], pushes.opened[:, None], sent, config.seed)
        columns[variant] = used
    print(f"  {name}: {pushes.rows.size:,} marketing pushes in the window, "
          f"{int(pushes.opened.sum()):,} opened", flush=True)
    print(f"  {name}: true top-1 open rate on the validation fit at its split, every cardholder: "
          + in_window_truth(fitted.model, validation, dataset, world, truth_path, rankers, columns, k),
          flush=True)
    caught = labels.sum() / validation.relevant.nnz
    print(f"  {name}: validation {validation.n_users:,} cardholders, {labels.sum():,} positives among "
          f"{int((candidates >= 0).sum()):,} candidates ({caught:.0%} of the window's positives), "
          f"{', '.join(str(r.n_iter_) for r in rankers.values())} trees; chosen {selection.epochs} epochs, "
          f"appeal {selection.item_appeal_weight:g}, "
          f"wide {selection.wide_weight:g}", flush=True)

    chosen = selection.apply(config)
    data, _ = build_training_matrices(dataset, as_of, chosen.features)
    model = chosen.model.build().fit(data)
    rows = np.arange(data.n_users)
    candidates, features = candidates_and_features(model, data, dataset, as_of, rows,
                                                   eligibility_at(data, dataset, as_of), k)
    plain = score(world, recommendation_frame(candidates[:, :5], data), dataset, truth_path)
    row = {"world": name, "plain sum": plain}
    for variant, ranker in rankers.items():
        order = reorder(ranker, candidates, features[..., columns[variant]])
        row[variant] = score(world, recommendation_frame(order, data), dataset, truth_path)
    print(f"  {name:<18} " + "   ".join(f"{key} {value[0]:.3f} / {value[1]:.3f}" for key, value in row.items()
                                       if key != "world")
          + f"   ({time.perf_counter() - start:.0f} s)", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    world_arguments(parser, users=3_000)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--num-threads", type=int, default=2)
    args = parser.parse_args()

    from training.config import ModelSpec, load_config

    config = load_config(args.config)
    config = replace(config, model=ModelSpec(config.model.kind,
                                             {**config.model.params, "num_threads": args.num_threads}))
    results = []
    with tempfile.TemporaryDirectory(prefix="qianmian-second-stage-") as scratch:
        for name, world, as_of, truth_path in worlds(args, Path(scratch)):
            results.append(measure(name, world, as_of, truth_path, config, args.candidates))
    print("\ntop-1 gap closed, overall / non-readers, on the same fit: "
          + " | ".join(key for key in results[0] if key != "world"))
    for row in results:
        print(f"  {row['world']:<18} " + " | ".join(f"{value[0]:.3f} / {value[1]:.3f}"
                                                    for key, value in row.items() if key != "world"))


if __name__ == "__main__":
    main()
