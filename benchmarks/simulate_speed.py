"""Speed of `recsys caps simulate`: the vectorised replay against the reference engine, same run.

Builds (or reuses, under --work-dir) a synthetic world of --users cardholders, loads it, replays
--days days under the shipped default policy with the vectorised engine, and prints the wall time,
cardholder-days/s and the peak memory. The baseline is measured in the same run: the pure-Python
reference engine (`recsys.caps.reference`) replaying the same schedule for a --sample of the same
cardholders (each request: decide the ranked candidates, reserve and confirm the first allowed),
extrapolated to the whole population; the vectorised engine's own figure on that sample is shown
beside it. Both replays skip nothing the caps decide; the reference side leaves out the response
draws (so the ratio understates the gain).

    .venv/bin/python benchmarks/simulate_speed.py                 # 100k cardholders x 30 days
    .venv/bin/python benchmarks/simulate_speed.py --users 20000 --days 10
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def ensure_world(work: Path, users: int) -> tuple[Path, Path]:
    from worlds.generator import WorldConfig, default_truth_path, generate_world

    out = work / f"sim-world-{users}"
    truth = default_truth_path(out)
    if not (out.is_dir() and truth.is_file()):
        log(f"generating a synthetic world of {users:,} cardholders in {out}")
        generate_world(WorldConfig(users=users, items=200, days=90, seed=17), out, force=True)
    return out, truth


def reference_replay(world, policy, instants: np.ndarray) -> int:
    """The reference engine on the simulator's schedule; returns the number of requests decided."""
    from recsys.caps.decisions import Candidate
    from recsys.caps.reference import ReferenceCapEngine

    engine = ReferenceCapEngine(policy)
    items = world.items
    candidates = [
        tuple(Candidate(str(world.content_ids[i]), str(items.kinds[i]), items.tags[i],
                        bool(items.transactional[i])) for i in row if i >= 0)
        for row in world.candidates
    ]
    users = [str(user) for user in world.user_ids]
    zones = [zone or None for zone in world.timezones]
    asked = np.flatnonzero(world.opted_in & (world.candidates >= 0).any(axis=1))
    requests = 0
    for instant in instants.reshape(-1):
        now = datetime.fromtimestamp(int(instant), tz=UTC)
        for row in asked:
            decision = engine.decide(users[row], candidates[row], timezone=zones[row], now=now, reserve=True)
            if decision.reservation is not None:
                engine.confirm(users[row], decision.reservation.push_id, now=now)
            requests += 1
    return requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--sample", type=int, default=2_000,
                        help="Cardholders replayed by the reference engine.")
    parser.add_argument("--sample-days", type=int, default=3, help="Days replayed by the reference engine.")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args()

    from recsys.caps.policy import default_policy
    from simulation.replay import load_world
    from simulation.runner import ScheduleConfig, simulate_policy, slot_instants

    data, truth = ensure_world(args.work_dir, args.users)
    policy = default_policy()
    began = time.perf_counter()
    world = load_world(data, truth_path=truth)
    load_seconds = time.perf_counter() - began
    log(f"world loaded in {load_seconds:.1f} s ({world.n_users:,} cardholders, "
        f"{len(world.content_ids)} contents); peak RSS {peak_rss_mb():,.0f} MB")

    config = ScheduleConfig(days=args.days, seed=0)
    began = time.perf_counter()
    outcome = simulate_policy(world, policy, config)
    seconds = time.perf_counter() - began
    cardholder_days = world.n_users * args.days
    requests = outcome.total.attempts
    log(f"vectorised: {world.n_users:,} cardholders x {args.days} days in {seconds:.1f} s = "
        f"{cardholder_days / seconds:,.0f} cardholder-days/s, {requests / seconds:,.0f} requests/s "
        f"({outcome.total.sent:,} pushes); peak RSS {peak_rss_mb():,.0f} MB")

    sample = world.sample(args.sample, seed=1)
    empty = np.zeros(0, dtype=np.int64)
    from simulation.replay import History

    sample = replace(sample, history=History(empty, empty, empty, empty.astype(bool), empty.astype(bool)))
    sample_config = ScheduleConfig(days=args.sample_days, seed=0)
    instants, _ = slot_instants(sample, sample_config)
    began = time.perf_counter()
    reference_requests = reference_replay(sample, policy, instants)
    reference_seconds = time.perf_counter() - began
    reference_rate = reference_requests / reference_seconds
    began = time.perf_counter()
    small = simulate_policy(sample, policy, sample_config)
    vector_small_seconds = time.perf_counter() - began
    log(f"reference engine on {sample.n_users:,} cardholders x {args.sample_days} days: "
        f"{reference_requests:,} requests in {reference_seconds:.1f} s = {reference_rate:,.0f} requests/s; "
        f"vectorised on the same sample: {small.total.attempts / vector_small_seconds:,.0f} requests/s")
    extrapolated = requests / reference_rate
    print()
    print(f"{'':34}{'wall time':>12}{'cardholder-days/s':>20}{'requests/s':>14}")
    print(f"{'vectorised (measured)':34}{seconds:>11.1f}s{cardholder_days / seconds:>20,.0f}"
          f"{requests / seconds:>14,.0f}")
    print(f"{'reference engine (extrapolated)':34}{extrapolated:>11.0f}s"
          f"{cardholder_days / extrapolated:>20,.0f}{reference_rate:>14,.0f}")
    print(f"speed-up: x{extrapolated / seconds:,.0f}; target: {args.users:,} x {args.days} days <= 300 s "
          f"({'met' if seconds <= 300 else 'NOT met'}); world load {load_seconds:.1f} s; "
          f"peak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
