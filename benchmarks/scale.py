"""Offline jobs at scale: validate, train, publish and recommend per world size, single-process
beside Dask (1 and 2 LocalCluster workers) in the same run, with wall time and peak RSS per process.

Each stage runs the `recsys` command in a subprocess; its process tree (Dask's nanny and worker
processes included) is sampled every 0.1 s with psutil. `peak proc` is the largest RSS any one
process reached, `peak tree` the largest sum over the tree. Per-million figures divide by the world
size.

Rows per world: validate as the whole load (`load_dataset`, the baseline), streamed in one process
(`recsys validate`) and on 2 Dask workers (`--dask`); train on every cardholder (the baseline) and on
a seeded sample of `--sample` of them (`--sample-users`), in one process and with its streamed pass
on 1 and 2 Dask workers (`--dask`); publish and recommend single-process (the
baseline) and on 1 and 2 Dask workers, each worker reading only its buckets of cardholders.

    .venv/bin/python benchmarks/scale.py                          # 100k and 300k cardholders
    .venv/bin/python benchmarks/scale.py --users 20000,50000 --days 30
    .venv/bin/python benchmarks/scale.py --users 1000000,3000000  # the sizing runs (hours)
    # worlds generated once (`recsys synth --seed 7`) and reused; only some stages and modes
    .venv/bin/python benchmarks/scale.py --world var/scale/w1m --no-full-train \
        --sample 0.075 --modes "single,dask 1w,dask 2w"
    # every stage on 2 workers only (the sampled fit's `train --dask` writes the bundle)
    .venv/bin/python benchmarks/scale.py --world var/scale/w3m --no-full-train \
        --sample 0.025 --modes "dask 2w"
    # the sampled fit with its streamed pass in one process, then on 2 workers (`train --dask`)
    .venv/bin/python benchmarks/scale.py --world var/scale/w300k --stages train --no-full-train \
        --sample 0.02 --modes "single,dask 2w"
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.demo_keys import delete_prefix  # noqa: E402

RECSYS = str(Path(sys.executable).with_name("recsys"))
FAST_TRAINING = """
model:
  params: {epochs: 3, no_components: 32, num_threads: 1}
"""


@dataclass(frozen=True)
class Measure:
    seconds: float
    peak_process_mb: float
    peak_tree_mb: float
    stdout: str
    cpu_seconds: float = 0.0  # user + system of the whole tree
    load: float = 0.0  # the machine's 1-minute load average, averaged over the run


def run(command: list[str], env: dict[str, str]) -> Measure:
    """Run `command`, sampling the RSS of its process tree until it exits."""
    started, cpu_before = time.perf_counter(), _children_cpu()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    root = psutil.Process(proc.pid)
    peak_process = peak_tree = 0
    loads, cpu = [], {}
    while proc.poll() is None:
        loads.append(os.getloadavg()[0])
        try:
            tree = [root, *root.children(recursive=True)]
            sizes = []
            for member in tree:
                try:
                    sizes.append(member.memory_info().rss)
                    times = member.cpu_times()
                    cpu[member.pid] = times.user + times.system
                except psutil.Error:
                    pass
        except psutil.Error:
            sizes = []
        if sizes:
            peak_process = max(peak_process, max(sizes))
            peak_tree = max(peak_tree, sum(sizes))
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{stdout}\n{stderr[-4000:]}")
    # the exact count of reaped descendants; a process its parent did not wait for (a Dask worker
    # outliving its nanny) is only seen by the sampling, which misses its last 0.1 s
    cpu_seconds = max(_children_cpu() - cpu_before, sum(cpu.values()))
    return Measure(seconds, peak_process / 2**20, peak_tree / 2**20, stdout, cpu_seconds,
                   sum(loads) / max(1, len(loads)))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train_stages(stdout: str) -> dict[str, float]:
    """Wall seconds per stage from `recsys train`'s output."""
    return {match[1]: float(match[2]) for match in re.finditer(r"^  (\S.*?)\s{2,}([\d.]+) s$", stdout, re.M)}


def drop_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        delete_prefix(client, prefix)
    finally:
        client.close()


def _mode_wanted(stage: str, mode: str, modes: list[str] | None) -> bool:
    """Every mode without `modes`; a train row by its placement: on Dask ("sample 5k dask 2w") when its
    "dask 2w" is asked for, in one process ("single", "sample 5k") when "single" is."""
    if modes is None or mode in modes:
        return True
    if stage != "train":
        return False
    on_dask = re.search(r"dask \d+w$", mode)
    return (on_dask[0] if on_dask else "single") in modes


def world_rows(users: int, days: int, work: Path, redis_url: str, env: dict[str, str], sample: float,
               workers: list[int], full_train: bool, world: Path | None = None,
               modes: list[str] | None = None, wanted: set[str] | None = None,
               given_bundle: Path | None = None) -> list[dict]:
    """Every stage's row on one world: `world` when given (generated beforehand), else synthesised;
    only the `wanted` stages and `modes` (in that order) when given; `given_bundle` instead of training."""
    bundle, config = given_bundle or work / "bundle", work / "train.yaml"
    config.write_text(FAST_TRAINING)
    data = world or work / "world"
    if world is None:
        synth = run([RECSYS, "synth", "--out", str(data), "--users", str(users), "--days", str(days),
                     "--seed", "7"], env)
        print(f"  synth {users:,} cardholders x {days} days: {synth.seconds:.1f} s", flush=True)
    load = f"from features.loader import load_dataset; load_dataset({str(data)!r})"
    # a synthetic world's hidden truth (0.8 GB in memory per million cardholders) is an evaluation aid
    # real data lacks: training sees the world through a link with no truth beside it
    plain = work / "data"
    plain.symlink_to(Path(data).resolve(), target_is_directory=True)
    train = [RECSYS, "train", "--data", str(plain), "--config", str(config), "--no-register", "--no-track",
             "--no-progress"]
    sampled = max(1, int(users * sample))
    stages: list[tuple[str, str, list[str], dict[str, str]]] = [
        ("validate", "whole load", [sys.executable, "-c", load], {}),
        ("validate", "streamed", [RECSYS, "validate", str(data)], {}),
        ("validate", f"dask {max(workers)}w", [RECSYS, "validate", str(data), "--dask"],
         {"RECSYS_DASK_WORKERS": str(max(workers))}),
    ]
    if full_train:
        stages.append(("train", "single", [*train, "--model-out", str(bundle)], {}))
    # without the full fit, the first sampled one run provides the bundle the later stages publish
    in_process = full_train or modes is None or "single" in modes
    keep = [] if full_train else ["--model-out", str(bundle)]
    stages.append(("train", f"sample {sampled // 1000}k",
                   [*train, "--sample-users", str(sampled), *(keep if in_process else [])], {}))
    for n in workers:  # the same sample, its streamed pass on the workers
        first_on_dask = (not in_process and f"dask {n}w" in modes
                         and all(f"dask {m}w" not in modes for m in workers if m < n))
        stages.append(("train", f"sample {sampled // 1000}k dask {n}w",
                       [*train, "--sample-users", str(sampled), "--dask", *(keep if first_on_dask else [])],
                       {"RECSYS_DASK_WORKERS": str(n)}))
    prefix = f"bench-scale-{uuid.uuid4().hex[:8]}"
    all_modes = {"single": ([], None), **{f"dask {n}w": (["--dask"], str(n)) for n in workers}}
    for mode in [mode for mode in modes or all_modes if mode in all_modes]:  # not validate's own modes
        extra, count = all_modes[mode]
        more = {"RECSYS_DASK_WORKERS": count} if count else {}
        stages.append(("publish", mode, [RECSYS, "publish", "--model", str(bundle), "--data", str(data),
                                         "--redis", redis_url, "--prefix", prefix, "--json", *extra], more))
        stages.append(("recommend", mode, [RECSYS, "recommend", "--model", str(bundle), "--data", str(data),
                                           "--out", str(work / f"recs-{mode.replace(' ', '')}.parquet"),
                                           "--no-progress", *extra], more))
    if given_bundle is not None:
        stages = [entry for entry in stages if entry[0] != "train"]
    stages = [(stage, mode, command, more) for stage, mode, command, more in stages
              if (wanted is None or stage in wanted) and _mode_wanted(stage, mode, modes)]
    rows = []
    try:
        for stage, mode, command, more in stages:
            measure = run(command, {**env, **more})
            row = {"users": users, "stage": stage, "mode": mode, "seconds": measure.seconds,
                   "s_per_million": measure.seconds / (users / 1e6),
                   "peak_process_mb": measure.peak_process_mb, "peak_tree_mb": measure.peak_tree_mb,
                   "cpu_seconds": measure.cpu_seconds, "load": measure.load}
            if stage == "publish":
                report = json.loads(measure.stdout)
                row["redis_bytes_per_user"] = report.get("redis_bytes_per_user")
            if stage == "train":  # its own per-stage wall times, as `recsys train` prints them
                row["train_stages"] = train_stages(measure.stdout)
                stages_seen = row["train_stages"].items()
                print("    " + ", ".join(f"{name} {value:.0f} s" for name, value in stages_seen), flush=True)
            rows.append(row)
            print(f"  {stage:<9} {mode:<8} {measure.seconds:8.1f} s  {row['s_per_million']:8.0f} s/M  "
                  f"peak proc {measure.peak_process_mb:7.0f} MB  tree {measure.peak_tree_mb:7.0f} MB  "
                  f"cpu {measure.cpu_seconds:8.1f} s  load {measure.load:4.1f}",
                  flush=True)
    finally:
        drop_prefix(redis_url, prefix)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", default="100000,300000", help="Comma-separated world sizes.")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--partition-size", type=int, default=None,
                        help="Cardholders per Dask partition [default: RECSYS_DASK_PARTITION_SIZE].")
    parser.add_argument("--redis", default=os.environ.get("RECSYS_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--sample", type=float, default=0.5,
                        help="Share of the cardholders the sampled training row fits.")
    parser.add_argument("--workers", default="1,2", help="Dask LocalCluster sizes to measure.")
    parser.add_argument("--no-full-train", action="store_true",
                        help="Skip training on every cardholder (the sampled fit provides the bundle).")
    parser.add_argument("--world", type=Path, action="append",
                        help="An existing world to run on instead of synthesising one (repeatable; its "
                        "size is its cardholders table's).")
    parser.add_argument("--modes", help="Comma-separated modes to run, of: whole load, streamed "
                        "(validate), single (train's sampled fit in one process, publish, recommend), "
                        "dask 1w, dask 2w [default: all].")
    parser.add_argument("--stages", default="validate,train,publish,recommend",
                        help="Comma-separated stages to run.")
    parser.add_argument("--bundle", type=Path, help="Publish and recommend this model bundle instead of "
                        "training one (the train stage is skipped).")
    parser.add_argument("--json", type=Path, help="Also write every row here.")
    args = parser.parse_args()
    sizes = [int(size) for size in args.users.split(",") if size.strip()]
    worlds: list[Path | None] = [None] * len(sizes)
    if args.world:
        from features.partitions import cardholder_count

        worlds = list(args.world)
        sizes = [cardholder_count(world) or 0 for world in worlds]
    modes = [mode.strip() for mode in args.modes.split(",")] if args.modes else None
    wanted = {stage.strip() for stage in args.stages.split(",")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="recsys-scale-") as tmp:
        env = {**os.environ, "RECSYS_HOME": str(Path(tmp) / "home")}
        env.pop("RECSYS_DASK_SCHEDULER", None)
        if args.partition_size:
            env["RECSYS_DASK_PARTITION_SIZE"] = str(args.partition_size)
        for users, world in zip(sizes, worlds, strict=True):
            print(f"world of {users:,} cardholders", flush=True)
            work = Path(tmp) / f"w{users}"
            work.mkdir()
            rows += world_rows(users, args.days, work, args.redis, env, args.sample,
                               [int(n) for n in args.workers.split(",")], not args.no_full_train, world,
                               modes, wanted, args.bundle)
            if args.json:  # what finished so far survives a run stopped part-way
                args.json.write_text(json.dumps(rows, indent=2))
    print("\n| cardholders | stage | mode | wall s | s per million | CPU s | CPU s per million | load | "
          "peak RSS per process MB | peak RSS tree MB |\n" + "|---" * 10 + "|")
    for row in rows:
        print(f"| {row['users']:,} | {row['stage']} | {row['mode']} | {row['seconds']:.1f} | "
              f"{row['s_per_million']:.0f} | {row['cpu_seconds']:.0f} | "
              f"{row['cpu_seconds'] / (row['users'] / 1e6):.0f} | {row['load']:.1f} | "
              f"{row['peak_process_mb']:.0f} | {row['peak_tree_mb']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
