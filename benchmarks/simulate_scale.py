"""`recsys caps simulate` per world size: the single process (the baseline) beside `--dask` on 1 and 2
LocalCluster workers in the same run, with wall time, peak RSS per process and of the process tree
(`benchmarks/scale.py`'s sampling), CPU seconds of the tree, and a check that every mode reports the
same counts.

    .venv/bin/python benchmarks/simulate_scale.py                        # 100k and 300k cardholders
    .venv/bin/python benchmarks/simulate_scale.py --users 20000 --days 10 --partition-size 5000
    # a world generated once (`recsys synth --seed 7`, its truth file beside it), only some modes
    .venv/bin/python benchmarks/simulate_scale.py --world var/scale/w1m --modes "single,dask 1w"
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

from benchmarks.scale import RECSYS, run  # noqa: E402
from features.partitions import cardholder_count  # noqa: E402


def counts(report: dict) -> list[dict]:
    """Each policy's whole-population counts (the floats, sums of probabilities, left out)."""
    return [{key: value for key, value in outcome["total"].items() if not isinstance(value, float)}
            for outcome in report["outcomes"]]


def world_rows(users: int, args: argparse.Namespace, work: Path, env: dict[str, str],
               world: Path | None = None) -> list[dict]:
    """Every mode's row on one world: `world` when given (generated beforehand), else synthesised."""
    data = world or work / f"world-{users}"
    if world is None:
        synth = run([RECSYS, "synth", "--out", str(data), "--users", str(users), "--days", "90", "--seed",
                     "7"], env)
        print(f"  synth {users:,} cardholders x 90 days: {synth.seconds:.1f} s", flush=True)
    modes = {"single": ([], {}), **{f"dask {n}w": (["--dask"], {"RECSYS_DASK_WORKERS": str(n)})
                                    for n in args.workers}}
    if args.modes:
        modes = {mode: modes[mode] for mode in args.modes}
    rows, baseline = [], None
    for mode, (flags, more) in modes.items():
        out = work / f"sim-{users}-{mode.replace(' ', '')}"
        command = [RECSYS, "caps", "simulate", "--data", str(data), "--policy", "default", "--days",
                   str(args.days), "--seed", "1", "--out", str(out), *flags]
        measure = run(command, {**env, **more})
        report = json.loads((out / "report.json").read_text())
        baseline = baseline or counts(report)
        row = {"users": users, "mode": mode, "seconds": measure.seconds,
               "s_per_million": measure.seconds / (users / 1e6), "peak_process_mb": measure.peak_process_mb,
               "peak_tree_mb": measure.peak_tree_mb, "same_counts": counts(report) == baseline,
               "sent": report["outcomes"][0]["total"]["sent"], "cpu_seconds": measure.cpu_seconds,
               "load": measure.load}
        rows.append(row)
        print(f"  {users:>9,} {mode:<8} {measure.seconds:8.1f} s  {row['s_per_million']:8.0f} s/M  cpu "
              f"{measure.cpu_seconds:8.1f} s  peak proc {measure.peak_process_mb:7.0f} MB  tree "
              f"{measure.peak_tree_mb:7.0f} MB  load {measure.load:5.1f}  same counts: {row['same_counts']}",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default="100000,300000", help="world sizes, comma-separated")
    parser.add_argument("--days", type=int, default=30, help="days replayed")
    parser.add_argument("--partition-size", type=int, default=50_000, help="cardholders per bucket")
    parser.add_argument("--workers", default="1,2", help="LocalCluster worker counts, comma-separated")
    parser.add_argument("--world", type=Path, help="an existing world instead of synthesising --users")
    parser.add_argument("--modes", help='only these modes, in this order, e.g. "single,dask 2w"')
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    args.workers = [int(n) for n in args.workers.split(",")]
    args.modes = [mode.strip() for mode in args.modes.split(",")] if args.modes else None
    known = ["single", *(f"dask {n}w" for n in args.workers)]
    if args.modes and (unknown := [mode for mode in args.modes if mode not in known]):
        parser.error(f"--modes {', '.join(unknown)}: not one of {', '.join(known)} (see --workers)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="simulate-scale-") as scratch:
        work = Path(scratch)
        env = {**os.environ, "RECSYS_HOME": str(work / "home"),
               "RECSYS_DASK_PARTITION_SIZE": str(args.partition_size)}
        env.pop("RECSYS_DASK_SCHEDULER", None)
        if args.world is not None:
            rows += world_rows(cardholder_count(args.world) or 0, args, work, env, args.world)
        else:
            for users in (int(n) for n in args.users.split(",")):
                rows += world_rows(users, args, work, env)
    print(f"load average at the end: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
