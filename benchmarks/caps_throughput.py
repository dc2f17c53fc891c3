"""Cap decisions per second on Redis, beside raw pipelined commands of the same batch shape.

    .venv/bin/python benchmarks/caps_throughput.py                   # 100k cardholders, batches of 1,000
    .venv/bin/python benchmarks/caps_throughput.py --users 20000 --cluster

Policy: the shipped default plus a realistic extra rule set (a rolling 2-per-7-days limit,
2 promotions a week, 1 dining-tagged push in 3 days, a campaign throttle). Each cardholder asks
about 5 ranked candidates (mixed kinds, tags and campaigns), in a time zone drawn from 6.

Phases, each over every cardholder in batches (one pipelined EVALSHA per cardholder):
  1. history: reserve + confirm at three past dates, so each cardholder has a realistic state
  2. decide: decisions only (the ranking API's "what may I send")
  3. reserve: decide and reserve the first allowed candidate
Baselines in the same run, same batch shape, same keys: pipelined HINCRBY (one write per
cardholder, like `redis-benchmark -P`) and pipelined HGETALL of the real cap keys (the raw read a
decision needs). Reports bytes per cardholder (MEMORY USAGE) and deletes every key it wrote.
Uses RECSYS_REDIS_URL (default redis://127.0.0.1:6379/15), or an embedded server if none answers.
"""

from __future__ import annotations

import argparse
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


def timed_batches(function, items, batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        function(items[start : start + batch])
    return time.perf_counter() - started


def evalsha_usec(client) -> float | None:
    stats = client.info("commandstats").get("cmdstat_evalsha")
    return None if stats is None else float(stats["usec"]), int(stats["calls"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000, help="cardholders (default 100000)")
    parser.add_argument("--batch", type=int, default=1000, help="cardholders per pipelined batch")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--cluster", action="store_true", help="start a 3-node embedded Redis Cluster instead"
    )
    args = parser.parse_args()

    import redis

    from recsys.caps.decisions import PushStatus
    from recsys.caps.redis_engine import RedisCapEngine
    from recsys.embedded_redis import redis_answers, start_embedded_redis

    url = os.environ.get("RECSYS_REDIS_URL", "redis://127.0.0.1:6379/15")
    servers = []
    if args.cluster:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from caps.conftest import _cluster_port, _create_cluster, _wait_ok

        rng = random.Random()
        for _ in range(3):
            servers.append(start_embedded_redis(_cluster_port(rng), ["--cluster-enabled", "yes"]))
        _create_cluster([s.port for s in servers])
        _wait_ok([s.port for s in servers])
        url = servers[0].url
    elif not redis_answers(url):
        servers.append(start_embedded_redis())
        url = servers[0].url
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    policy = build_policy()
    engine = RedisCapEngine.from_url(url, policy, prefix=prefix, cluster=args.cluster, timeout=30)
    client = engine._client
    print(f"Redis {url} ({'cluster' if args.cluster else 'single'}), prefix {prefix}")
    print(f"{args.users:,} cardholders x 5 candidates, batches of {args.batch:,}; policy {policy.version}:")
    print(policy.summary())

    now = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    figures = {}
    try:
        # 1. history: three past reserve+confirm rounds
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
            print(f"history round {round_no + 1}: {args.users / seconds:,.0f} reserve+confirm/s")

        # 2. decide only
        decide_requests = build_requests(args.users, args.seed + 10, False, 10)
        before = evalsha_usec(client) if not args.cluster else None
        seconds = timed_batches(
            lambda chunk: engine.decide_batch(chunk, now=now), decide_requests, args.batch
        )
        after = evalsha_usec(client) if not args.cluster else None
        figures["decide"] = args.users / seconds
        if before and after:
            figures["lua_usec"] = (after[0] - before[0]) / max(after[1] - before[1], 1)

        # 3. decide + reserve
        reserve_requests = build_requests(args.users, args.seed + 20, True, 20)
        seconds = timed_batches(
            lambda chunk: engine.decide_batch(chunk, now=now), reserve_requests, args.batch
        )
        figures["reserve"] = args.users / seconds
        sample = engine.decide_batch(reserve_requests[:1000], now=now + timedelta(minutes=1))
        allowed = sum(1 for d in sample if d.first_allowed is not None)

        # baselines: same keys, same batch shape
        keys = [engine.user_key(r.user_id) for r in decide_requests]

        def raw(command: str):
            def run(chunk):
                if args.cluster:
                    engine._pipeline(
                        [(command, key, *(("n", 1) if command == "HINCRBY" else ())) for key in chunk]
                    )
                    return
                pipe = client.pipeline(transaction=False)
                for key in chunk:
                    if command == "HINCRBY":
                        pipe.hincrby(key, "n", 1)
                    else:
                        pipe.hgetall(key)
                pipe.execute()

            return run

        figures["hgetall"] = args.users / timed_batches(raw("HGETALL"), keys, args.batch)
        figures["hincrby"] = args.users / timed_batches(raw("HINCRBY"), keys, args.batch)
        for key_start in range(0, len(keys), 1000):
            pipe = client.pipeline(transaction=False) if not args.cluster else None
            if pipe is None:
                for key in keys[key_start : key_start + 1000]:
                    client.hdel(key, "n")
            else:
                for key in keys[key_start : key_start + 1000]:
                    pipe.hdel(key, "n")
                pipe.execute()

        sizes = [engine.memory_usage(r.user_id) for r in decide_requests[: min(2000, args.users)]]
        figures["bytes_mean"] = statistics.fmean(sizes)
        figures["bytes_p50"] = statistics.median(sizes)
        figures["bytes_max"] = max(sizes)
        records = [len(engine.load_record(r.user_id).pushes) for r in decide_requests[:200]]
    finally:
        deleted = 0
        nodes = client.get_primaries() if args.cluster else [None]
        for node in nodes:
            conn = client.get_redis_connection(node) if node is not None else client
            batch = []
            for key in conn.scan_iter(match=f"*{prefix}*", count=5000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += conn.unlink(*batch) if node is None else sum(conn.unlink(k) for k in batch)
                    batch = []
            if batch:
                deleted += conn.unlink(*batch) if node is None else sum(conn.unlink(k) for k in batch)
        engine.close()
        for server in servers:
            server.stop()
        print(f"cleaned up {deleted:,} keys")

    print()
    print(f"{'measurement':<52}{'per second':>14}")
    print(f"{'cap decisions, decide only (5 candidates each)':<52}{figures['decide']:>14,.0f}")
    print(f"{'cap decisions + reservation':<52}{figures['reserve']:>14,.0f}")
    print(f"{'baseline: pipelined HGETALL of the same keys':<52}{figures['hgetall']:>14,.0f}")
    print(f"{'baseline: pipelined HINCRBY (redis-benchmark -P)':<52}{figures['hincrby']:>14,.0f}")
    print(
        f"decide / HGETALL = {figures['decide'] / figures['hgetall']:.2f}; "
        f"decide / HINCRBY = {figures['decide'] / figures['hincrby']:.2f}"
    )
    if "lua_usec" in figures:
        print(f"server time per decision script: {figures['lua_usec']:.1f} us (INFO commandstats)")
    print(
        f"allowed in a sample after the run: {allowed}/1000; push records per cardholder "
        f"(mean) {statistics.fmean(records):.2f}"
    )
    print(
        f"bytes per cardholder (MEMORY USAGE): mean {figures['bytes_mean']:.0f}, "
        f"median {figures['bytes_p50']:.0f}, max {figures['bytes_max']}"
    )
    verdict = "meets" if figures["decide"] >= TARGET_DECISIONS_PER_SECOND else "BELOW"
    print(f"target >= {TARGET_DECISIONS_PER_SECOND:,} decisions/s: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
