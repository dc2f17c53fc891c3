"""Quality against training sample size: `recsys train --sample-users` on growing samples of one
synthetic world, each model scored on the same held-out cardholders against the world's hidden truth.

For each sample: training wall time, CPU seconds and peak RSS (benchmarks/scale.py's sampler; the
training sees the world through a link with no truth beside it, as real data comes), the model's own
holdout nDCG (its time split, on the sampled cardholders), then the share of the popularity-to-oracle
gap in true top-1 open probability its top-1 closes, overall and for cardholders who never read, on
`--eval-users` cardholders drawn outside every sample (ranked from their features, as new cardholders
are; a share of 1 trains on them too). The evaluation runs in this process, apart from the measured
training, on those cardholders' rows only, so it fits in memory at a million cardholders.

    .venv/bin/python benchmarks/sample_quality.py                        # 100k cardholders x 90 days
    .venv/bin/python benchmarks/sample_quality.py --users 20000 --samples 0.1,0.5,1 --days 30
    .venv/bin/python benchmarks/sample_quality.py --world var/scale/w1m --samples 0.05,0.0125,0.025,0.1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scale import FAST_TRAINING, RECSYS, run, train_stages  # noqa: E402


def truth_of(truth, user_ids: np.ndarray):
    """`truth` restricted to `user_ids` (every per-cardholder array), in that order."""
    positions = truth.user_index(user_ids)
    values = {field.name: getattr(truth, field.name) for field in fields(truth)}
    return replace(truth, **{name: np.asarray(value)[positions] for name, value in values.items()
                             if isinstance(value, np.ndarray) and len(value) == len(truth.user_ids)})


def evaluation_rows(population: int, sizes: list[int], seed: int, users: int) -> np.ndarray:
    """Sorted cardholder-table rows of `users` cardholders outside every sample smaller than the population
    (`features.partitions.sampled_rows` with the training seed), drawn with another seed."""
    from features.partitions import sampled_rows

    outside = np.ones(population, dtype=bool)
    for size in sizes:
        if size < population:
            outside[sampled_rows(population, size, seed)] = False
    candidates = np.flatnonzero(outside)
    return np.sort(np.random.default_rng(seed + 1).choice(candidates, size=min(users, candidates.size),
                                                          replace=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--samples", default="0.05,0.1,0.25,0.5,1",
                        help="Shares of the cardholders to train on, run in this order (1 = all).")
    parser.add_argument("--eval-users", type=int, default=20_000,
                        help="Held-out cardholders every model is scored on.")
    parser.add_argument("--world", type=Path, help="An existing synthetic world (its truth beside it) "
                        "instead of synthesising one; --users and --days are then its own.")
    parser.add_argument("--bundles", type=Path, help="Keep each fitted bundle here (bundle-<users>) for "
                        "later runs, e.g. benchmarks/scale.py --bundle.")
    parser.add_argument("--json", type=Path, help="Also write every row here.")
    args = parser.parse_args()
    shares = list(dict.fromkeys(float(part) for part in args.samples.split(",") if part.strip()))
    from features.partitions import cardholder_count, partitioned, rows_dataset
    from features.timecut import parse_as_of
    from training.config import load_config
    from training.job import default_truth_path
    from training.truth import load_truth, score_recommendations

    rows = []
    with tempfile.TemporaryDirectory(prefix="recsys-sample-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "RECSYS_HOME": str(work / "home")}
        data, config = args.world or work / "world", work / "train.yaml"
        config.write_text(FAST_TRAINING)
        if args.world is None:
            synth = run([RECSYS, "synth", "--out", str(data), "--users", str(args.users), "--days",
                         str(args.days), "--seed", "7"], env)
            print(f"synth {args.users:,} cardholders x {args.days} days: {synth.seconds:.1f} s", flush=True)
        population = cardholder_count(data) or 0
        truth_path = default_truth_path(Path(data).resolve())
        if truth_path is None:
            raise SystemExit(f"{data} has no truth file beside it: give a world made by `recsys synth`")
        plain = work / "data"  # the world without its truth beside it
        plain.symlink_to(Path(data).resolve(), target_is_directory=True)
        sizes = [max(1, round(population * share)) for share in shares]
        held_out = evaluation_rows(population, sizes, load_config(config).seed, args.eval_users)
        from features.bundle_inputs import rank_dataset
        from recsys.bundle import ModelBundle

        scored = None
        for share, users in zip(shares, sizes, strict=True):
            bundle = (args.bundles or work) / f"bundle-{users}"
            train = run([RECSYS, "train", "--data", str(plain), "--config", str(config), "--model-out",
                         str(bundle), "--no-register", "--no-track", "--no-progress", "--sample-users",
                         str(users)], env)
            if scored is None:  # after the first fit, so its bundle is ready early for other runs
                with partitioned(data, work / "scratch") as parts:
                    evaluation = rows_dataset(parts, held_out)
                    as_of = parse_as_of(None, parts)
                eval_ids = evaluation.cardholders["user_id"].astype(str).to_numpy(dtype=object)
                scored = (evaluation, as_of, truth_of(load_truth(truth_path), eval_ids))
                print(f"scoring on {len(eval_ids):,} held-out cardholders of {population:,}", flush=True)
            evaluation, as_of, truth = scored
            model = ModelBundle.load(bundle)
            recommendations = rank_dataset(model, evaluation, as_of, 5)
            score = score_recommendations(recommendations, evaluation, truth).to_dict()
            holdout = {f"holdout_{key}": value for key, value in model.metrics.items()
                       if key.startswith("ndcg@") and "." not in key}
            row = {**holdout, **score, "scored_users": score.get("users"), "users": users, "share": share,
                   "train_seconds": train.seconds, "train_cpu_seconds": train.cpu_seconds,
                   "load": train.load, "train_peak_mb": train.peak_process_mb,
                   "train_stages": train_stages(train.stdout)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:  # what finished so far survives a run stopped part-way
                args.json.write_text(json.dumps(rows, indent=2))
    keys = [key for key in rows[0] if key.startswith(("holdout_", "gap_closed"))]
    print(f"\n| cardholders trained on (of {population:,}) | train wall s | train CPU s | load | "
          "train peak RSS MB | " + " | ".join(keys) + " |\n" + "|---" * (5 + len(keys)) + "|")
    for row in rows:
        print(f"| {row['users']:,} ({row['share']:.2%}) | {row['train_seconds']:.1f} | "
              f"{row['train_cpu_seconds']:.0f} | {row['load']:.1f} | {row['train_peak_mb']:.0f} | "
              + " | ".join(f"{row[key]:.4f}" for key in keys) + " |")


if __name__ == "__main__":
    main()
