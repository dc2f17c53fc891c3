"""Cap decisions per second on Redis, beside raw pipelined commands of the same batch shape.

    .venv/bin/python benchmarks/caps_throughput.py                   # 100k cardholders, batches of 1,000
    .venv/bin/python benchmarks/caps_throughput.py --users 20000 --batch 500

Policy: the shipped default plus a realistic extra rule set (a rolling 2-per-7-days limit,
2 promotions a week, 1 dining-tagged push in 3 days, a campaign throttle). Each cardholder asks
about 5 ranked candidates (mixed kinds, tags and campaigns), in a time zone drawn from 6.

Phases, each over every cardholder in batches (one pipelined EVALSHA per cardholder):
  1. history: reserve + confirm at three past dates, so each cardholder has a realistic state
  2. --repeat times (default 3), each 11 minutes later than the previous (its reservations expired):
     decide: decisions only (the ranking API's "what may I send"); baseline HGETALL;
     reserve: decide and reserve the first allowed candidate; baseline HINCRBY
Baselines in the same run, interleaved with the measurements, same batch shape, same keys:
pipelined HINCRBY (one write per cardholder, like `redis-benchmark -P`) and pipelined HGETALL of
the real cap keys (the raw read a decision needs). Prints median, min, max and every repetition:
on a shared host single figures swing with the other jobs' load. Reports bytes per cardholder
(MEMORY USAGE) and deletes every key it wrote.
Uses RECSYS_BENCH_REDIS_URL (default redis://127.0.0.1:6379/14: a db of its own, so the test suite's
key scans in db 15 never walk the benchmark's keys), or a private embedded redis-server with
--embedded (or when none answers): on a shared host the embedded one measures only this run's load.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_DECISIONS_PER_SECOND = 30_000
ZONES = [
    "Asia/Shanghai",
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Singapore",
    "Europe/London",
    "America/New_York",
]


def build_policy():
    from recsys.caps.policy import default_policy, parse_policy

    document = default_policy().to_dict()
    document["version"] = "bench-1"
    document["limits"] = document["limits"] + [
        {"name": "weekly", "window": "rolling", "duration": "7d", "max": 2},
        {"name": "promotions", "window": "rolling", "duration": "7d", "max": 2, "kinds": ["promotion"]},
        {"name": "dining", "window": "rolling", "duration": "3d", "max": 1, "tags": ["dining"]},
    ]
    document["campaign_throttle"] = {
        "max": 100_000,
        "per": "1m",
        "campaigns": {"double11": {"max": 50_000, "per": "1m"}},
    }
    return parse_policy(document)


def build_requests(users: int, seed: int, reserve: bool, round_no: int):
    from recsys.caps.decisions import Candidate, CapRequest

    rng = random.Random(seed)
    kinds = ["article", "promotion", "activity", "article"]
    tags = [("dining",), ("travel",), ("dining", "weekend"), ("points",), ()]
    pool = [
        Candidate(
            f"c{i}",
            kind=kinds[i % 4],
            tags=tags[i % 5],
            campaign="double11" if i % 7 == 0 else (f"camp{i % 3}" if i % 2 else None),
        )
        for i in range(60)
    ]
    requests = []
    for index in range(users):
        candidates = tuple(rng.sample(pool, 5))
        push_id = f"b{round_no}-{index}" if reserve else None
        requests.append(CapRequest(f"ch{index:07d}", candidates, ZONES[index % len(ZONES)], reserve, push_id))
    return requests


CPU_SECONDS: list[float] = []  # this process' CPU time of each timed_batches call


def timed_batches(function, items, batch: int) -> float:
    # The inputs (100k requests) are fixtures, not engine state: keep the collector from rescanning them.
    gc.collect()
    gc.freeze()
    cpu = time.process_time()
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        function(items[start : start + batch])
    seconds = time.perf_counter() - started
    CPU_SECONDS.append(time.process_time() - cpu)
    gc.unfreeze()
    return seconds


def evalsha_usec(client) -> tuple[float, int]:
    """(total microseconds, calls) of EVALSHA so far, from INFO commandstats."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {"usec": 0, "calls": 0})
    return float(stats["usec"]), int(stats["calls"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000, help="cardholders (default 100000)")
    parser.add_argument("--batch", type=int, default=1000, help="cardholders per pipelined batch")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timed repetitions of every measurement, interleaved (default 3)",
    )
    parser.add_argument(
        "--embedded", action="store_true", help="use a private embedded redis-server (no other clients' load)"
    )
    args = parser.parse_args()

    from recsys.caps.decisions import PushStatus
    from recsys.caps.redis_engine import RedisCapEngine
    from recsys.embedded_redis import redis_answers, start_embedded_redis

    url = os.environ.get("RECSYS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    server = None
    if args.embedded or not redis_answers(url):
        server = start_embedded_redis()
        url = server.url
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    policy = build_policy()
    engine = RedisCapEngine.from_url(url, policy, prefix=prefix, timeout=30)
    client = engine._client
    print(f"Redis {url}, key prefix {prefix}")
    print(f"{args.users:,} cardholders x 5 candidates, batches of {args.batch:,}; policy {policy.version}:")
    print(policy.summary())

    now = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    figures: dict[str, list[float]] = {
        name: []
        for name in (
            "decide",
            "reserve",
            "hgetall",
            "hincrby",
            "lua_usec",
            "decide_cpu_usec",
            "reserve_cpu_usec",
        )
    }
    try:
        for round_no, days_back in enumerate((9, 5, 2)):
            when = now - timedelta(days=days_back)
            requests = build_requests(args.users, args.seed + round_no, True, round_no)

            def reserve_and_confirm(chunk, when=when):
                for decision in engine.decide_batch(chunk, now=when):
                    if decision.reservation is not None:
                        status = engine.confirm(decision.user_id, decision.reservation.push_id, now=when)
                        if status != PushStatus.CONFIRMED:
                            raise RuntimeError(f"confirm returned {status}")

            seconds = timed_batches(reserve_and_confirm, requests, args.batch)
            print(
                f"history round {round_no + 1}: {args.users / seconds:,.0f} cardholders/s (reserve + confirm)"
            )

        decide_requests = build_requests(args.users, args.seed + 10, False, 10)
        keys = [engine.user_key(r.user_id) for r in decide_requests]

        def raw(command: str):
            def run(chunk):
                pipe = client.pipeline(transaction=False)
                for key in chunk:
                    if command == "HINCRBY":
                        pipe.hincrby(key, "n", 1)
                    else:
                        pipe.hgetall(key)
                pipe.execute()

            return run

        for repetition in range(args.repeat):
            # each repetition 11 minutes later: the previous one's reservations (10m TTL) have expired
            at = now + timedelta(minutes=11 * repetition)
            before = evalsha_usec(client)
            seconds = timed_batches(
                lambda chunk, at=at: engine.decide_batch(chunk, now=at), decide_requests, args.batch
            )
            after = evalsha_usec(client)
            figures["decide"].append(args.users / seconds)
            figures["decide_cpu_usec"].append(CPU_SECONDS[-1] / args.users * 1e6)
            figures["lua_usec"].append((after[0] - before[0]) / max(after[1] - before[1], 1))
            figures["hgetall"].append(args.users / timed_batches(raw("HGETALL"), keys, args.batch))
            reserve_requests = build_requests(args.users, args.seed + 20 + repetition, True, 20 + repetition)
            seconds = timed_batches(
                lambda chunk, at=at: engine.decide_batch(chunk, now=at), reserve_requests, args.batch
            )
            figures["reserve"].append(args.users / seconds)
            figures["reserve_cpu_usec"].append(CPU_SECONDS[-1] / args.users * 1e6)
            figures["hincrby"].append(args.users / timed_batches(raw("HINCRBY"), keys, args.batch))
        for start in range(0, len(keys), 1000):
            pipe = client.pipeline(transaction=False)
            for key in keys[start : start + 1000]:
                pipe.hdel(key, "n")
            pipe.execute()

        sample = decide_requests[: min(2000, args.users)]
        sizes = [engine.memory_usage(r.user_id) for r in sample]
        stored = [size for size in sizes if size > 0]
        records = [len(engine.load_record(r.user_id).pushes) for r in sample[:500]]
    finally:
        deleted = 0
        batch = []
        for key in client.scan_iter(match=f"*{prefix}*", count=5000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.unlink(*batch)
                batch = []
        if batch:
            deleted += client.unlink(*batch)
        engine.close()
        if server is not None:
            server.stop()
        print(f"cleaned up {deleted:,} keys")

    print()
    print(f"{'measurement (per second)':<54}{'median':>10}{'min':>10}{'max':>10}   each repetition")
    rows = [
        ("cap decisions, decide only (5 candidates each)", "decide"),
        ("cap decisions + reservation", "reserve"),
        ("baseline: pipelined HGETALL of the same keys", "hgetall"),
        ("baseline: pipelined HINCRBY (redis-benchmark -P style)", "hincrby"),
    ]
    for label, name in rows:
        values = figures[name]
        each = ", ".join(f"{v:,.0f}" for v in values)
        middle = statistics.median(values)
        print(f"{label:<54}{middle:>10,.0f}{min(values):>10,.0f}{max(values):>10,.0f}   {each}")
    ratios = [d / h for d, h in zip(figures["decide"], figures["hgetall"], strict=True)]
    reserve_ratios = [r / h for r, h in zip(figures["reserve"], figures["hincrby"], strict=True)]
    print(
        f"decide / HGETALL (same repetition): {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"reserve / HINCRBY: {', '.join(f'{r:.2f}' for r in reserve_ratios)}"
    )
    lua = ", ".join(f"{v:.1f}" for v in figures["lua_usec"])
    print(f"Redis server time per decision script (INFO commandstats), each repetition: {lua} us")
    # CPU time does not count waiting for a core, so it moves less with the other jobs' load
    for name in ("decide", "reserve"):
        cpu = ", ".join(f"{v:.1f}" for v in figures[f"{name}_cpu_usec"])
        print(f"Python CPU time per cardholder ({name}), each repetition: {cpu} us")
    print(f"push records per cardholder after the run (mean): {statistics.fmean(records):.2f}")
    print(
        f"bytes per cardholder with state (MEMORY USAGE, {len(stored)} sampled): "
        f"mean {statistics.fmean(stored):.0f}, median {statistics.median(stored):.0f}, max {max(stored)}; "
        f"{len(sizes) - len(stored)} had no key"
    )
    for name in ("decide", "reserve"):
        median = statistics.median(figures[name])
        verdict = "met" if median >= TARGET_DECISIONS_PER_SECOND else "NOT met"
        print(f"target >= {TARGET_DECISIONS_PER_SECOND:,} cardholder decisions/s ({name}, median): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
