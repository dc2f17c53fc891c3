"""Quality against training sample size: `recsys train --sample-users` on growing samples of one
synthetic world, every cardholder of the world ranked by each model and scored against its hidden truth.

The row fitted on every cardholder is the baseline of the same run. For each sample: training wall time
and peak RSS (benchmarks/scale.py's sampler), then the share of the popularity-to-oracle gap in true
top-1 open probability the model's top-1 closes (`recsys score`), overall and for cardholders who never
read. Cardholders outside the sample are ranked from their features alone, as new cardholders are.

    .venv/bin/python benchmarks/sample_quality.py                        # 100k cardholders x 90 days
    .venv/bin/python benchmarks/sample_quality.py --users 20000 --samples 0.1,0.5,1 --days 30
    .venv/bin/python benchmarks/sample_quality.py --world var/scale/w1m --samples 0.025,0.05,0.1,0.2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scale import FAST_TRAINING, RECSYS, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--samples", default="0.05,0.1,0.25,0.5,1",
                        help="Shares of the cardholders to train on (1 = all: the baseline).")
    parser.add_argument("--world", type=Path, help="An existing synthetic world (its truth beside it) "
                        "instead of synthesising one; --users and --days are then its own.")
    parser.add_argument("--json", type=Path, help="Also write every row here.")
    args = parser.parse_args()
    shares = sorted({float(part) for part in args.samples.split(",") if part.strip()})
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
        else:
            from features.partitions import cardholder_count

            args.users = cardholder_count(args.world) or 0
        for share in shares:
            users = max(1, round(args.users * share))
            bundle, recs = work / f"bundle-{users}", work / f"recs-{users}.parquet"
            train = run([RECSYS, "train", "--data", str(data), "--config", str(config), "--model-out",
                         str(bundle), "--no-register", "--no-track", "--no-progress", "--sample-users",
                         str(users)], env)
            run([RECSYS, "recommend", "--model", str(bundle), "--data", str(data), "--out", str(recs),
                 "--k", "5", "--no-progress"], env)
            score = json.loads(run([RECSYS, "score", "--data", str(data), "--recs", str(recs)], env).stdout)
            row = {**score, "scored_users": score.get("users"), "users": users, "share": share,
                   "train_seconds": train.seconds, "train_peak_mb": train.peak_process_mb}
            rows.append(row)
            print(json.dumps(row), flush=True)
    keys = [key for key in rows[0] if key.startswith("gap_closed")]
    print(f"\n| cardholders trained on (of {args.users:,}) | train wall s | train peak RSS MB | "
          + " | ".join(keys) + " |\n|---|---|---|" + "---|" * len(keys))
    for row in rows:
        print(f"| {row['users']:,} ({row['share']:.0%}) | {row['train_seconds']:.1f} | "
              f"{row['train_peak_mb']:.0f} | " + " | ".join(f"{row[key]:.3f}" for key in keys) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
