"""How fast `recsys synth` writes a world, beside a plain-Parquet baseline measured in the same run.

    .venv/bin/python benchmarks/synth_speed.py                  # 100k cardholders x 90 days
    .venv/bin/python benchmarks/synth_speed.py --users 1000000  # the million-cardholder check

Each measurement runs in its own child process, which reports its wall time and peak resident
memory (ru_maxrss), so the figures are not mixed up with this parent. The baseline writes the same
number of rows per table, with the same column types and row-group sizes, filled with plain random
values: the cost of just producing and writing that much Parquet on this machine. The ratio
generator / baseline is what to compare across machines (absolute times are noisy on shared hosts).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS_100K = 120.0


def _child_generate(args: argparse.Namespace) -> dict:
    from worlds import WorldConfig, generate_world

    started = time.perf_counter()
    summary = generate_world(
        WorldConfig(users=args.users, items=args.items, days=args.days, seed=args.seed), Path(args.out)
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": summary.rows,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "oracle_top1": summary.oracle_top1,
        "popular_top1": summary.popular_top1,
        "truth_mb": summary.truth.stat().st_size / 2**20,
        "data_mb": sum(p.stat().st_size for p in summary.out.iterdir()) / 2**20,
    }


def _random_column(rng, field, n: int):
    import numpy as np
    import pyarrow as pa

    kind = field.type
    if pa.types.is_string(kind):
        vocabulary = pa.array([f"v{i:010x}" for i in rng.integers(0, 2**40, 50_000)])
        return vocabulary.take(pa.array(rng.integers(0, len(vocabulary), n)))
    if pa.types.is_timestamp(kind):
        return pa.array(rng.integers(1_780_000_000, 1_790_000_000, n) * 1_000_000).view(kind)
    if pa.types.is_date(kind):
        return pa.array(rng.integers(18_000, 20_000, n).astype(np.int32)).view(kind)
    if pa.types.is_boolean(kind):
        return pa.array(rng.random(n) < 0.5)
    if pa.types.is_integer(kind):
        return pa.array(rng.integers(0, 100, n).astype(kind.to_pandas_dtype()))
    return pa.array(np.round(rng.lognormal(4.0, 1.0, n), 2))


def _child_baseline(args: argparse.Namespace) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from worlds.generator import block_size
    from worlds.tables import SCHEMAS

    rows = json.loads(args.rows)
    blocks = max(1, -(-args.users // block_size(args.days)))
    rng = np.random.default_rng(0)
    out = Path(args.out)
    out.mkdir(parents=True)
    started = time.perf_counter()
    for name, total in rows.items():
        schema = SCHEMAS[name]
        with pq.ParquetWriter(out / f"{name}.parquet", schema, compression="snappy") as writer:
            per_block = -(-total // blocks) if name != "content" else total
            written = 0
            while written < total:
                n = min(per_block, total - written)
                writer.write_table(pa.table([_random_column(rng, f, n) for f in schema], schema=schema))
                written += n
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _run_child(mode: str, **options) -> dict:
    command = [sys.executable, __file__, "--child", mode]
    for key, value in options.items():
        command += [f"--{key}", str(value)]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{completed.stderr}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None, help="Where to write (default: a temp dir).")
    parser.add_argument("--child", choices=("generate", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--rows", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "generate":
        print(json.dumps(_child_generate(args)))
        return
    if args.child == "baseline":
        print(json.dumps(_child_baseline(args)))
        return

    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="synth-bench-", dir=args.workdir))
    try:
        sizes = {"users": args.users, "items": args.items, "days": args.days, "seed": args.seed}
        generated = _run_child("generate", out=workdir / "world", **sizes)
        baseline = _run_child("baseline", out=workdir / "baseline", users=args.users,
                              rows=json.dumps(generated["rows"]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    total_rows = sum(generated["rows"].values())
    print(f"recsys synth: {args.users:,} cardholders x {args.days} days, {args.items} items, "
          f"seed {args.seed}")
    for name, count in generated["rows"].items():
        print(f"  {name:<14}{count:>14,} rows")
    print(f"  {'total':<14}{total_rows:>14,} rows")
    print(f"generator: {generated['seconds']:8.1f} s  {total_rows / generated['seconds']:>12,.0f} rows/s  "
          f"peak RSS {generated['peak_rss_mb']:,.0f} MB  (data {generated['data_mb']:,.0f} MB, "
          f"truth {generated['truth_mb']:,.0f} MB)")
    print(f"baseline:  {baseline['seconds']:8.1f} s  {total_rows / baseline['seconds']:>12,.0f} rows/s  "
          f"peak RSS {baseline['peak_rss_mb']:,.0f} MB  (same rows and types, random values, pyarrow only)")
    print(f"ratio generator / baseline: {generated['seconds'] / baseline['seconds']:.2f}x")
    print(f"top-1 expected open rate: oracle {generated['oracle_top1']:.3f} vs most popular "
          f"{generated['popular_top1']:.3f}")
    if args.users == 100_000 and args.days == 90:
        verdict = "within" if generated["seconds"] <= TARGET_SECONDS_100K else "OVER"
        print(f"target: <= {TARGET_SECONDS_100K:.0f} s for 100k x 90 days: {verdict}")


if __name__ == "__main__":
    main()
