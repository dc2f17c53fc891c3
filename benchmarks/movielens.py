"""External check on real data: the public MovieLens-100k ranking benchmark, reproduced exactly.

Protocol (recommenders-team/recommenders, MovieLens 100k benchmark, k = 10):
- split: `python_stratified_split(ratio=0.75, min_rating=1, filter_by="item", seed=42)`, i.e. per
  item, 75% of its ratings (in a seeded random order) to train, the rest to test;
- every test rating is relevant (binary); items the user rated in train are not recommended;
- users counted: those in both test and predictions;
- precision = hits / k, recall = hits / |test items|, nDCG with binary gain and the ideal over
  min(k, |test items|), MAP = sum of precision at each hit in the top k / |test items| (all of them).

The engine's model is the production LightFM hybrid (`recsys.models.LightFMHybrid`, WARP loss) with
user features (age band, gender, occupation from u.user) and item features (genres from u.item);
recommendations come from the production batch ranking (`recsys.ranking.top_k`) with the user's train
items as the "seen" filter, and metrics from `recsys.metrics`, cross-checked against an independent
pandas implementation of the published formulas.

Hyper-parameters were chosen on a validation split carved from the TRAIN part only (the same splitter
with another seed), never on the test split: run with `--search` to repeat that search; its choice is
fixed in `CHOSEN` below so a plain run is reproducible (single-threaded fit by default: LightFM's
parallel updates are not bit-for-bit repeatable) and takes about a minute.

Usage:
    .venv/bin/python benchmarks/movielens.py --path ../shared/data/ml-100k [--json FILE] [--recs-out FILE]
    .venv/bin/python benchmarks/movielens.py --path ../shared/data/ml-100k --search
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.atomic import write_text  # noqa: E402
from recsys.ids import IdIndex  # noqa: E402
from recsys.matrices import TrainingMatrices  # noqa: E402
from recsys.metrics import (  # noqa: E402
    average_precision_at_k,
    mean_over_users,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from recsys.models.lightfm_hybrid import LightFMHybrid  # noqa: E402
from recsys.ranking import Eligibility, top_k  # noqa: E402
from training.recommend import write_frame_atomically  # noqa: E402

logger = logging.getLogger("benchmarks.movielens")

K = 10
USER, ITEM, RATING, TIMESTAMP = "userID", "itemID", "rating", "timestamp"

PUBLISHED = [  # algorithm, MAP, nDCG@10, P@10, R@10 (recommenders-team/recommenders, MovieLens 100k)
    ("BiVAE", 0.146126, 0.475077, 0.411771, 0.219145),
    ("BPR (cornac)", 0.132478, 0.441997, 0.388229, 0.212522),
    ("LightGCN", 0.088526, 0.419846, 0.379626, 0.144336),
    ("NCF", 0.107720, 0.396118, 0.347296, 0.180775),
    ("SAR", 0.110591, 0.382461, 0.330753, 0.176385),
    ("ALS (Spark)", 0.004732, 0.044239, 0.048462, 0.017796),
]

AGE_BANDS = [0, 18, 25, 35, 45, 50, 56, 200]
GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western"]


@dataclass(frozen=True)
class Config:
    """Model and feature settings searched on validation data."""

    no_components: int = 64
    learning_rate: float = 0.05
    item_alpha: float = 0.0
    user_alpha: float = 0.0
    max_sampled: int = 10
    epochs: int = 40
    loss: str = "warp"
    user_features: bool = True
    item_features: bool = True
    user_feature_weight: float = 1.0
    item_feature_weight: float = 1.0


# Chosen by `--search --threads 1` (validation = 25% of train by the same splitter, seed 7; best
# validation nDCG@10 over checkpoints every 10 epochs; test split untouched):
#   lr 0.05, max_sampled 10, d 64 .............................. 0.2558 (20 epochs)
#   lr 0.05, max_sampled 50 / 100 .............................. 0.2614 / 0.2597 (10 epochs)
#   lr 0.05, max_sampled 50, d 128 ............................. 0.2551 (10 epochs)
#   lr 0.05, alphas 1e-5 / 1e-4 ................................ 0.2621 / 0.2561 (10 epochs)
#   lr 0.02, max_sampled 50, d 64, both features, weight 1.0 ... 0.2734 (70 epochs)
#   the same with feature weight 0.3 ........................... 0.2773 (60 epochs)  <- chosen
#   weight 1.0: item features only 0.2711, user features only 0.2617, no side features 0.2707
#   lr 0.01, d 128: 0.2753 (150 epochs); lr 0.02, d 128, alphas 1e-6: 0.2720 (30 epochs)
CHOSEN = Config(no_components=64, learning_rate=0.02, max_sampled=50, epochs=60,
                user_feature_weight=0.3, item_feature_weight=0.3)


# ---------------------------------------------------------------- data


def load_ratings(path: Path) -> pd.DataFrame:
    """u.data in file order (the order the seeded split's random numbers are drawn in)."""
    return pd.read_csv(path / "u.data", sep="\t", names=[USER, ITEM, RATING, TIMESTAMP],
                       dtype={USER: np.int64, ITEM: np.int64, RATING: np.float64, TIMESTAMP: np.int64})


def load_users(path: Path) -> pd.DataFrame:
    return pd.read_csv(path / "u.user", sep="|", names=[USER, "age", "gender", "occupation", "zip"],
                       dtype={USER: np.int64, "age": np.int64, "gender": str, "occupation": str, "zip": str})


def load_items(path: Path) -> pd.DataFrame:
    columns = [ITEM, "title", "release", "video_release", "url", *GENRES]
    return pd.read_csv(path / "u.item", sep="|", names=columns, encoding="latin-1",
                       dtype={ITEM: np.int64, "title": str, "release": str})


def stratified_split(data: pd.DataFrame, ratio: float = 0.75, min_rating: int = 1, filter_by: str = "item",
                     seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`python_stratified_split` of recommenders, reimplemented step for step.

    Seeds numpy's global generator, draws one uniform number per row in row order, sorts by
    (split column, random number), ranks each row within its group as (position + 1) / group size,
    and sends rank <= ratio to train, rank > ratio to test.
    """
    if filter_by not in ("user", "item"):
        raise ValueError("filter_by should be either 'user' or 'item'.")
    if min_rating < 1:
        raise ValueError("min_rating should be integer and larger than or equal to 1.")
    column = USER if filter_by == "user" else ITEM
    data = data.copy()
    if min_rating > 1:
        other = ITEM if filter_by == "user" else USER
        counts = data.groupby(column)[other].transform("count")
        data = data[counts >= min_rating]
    np.random.seed(seed)
    data["random"] = np.random.rand(data.shape[0])
    data = data.sort_values([column, "random"])
    groups = data.groupby(column)
    data["count"] = groups[column].transform("count")
    data["rank"] = groups.cumcount() + 1
    data["rank"] = data["rank"] / data["count"]
    data = data.drop(columns=["count", "random"])
    thresholds = np.cumsum([ratio, 1 - ratio])
    train = data[data["rank"] <= thresholds[0]].drop(columns="rank")
    test = data[(data["rank"] <= thresholds[1]) & (data["rank"] > thresholds[0])].drop(columns="rank")
    return train, test


@dataclass(frozen=True)
class World:
    users: IdIndex
    items: IdIndex
    user_features: sp.csr_matrix
    user_feature_names: tuple[str, ...]
    item_features: sp.csr_matrix
    item_feature_names: tuple[str, ...]


def build_world(path: Path) -> World:
    """Every user of u.user and every movie of u.item (the catalogue), with their side features."""
    users = load_users(path)
    items = load_items(path)
    age_band = pd.cut(users["age"], AGE_BANDS, right=False, labels=[
        f"age:{low}-{high - 1}" for low, high in itertools.pairwise(AGE_BANDS)]).astype(str)
    user_frame = pd.get_dummies(pd.DataFrame({
        "age": age_band,
        "gender": "gender:" + users["gender"],
        "occupation": "occupation:" + users["occupation"],
    }), prefix="", prefix_sep="")
    item_frame = items[GENRES].astype(np.float32).rename(columns=lambda genre: f"genre:{genre}")
    return World(
        users=IdIndex(users[USER].astype(str)),
        items=IdIndex(items[ITEM].astype(str)),
        user_features=sp.csr_matrix(user_frame.to_numpy(dtype=np.float32)),
        user_feature_names=tuple(user_frame.columns),
        item_features=sp.csr_matrix(item_frame.to_numpy(dtype=np.float32)),
        item_feature_names=tuple(item_frame.columns),
    )


def interaction_matrix(world: World, ratings: pd.DataFrame) -> sp.csr_matrix:
    """Binary user x item matrix: every rating is a positive (the protocol counts all as relevant)."""
    rows = world.users.index_of_strict(ratings[USER].astype(str), "user")
    cols = world.items.index_of_strict(ratings[ITEM].astype(str), "item")
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                           shape=(len(world.users), len(world.items)))
    matrix.data[:] = 1.0
    return matrix


def training_matrices(world: World, train: sp.csr_matrix, config: Config) -> TrainingMatrices:
    empty_users = sp.csr_matrix((len(world.users), 0), dtype=np.float32)
    empty_items = sp.csr_matrix((len(world.items), 0), dtype=np.float32)
    return TrainingMatrices(
        users=world.users,
        items=world.items,
        interactions=train.tocoo(),
        user_features=world.user_features if config.user_features else empty_users,
        user_feature_names=world.user_feature_names if config.user_features else (),
        item_features=world.item_features if config.item_features else empty_items,
        item_feature_names=world.item_feature_names if config.item_features else (),
    )


def make_model(config: Config, threads: int, seed: int) -> LightFMHybrid:
    return LightFMHybrid(
        no_components=config.no_components, loss=config.loss, learning_rate=config.learning_rate,
        item_alpha=config.item_alpha, user_alpha=config.user_alpha, max_sampled=config.max_sampled,
        epochs=config.epochs, num_threads=threads, random_state=seed,
        user_feature_weight=config.user_feature_weight, item_feature_weight=config.item_feature_weight,
    )


# ---------------------------------------------------------------- evaluation


def recommend(model: LightFMHybrid, data: TrainingMatrices, seen: sp.csr_matrix,
              k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item indices and scores for every user, seen (train) items excluded."""
    users = np.arange(data.n_users)
    factors = model.user_factors(users, data.user_features)
    return top_k(factors, model.item_factors(), k, Eligibility(seen=seen))


def evaluate(recommended: np.ndarray, truth: sp.csr_matrix, k: int = K) -> dict[str, float]:
    """The protocol's four figures over users with at least one test item (all get predictions)."""
    return {
        "map": mean_over_users(average_precision_at_k(recommended, truth, k)),
        "ndcg@10": mean_over_users(ndcg_at_k(recommended, truth, k)),
        "precision@10": mean_over_users(precision_at_k(recommended, truth, k)),
        "recall@10": mean_over_users(recall_at_k(recommended, truth, k)),
    }


def reference_metrics(test: pd.DataFrame, predictions: pd.DataFrame, k: int = K) -> dict[str, float]:
    """The published formulas computed directly on frames (user, item[, rank]), as an independent check."""
    common = set(test[USER]) & set(predictions[USER])
    truth = test[test[USER].isin(common)]
    top = predictions[predictions[USER].isin(common)].sort_values([USER, "rank"]).groupby(USER).head(k)
    hits = top.merge(truth[[USER, ITEM]], on=[USER, ITEM], how="inner").sort_values([USER, "rank"])
    n_users = len(common)
    actual = truth.groupby(USER).size().rename("actual")
    per_user = hits.groupby(USER).agg(hit=("rank", "size")).join(actual, how="right").fillna({"hit": 0})
    hits = hits.assign(position=hits.groupby(USER).cumcount() + 1)
    hits = hits.assign(precision_at_hit=hits["position"] / hits["rank"], gain=1.0 / np.log2(1 + hits["rank"]))
    per_user = per_user.join(hits.groupby(USER)[["precision_at_hit", "gain"]].sum(), how="left").fillna(0.0)
    ideal = per_user["actual"].clip(upper=k).map(lambda n: (1.0 / np.log2(np.arange(2, n + 2))).sum())
    return {
        "map": float((per_user["precision_at_hit"] / per_user["actual"]).sum() / n_users),
        "ndcg@10": float((per_user["gain"] / ideal).sum() / n_users),
        "precision@10": float((per_user["hit"] / k).sum() / n_users),
        "recall@10": float((per_user["hit"] / per_user["actual"]).sum() / n_users),
    }


def recommendations_frame(world: World, indices: np.ndarray, scores: np.ndarray,
                          users: np.ndarray | None = None) -> pd.DataFrame:
    """Contract recommendation rows (user_id, rank, content_id, score) for the given user rows."""
    users = np.arange(indices.shape[0]) if users is None else users
    rows, ranks = np.nonzero(indices[users] >= 0)
    chosen = indices[users][rows, ranks]
    return pd.DataFrame({
        "user_id": world.users.id_of(users[rows]).astype(str),
        "rank": (ranks + 1).astype(np.int64),
        "content_id": world.items.id_of(chosen).astype(str),
        "score": scores[users][rows, ranks].astype(np.float64),
    })


def fit_and_score(world: World, train_frame: pd.DataFrame, eval_frame: pd.DataFrame, config: Config,
                  threads: int, seed: int, checkpoints: tuple[int, ...] = ()) -> dict[int, dict[str, float]]:
    """Fit on `train_frame`, evaluate on `eval_frame` after the epochs listed (and at the end)."""
    train = interaction_matrix(world, train_frame)
    truth = interaction_matrix(world, eval_frame)
    data = training_matrices(world, train, config)
    results: dict[int, dict[str, float]] = {}

    def on_epoch(epoch: int, model: LightFMHybrid) -> None:
        if epoch in checkpoints:
            results[epoch] = evaluate(recommend(model, data, train)[0], truth)

    model = make_model(config, threads, seed).fit(data, callback=on_epoch)
    results[config.epochs] = evaluate(recommend(model, data, train)[0], truth)
    return results


# ---------------------------------------------------------------- search


SEARCH_CONFIGS = [  # one factor at a time around LightFM's usual settings
    Config(learning_rate=0.05, max_sampled=10, epochs=100),
    Config(learning_rate=0.05, max_sampled=50, epochs=60),
    Config(learning_rate=0.05, max_sampled=100, epochs=60),
    Config(learning_rate=0.05, max_sampled=50, no_components=128, epochs=60),
    Config(learning_rate=0.05, max_sampled=10, item_alpha=1e-5, user_alpha=1e-5, epochs=60),
    Config(learning_rate=0.05, max_sampled=10, item_alpha=1e-4, user_alpha=1e-4, epochs=60),
    Config(learning_rate=0.02, max_sampled=50, epochs=150),
    Config(learning_rate=0.02, max_sampled=50, epochs=100, user_feature_weight=0.3, item_feature_weight=0.3),
    Config(learning_rate=0.02, max_sampled=50, epochs=100, user_features=False),
    Config(learning_rate=0.02, max_sampled=50, epochs=100, item_features=False),
    Config(learning_rate=0.02, max_sampled=50, epochs=100, user_features=False, item_features=False),
    Config(learning_rate=0.01, max_sampled=50, no_components=128, epochs=150),
    Config(learning_rate=0.02, max_sampled=50, no_components=128, item_alpha=1e-6, user_alpha=1e-6,
           epochs=120),
]
SEARCH_EVERY = 10


def search(path: Path, threads: int, seed: int) -> Config:
    """Fit each of SEARCH_CONFIGS on 75% of train, score nDCG@10 on the other 25% every 10 epochs."""
    world = build_world(path)
    train, _ = stratified_split(load_ratings(path), ratio=0.75, min_rating=1, filter_by="item", seed=42)
    fit_part, validation = stratified_split(train, ratio=0.75, min_rating=1, filter_by="item", seed=7)
    print(f"validation split from train only: {len(fit_part)} fit ratings, {len(validation)} validation")
    best: tuple[float, Config] | None = None
    for config in SEARCH_CONFIGS:
        checkpoints = tuple(range(SEARCH_EVERY, config.epochs + 1, SEARCH_EVERY))
        started = time.perf_counter()
        results = fit_and_score(world, fit_part, validation, config, threads, seed, checkpoints)
        for epoch, figures in sorted(results.items()):
            candidate = replace(config, epochs=epoch)
            print(f"  {candidate}: " + "  ".join(f"{name}={value:.4f}" for name, value in figures.items()),
                  flush=True)
            if best is None or figures["ndcg@10"] > best[0]:
                best = (figures["ndcg@10"], candidate)
        logger.info("setting done in %.1fs", time.perf_counter() - started)
    if best is None:
        raise RuntimeError("SEARCH_CONFIGS is empty")
    print(f"best on validation (nDCG@10 {best[0]:.4f}): {best[1]}")
    return best[1]


# ---------------------------------------------------------------- main


def run(path: Path, config: Config, threads: int, seed: int, json_out: Path | None,
        recs_out: Path | None) -> dict[str, float]:
    ratings = load_ratings(path)
    world = build_world(path)
    started = time.perf_counter()
    train_frame, test_frame = stratified_split(ratings, ratio=0.75, min_rating=1, filter_by="item", seed=42)
    train = interaction_matrix(world, train_frame)
    truth = interaction_matrix(world, test_frame)
    data = training_matrices(world, train, config)
    model = make_model(config, threads, seed).fit(data)
    fitted = time.perf_counter()
    indices, scores = recommend(model, data, train)
    ranked = time.perf_counter()

    test_users = world.users.index_of_strict(np.unique(test_frame[USER].astype(str)), "user")
    figures = evaluate(indices[test_users], truth[test_users])
    predictions = recommendations_frame(world, indices, scores)
    check = reference_metrics(
        test_frame.assign(**{USER: test_frame[USER].astype(str), ITEM: test_frame[ITEM].astype(str)}),
        predictions.rename(columns={"user_id": USER, "content_id": ITEM}),
    )
    for name, value in figures.items():
        if not np.isclose(value, check[name], rtol=0, atol=1e-9):
            raise RuntimeError(f"{name}: recsys.metrics gives {value}, the reference formula {check[name]}")
    leaked = predictions.merge(train_frame.astype({USER: str, ITEM: str}).rename(
        columns={USER: "user_id", ITEM: "content_id"}), on=["user_id", "content_id"])
    if len(leaked):
        raise RuntimeError(f"{len(leaked)} recommended items were rated in train: the seen filter failed")

    print(f"MovieLens 100k, stratified split by item (ratio 0.75, seed 42): {len(train_frame)} train, "
          f"{len(test_frame)} test ratings, {len(test_users)} test users, {len(world.items)} movies")
    print(f"model: LightFM hybrid {config}")
    print(f"fit {fitted - started:.1f}s ({threads} threads), top-{K} for {len(world.users)} users "
          f"{ranked - fitted:.2f}s")
    print()
    print(f"| {'algorithm':<26} | {'MAP':>8} | {'nDCG@10':>8} | {'P@10':>8} | {'R@10':>8} |")
    print(f"|{'-' * 28}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    ours = (figures["map"], figures["ndcg@10"], figures["precision@10"], figures["recall@10"])
    print(f"| {'Qianmian (LightFM hybrid)':<26} | " + " | ".join(f"{v:>8.6f}" for v in ours) + " |")
    for name, *published in PUBLISHED:
        print(f"| {name:<26} | " + " | ".join(f"{v:>8.6f}" for v in published) + " |")
    best = PUBLISHED[0]
    beaten = all(o > p for o, p in zip(ours, best[1:], strict=True))
    print()
    print(f"beats every published row on all four metrics: {'yes' if beaten else 'no'}")

    if json_out is not None:
        write_text(json_out, json.dumps(figures, indent=2) + "\n")
    if recs_out is not None:
        write_frame_atomically(predictions, recs_out)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", type=Path, default=Path("../shared/data/ml-100k"),
                        help="MovieLens 100k folder (u.data, u.user, u.item)")
    parser.add_argument("--json", type=Path, help="write {map, ndcg@10, precision@10, recall@10} here")
    parser.add_argument("--recs-out", type=Path,
                        help="write top-10 per user as a recommendation file (.csv, or .parquet)")
    parser.add_argument("--threads", type=int, default=1,
                        help="LightFM training threads (default 1: bit-for-bit repeatable; 2 is faster)")
    parser.add_argument("--seed", type=int, default=42, help="model seed (default 42)")
    parser.add_argument("--search", action="store_true",
                        help="rerun the hyper-parameter search on a validation split of train (slow)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not (args.path / "u.data").is_file():
        print(f"MovieLens 100k not found at {args.path} (expected u.data there): pass --path",
              file=sys.stderr)
        return 2
    config = search(args.path, args.threads, args.seed) if args.search else CHOSEN
    run(args.path, config, args.threads, args.seed, args.json, args.recs_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
