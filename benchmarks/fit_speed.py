"""Fit speed: interactions processed per second by the LightFM hybrid (2 threads) and by the peer
library (implicit ALS and BPR, 2 threads) on the same data, in the same run.

Data: MovieLens 100k (binary, all ratings) when `--path` points to it, else a seeded generated matrix
(`--users`, `--items`, `--per-user` interactions each, popularity-skewed). The LightFM model is fitted
with identity features plus a few side features per user and item, as in production.
Rate = interactions x epochs (iterations) / fit seconds; best of `--repeat` fits.

Usage: .venv/bin/python benchmarks/fit_speed.py [--path ../shared/data/ml-100k] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys.matrices import TrainingMatrices  # noqa: E402
from recsys.models.base import Recommender  # noqa: E402
from recsys.models.implicit_peer import ImplicitPeer  # noqa: E402
from recsys.models.lightfm_hybrid import LightFMHybrid  # noqa: E402


def movielens(path: Path) -> TrainingMatrices:
    ratings = pd.read_csv(path / "u.data", sep="\t", names=["user", "item", "rating", "ts"])
    users = ratings["user"].to_numpy() - 1
    items = ratings["item"].to_numpy() - 1
    shape = (users.max() + 1, items.max() + 1)
    interactions = sp.coo_matrix((np.ones(len(ratings), dtype=np.float32), (users, items)), shape=shape)
    return with_side_features(interactions, seed=0)


def generated(n_users: int, n_items: int, per_user: int, seed: int) -> TrainingMatrices:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    rows = np.repeat(np.arange(n_users), per_user)
    cols = rng.choice(n_items, size=rows.size, p=popularity)
    interactions = sp.coo_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)),
                                 shape=(n_users, n_items))
    interactions.sum_duplicates()
    interactions.data[:] = 1.0
    return with_side_features(interactions, seed)


def with_side_features(interactions: sp.coo_matrix, seed: int) -> TrainingMatrices:
    rng = np.random.default_rng(seed)
    n_users, n_items = interactions.shape
    user_features = sp.random(n_users, 40, density=0.1, format="csr", random_state=rng.integers(1 << 30),
                              dtype=np.float32)
    item_features = sp.random(n_items, 20, density=0.15, format="csr", random_state=rng.integers(1 << 30),
                              dtype=np.float32)
    return TrainingMatrices.from_interactions(
        interactions, user_features=user_features, user_feature_names=tuple(f"u{i}" for i in range(40)),
        item_features=item_features, item_feature_names=tuple(f"i{i}" for i in range(20)),
    )


def rate(model: Recommender, data: TrainingMatrices, epochs: int, repeat: int) -> tuple[float, float]:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        model.fit(data)
        timings.append(time.perf_counter() - started)
    seconds = min(timings)
    return data.interactions.nnz * epochs / seconds, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", type=Path, help="MovieLens 100k folder; default: generated data")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--per-user", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--components", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.path is not None:
        data, source = movielens(args.path), f"MovieLens 100k ({args.path})"
    else:
        data = generated(args.users, args.items, args.per_user, seed=0)
        source = f"generated {args.users:,} users x {args.items:,} items"
    print(f"fit speed on {source}: {data.interactions.nnz:,} interactions, d={args.components}, "
          f"{args.epochs} epochs, {args.threads} threads, best of {args.repeat}")
    models = {
        "LightFM hybrid (WARP)": LightFMHybrid(no_components=args.components, loss="warp", epochs=args.epochs,
                                               num_threads=args.threads),
        "LightFM hybrid (BPR)": LightFMHybrid(no_components=args.components, loss="bpr", epochs=args.epochs,
                                              num_threads=args.threads),
        "implicit ALS": ImplicitPeer(algorithm="als", factors=args.components, iterations=args.epochs,
                                     num_threads=args.threads),
        "implicit BPR": ImplicitPeer(algorithm="bpr", factors=args.components, iterations=args.epochs,
                                     num_threads=args.threads),
    }
    results = {}
    print(f"| {'model':<22} | {'interactions/s':>15} | {'fit seconds':>11} |")
    print(f"|{'-' * 24}|{'-' * 17}|{'-' * 13}|")
    for name, model in models.items():
        per_second, seconds = rate(model, data, args.epochs, args.repeat)
        results[name] = {"interactions_per_second": per_second, "seconds": seconds}
        print(f"| {name:<22} | {per_second:>15,.0f} | {seconds:>11.2f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
