"""Load benchmark of the ranking API on loopback: `/v1/rank` with reserve=true against a bare endpoint.

Builds (or reuses, under --work-dir) a synthetic world of --users cardholders and a quickly trained
hybrid model, publishes it into a throw-away Redis server, starts `recsys serve` on a loopback
port and drives it with wrk (Debian package; a Lua script makes the POST bodies) or, when wrk is
missing, a bounded asyncio httpx load loop in a separate process. Prints req/s, p50 and p99 for
`/v1/rank` and for `/healthz` served by the same server in the same run (and, as a floor, for a
FastAPI POST on its own port that only validates the same body and checks the token), then the
latency of `/v1/rank/batch` with 1,000 cardholders. Only loopback traffic; every phase is bounded in time.

    .venv/bin/python benchmarks/api_load.py                # 100k cardholders, 3 x 10 s per endpoint
    .venv/bin/python benchmarks/api_load.py --users 20000 --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-scheduler-token"
ADMIN = "bench-admin-token"
PREFIX = "bench"

WRK_SCRIPT = r"""
-- Every request is formatted before the load starts (in init, which only the load thread runs), as
-- wrk's SCRIPTING notes advise for fast servers: formatting each one in request() cost wrk about
-- 7 us of CPU per request (24 instead of 17 us), CPU that the server under test shares.
local requests, count, next_request = {}, 131072, 0
init = function(args)
  local ids = {}
  for line in io.lines(os.getenv("QM_USERS")) do ids[#ids + 1] = line end
  local now, path = os.getenv("QM_NOW"), os.getenv("QM_PATH")
  local headers = {["Content-Type"] = "application/json",
                   ["Authorization"] = "Bearer " .. os.getenv("QM_TOKEN")}
  math.randomseed(tonumber(os.getenv("QM_SEED")))
  for i = 1, count do
    local id = ids[math.random(#ids)]
    local body = '{"user_id":"' .. id .. '","k":3,"reserve":true,"now":"' .. now .. '"}'
    requests[i] = wrk.format("POST", path, headers, body)
  end
end
request = function()
  next_request = next_request % count + 1
  return requests[next_request]
end
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------- world, model, publication
def ensure_world(work: Path, users: int) -> Path:
    from recsys.world.generator import WorldConfig, generate_world

    out = work / f"world-{users}"
    if not (out / "cardholders.parquet").exists():
        log(f"generating a {users:,}-cardholder world in {out}")
        generate_world(WorldConfig(users=users, items=200, days=90, seed=7), out, force=True)
    return out


def ensure_bundle(work: Path, world: Path, users: int) -> Path:
    from features.loader import load_dataset
    from features.pipeline import build_training_matrices
    from recsys.bundle import ModelBundle, item_metadata
    from recsys.models.lightfm_hybrid import LightFMHybrid

    out = work / f"bundle-{users}"
    if (out / "bundle.json").exists():
        return out
    log("training a small-epoch hybrid model for the benchmark")
    dataset = load_dataset(world)
    as_of = dataset.time_range()[1]
    matrices, builder = build_training_matrices(dataset, as_of)
    model = LightFMHybrid(no_components=32, epochs=3, num_threads=2).fit(matrices)
    ModelBundle(model=model, users=matrices.users, items=matrices.items, feature_state=builder.to_dict(),
                item_meta=item_metadata(dataset.content, matrices.items),
                user_segments=matrices.user_segments, as_of=as_of).save(out)
    return out


def publish_into(redis_url: str, world: Path, bundle_path: Path):
    import redis

    from features.loader import load_dataset
    from recsys.bundle import ModelBundle
    from recsys.publication import PublicationStore
    from recsys.publish import publish

    client = redis.Redis.from_url(redis_url)
    try:
        return publish(ModelBundle.load(bundle_path), load_dataset(world), PublicationStore(client, PREFIX),
                       model_uri=str(bundle_path))
    finally:
        client.close()


# ---------------------------------------------------------------------- server
def floor_app():
    """uvicorn factory of the floor: a FastAPI POST that only validates a rank body and checks the token.

    Served like the API (uvloop, httptools, no access log, same workers) on its own port; it shows
    what FastAPI's request handling alone costs, before any ranking, Redis or caps work.
    """
    from types import SimpleNamespace

    from fastapi import FastAPI

    from recsys.config import get_settings
    from serving import errors
    from serving.auth import RankAccess
    from serving.schemas import RankRequest

    app = FastAPI()
    app.state.serving = SimpleNamespace(settings=get_settings())
    errors.install(app)

    async def noop(body, principal):
        return {"ok": True}

    # Real objects, not the strings `from __future__ import annotations` would leave for FastAPI.
    noop.__annotations__ = {"body": RankRequest, "principal": RankAccess, "return": dict[str, bool]}
    app.post("/v1/noop")(noop)
    return app


def _server_env(redis_url: str, home: Path) -> dict[str, str]:
    env = {**os.environ, "RECSYS_REDIS_URL": redis_url, "RECSYS_REDIS_PREFIX": PREFIX,
           "RECSYS_SCHEDULER_TOKEN": TOKEN, "RECSYS_ADMIN_TOKEN": ADMIN, "RECSYS_HOME": str(home),
           "RECSYS_LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def start_floor(redis_url: str, port: int, workers: int, home: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api_load:floor_app",
         "--app-dir", str(ROOT / "benchmarks"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--loop", "uvloop",
         "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        env=_server_env(redis_url, home), cwd=ROOT)
    return _wait_until(process, f"http://127.0.0.1:{port}/openapi.json")


def start_server(redis_url: str, port: int, workers: int, home: Path) -> subprocess.Popen:
    recsys = Path(sys.executable).with_name("recsys")
    process = subprocess.Popen([str(recsys), "serve", "--host", "127.0.0.1", "--port", str(port),
                                "--workers", str(workers)], env=_server_env(redis_url, home), cwd=home)
    return _wait_until(process, f"http://127.0.0.1:{port}/readyz")


def _wait_until(process: subprocess.Popen, url: str) -> subprocess.Popen:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the server for {url} exited during startup")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the server for {url} was not ready within 60 s")


# ---------------------------------------------------------------------- CPU accounting
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (Linux /proc); [] where /proc is missing."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                queue += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by the processes `pids` (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


# ---------------------------------------------------------------------- load generators
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip()).groups()
    return float(value) * _UNITS[unit]


def run_wrk(url: str, duration: int, connections: int, script: Path | None, env: dict[str, str]) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, env={**os.environ, **env},
                            timeout=duration + 30).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)\.000%\s+(\S+)$", output, re.M)) or dict(
        re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)$", output, re.M)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": _ms(percentiles["50"]), "p99_ms": _ms(percentiles["99"]),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def run_python_load(url: str, duration: int, connections: int, body: dict | None, users: list[str]) -> dict:
    """Fallback load generator: `connections` concurrent httpx clients in a child process."""
    code = r"""
import asyncio, json, random, sys, time, httpx
url, duration, connections, body, users, token = json.loads(sys.stdin.read())
latencies, errors = [], 0
async def worker(seed):
    global errors
    rng = random.Random(seed)
    async with httpx.AsyncClient(headers={"Authorization": "Bearer " + token}, timeout=5) as client:
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            started = time.perf_counter()
            if body is None:
                response = await client.get(url)
            else:
                response = await client.post(url, json={**body, "user_id": rng.choice(users)})
            latencies.append(time.perf_counter() - started)
            errors += response.status_code >= 300
async def main():
    await asyncio.gather(*(worker(i) for i in range(connections)))
started = time.monotonic(); asyncio.run(main()); elapsed = time.monotonic() - started
latencies.sort()
print(json.dumps({"rps": len(latencies) / elapsed, "p50_ms": latencies[len(latencies) // 2] * 1e3,
                  "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3, "requests": len(latencies),
                  "errors": errors, "socket_errors": ""}))
"""
    payload = json.dumps([url, duration, connections, body, users, TOKEN])
    result = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, text=True,
                            timeout=duration + 60)
    return json.loads(result.stdout)


def measure_batch(base: str, users: list[str], now: str, rounds: int) -> dict:
    timings = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
        for r in range(rounds + 1):
            chunk = users[r * 1000:(r + 1) * 1000]
            body = {"requests": [{"user_id": u, "k": 3, "reserve": True, "now": now} for u in chunk]}
            started = time.perf_counter()
            response = client.post("/v1/rank/batch", json=body)
            elapsed = (time.perf_counter() - started) * 1e3
            if response.status_code != 200:
                raise RuntimeError(f"batch failed: {response.status_code} {response.text[:300]}")
            if r:  # the first round warms the worker up
                timings.append(elapsed)
        bare = []
        for _ in range(50):
            started = time.perf_counter()
            client.get("/healthz")
            bare.append((time.perf_counter() - started) * 1e3)
    timings.sort()
    return {"p50_ms": statistics.median(timings), "p99_ms": timings[-1] if len(timings) < 100 else
            float(np.percentile(timings, 99)), "max_ms": timings[-1], "rounds": len(timings),
            "bare_p50_ms": statistics.median(bare)}


# ---------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=3, help="paired runs (bare endpoint, then rank)")
    # The scheduler ranks millions of cardholders a day with many requests in flight; concurrent
    # requests are what the coalescer batches. Fewer in flight: see --connections 8 in the README.
    parser.add_argument("--connections", type=int, default=32, help="requests in flight (wrk connections)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-rounds", type=int, default=10)
    parser.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the floor (FastAPI POST: body validation and token only)")
    parser.add_argument("--python-load", action="store_true",
                        help="use the Python load loop even if wrk exists")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    from recsys.embedded_redis import free_port, start_embedded_redis

    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    world = ensure_world(work, args.users)
    bundle_path = ensure_bundle(work, world, args.users)
    redis_server = start_embedded_redis()
    home = Path(tempfile.mkdtemp(prefix="api-load-", dir=work))
    server = floor = None
    try:
        log("publishing")
        report = publish_into(redis_server.url, world, bundle_path)
        log(f"published {report.users:,} cardholders in {report.seconds:.1f}s, "
            f"{report.record_bytes_mean:.0f} B/record, {report.redis_bytes_per_user or 0:.0f} B in Redis")
        holders = pd.read_parquet(world / "cardholders.parquet", columns=["user_id"])["user_id"].astype(str)
        users = holders.tolist()
        users_file = home / "users.txt"
        users_file.write_text("\n".join(users) + "\n")
        as_of = pd.Timestamp(json.loads((bundle_path / "bundle.json").read_text())["as_of"])
        now = (as_of.tz_convert("Asia/Shanghai").normalize() + pd.Timedelta(hours=10)).isoformat()

        port = free_port()
        server = start_server(redis_server.url, port, args.workers, home)
        base = f"http://127.0.0.1:{port}"
        names = ("healthz", "rank") if args.no_floor else ("healthz", "floor", "rank")
        if not args.no_floor:
            floor_port = free_port()
            floor = start_floor(redis_server.url, floor_port, args.workers, home)
        use_wrk = shutil.which("wrk") is not None and not args.python_load
        generator = "wrk" if use_wrk else "python asyncio httpx"
        log(f"load generator: {generator}; {args.connections} connections, "
            f"{args.workers} workers, {args.rounds} rounds of {args.duration}s per endpoint")
        script = home / "rank.lua"
        script.write_text(WRK_SCRIPT)
        env = {"QM_USERS": str(users_file), "QM_NOW": now, "QM_TOKEN": TOKEN, "QM_SEED": "7"}
        results: dict[str, list[dict]] = {name: [] for name in names}
        paths = {"healthz": "/healthz", "floor": "/v1/noop", "rank": "/v1/rank"}
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            for user in users[:200]:  # warm-up
                client.post("/v1/rank", json={"user_id": user, "now": now})
        for round_ in range(args.rounds):
            for name in names:
                host = f"http://127.0.0.1:{floor_port}" if name == "floor" else base
                # CPU of the server answering this run (all its workers) and of Redis, per request.
                watched = {"api": _tree((floor if name == "floor" else server).pid),
                           "redis": [redis_server.process.pid]}
                before = {part: cpu_seconds(pids) for part, pids in watched.items()}
                if use_wrk:
                    url = f"{host}/healthz" if name == "healthz" else host
                    lua = None if name == "healthz" else script
                    seeded = {**env, "QM_SEED": str(7 + round_), "QM_PATH": paths[name]}
                    result = run_wrk(url, args.duration, args.connections, lua, seeded)
                else:
                    body = None if name == "healthz" else {"k": 3, "reserve": True, "now": now}
                    url = f"{host}{paths[name]}"
                    result = run_python_load(url, args.duration, args.connections, body, users)
                used = {part: cpu_seconds(pids) - before[part] for part, pids in watched.items()}
                result["cpu_us_per_request"] = {part: seconds / max(result["requests"], 1) * 1e6
                                                for part, seconds in used.items()}
                results[name].append(result)
                cpu = result["cpu_us_per_request"]
                log(f"{name:8s} round {round_ + 1}: {result['rps']:8.0f} req/s  "
                    f"p50 {result['p50_ms']:.2f} ms  "
                    f"p99 {result['p99_ms']:.2f} ms  errors {result['errors']} {result['socket_errors']}  "
                    f"CPU/request: API {cpu['api']:.0f} us, Redis {cpu['redis']:.0f} us")
        batch = measure_batch(base, users[-(args.batch_rounds + 1) * 1000:], now, args.batch_rounds)
        log(f"batch of 1,000: p50 {batch['p50_ms']:.1f} ms, max {batch['max_ms']:.1f} ms "
            f"over {batch['rounds']} "
            f"rounds (a bare /healthz round trip: {batch['bare_p50_ms']:.2f} ms)")
    finally:
        for process in (server, floor):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
        redis_server.stop()
        shutil.rmtree(home, ignore_errors=True)

    # Other work on the machine makes single runs noisy: compare each rank run with the bare run
    # just before it, and report medians over the rounds.
    ratios = [r["rps"] / b["rps"] for r, b in zip(results["rank"], results["healthz"], strict=True)]
    ratio = statistics.median(ratios)

    def median(name: str) -> dict:
        keys = ("rps", "p50_ms", "p99_ms")
        row = {key: statistics.median(run[key] for run in results[name]) for key in keys}
        for part in ("api", "redis"):
            row[f"{part}_cpu_us"] = statistics.median(run["cpu_us_per_request"][part]
                                                      for run in results[name])
        return row

    rank, bare = median("rank"), median("healthz")
    floor_row = median("floor") if "floor" in results else None
    floor_ratios = ([f["rps"] / b["rps"] for f, b in zip(results["floor"], results["healthz"], strict=True)]
                    if floor_row else [])
    summary = {
        "users": report.users, "publish_seconds": report.seconds, "record_bytes": report.record_bytes_mean,
        "redis_bytes_per_user": report.redis_bytes_per_user, "rank": rank, "healthz": bare,
        "throughput_ratio": ratio, "round_ratios": ratios, "runs": results, "batch_1000": batch,
        "floor": floor_row, "floor_round_ratios": floor_ratios,
        "load_generator": "wrk" if use_wrk else "python",
        "connections": args.connections, "workers": args.workers,
    }
    print()
    print(f"{'endpoint (median of rounds)':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
          f"{'API CPU/req':>13}{'Redis CPU/req':>15}")
    rows = [("GET /healthz (baseline)", bare), ("POST /v1/rank reserve=true", rank)]
    if floor_row:
        rows.insert(1, ("floor: FastAPI no-op POST", floor_row))
    for label, row in rows:
        print(f"{label:<28}{row['rps']:>10.0f}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}"
              f"{row['api_cpu_us']:>10.0f} us{row['redis_cpu_us']:>12.0f} us")
    print(f"{'POST /v1/rank/batch (1000)':<28}{'':>10}{batch['p50_ms']:>10.1f}{batch['p99_ms']:>10.1f}")
    checks = [
        (f"rank throughput {ratio:.0%} of the bare endpoint, median of rounds "
         f"{', '.join(f'{r:.0%}' for r in ratios)} (target >= 50%)", ratio >= 0.5),
        (f"rank p50 {rank['p50_ms']:.2f} ms (target <= 5 ms)", rank["p50_ms"] <= 5.0),
        (f"batch of 1,000 p50 {batch['p50_ms']:.0f} ms (target <= 150 ms)", batch["p50_ms"] <= 150.0),
    ]
    for text, ok in checks:
        print(f"  [{'ok' if ok else 'MISS'}] {text}")
    if floor_ratios:
        print(f"  floor (no ranking, Redis or caps): {statistics.median(floor_ratios):.0%} of the bare "
              f"endpoint, "
              f"rounds {', '.join(f'{r:.0%}' for r in floor_ratios)}")
    (work / "api_load.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"figures written to {work / 'api_load.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
