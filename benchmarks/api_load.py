"""Load benchmark of the ranking API on loopback: the scheduler wave, single rank requests, batch latency.

Builds (or reuses, under --work-dir) a synthetic world of --users cardholders and a quickly trained
hybrid model, publishes it into a throw-away Redis server and starts `recsys serve` (--workers) on a
loopback port. Then, in one run:

- the **scheduler wave**: concurrent `POST /v1/rank/batch` calls of 1,000 cardholders each with
  reserve=true, for --wave-seconds at each concurrency of --wave-in-flight (by default one batch in
  flight per worker, as a scheduler with back-pressure sends them, then two per worker); every
  cardholder once per pass, each pass a day later (as a daily wave would be). Reports decisions/s, the
  batch latency p50/p99, the CPU per batch of the API, Redis and the load generator and how the API's CPU
  was spread over its processes (batches sharing a worker wait for each other), beside the baseline
  measured on the same Redis just before and just after it: the pipelined caps-decide rate
  (`RedisCapEngine.decide_batch` in batches of 1,000 with the k + 3 candidates a rank request decides,
  as in `benchmarks/caps_throughput.py`). Target, at one batch in flight per worker: >= 50% of that
  rate, 1k-batch p99 <= 150 ms. The machine's speed drifts within a run, so the waves run in
  --wave-rounds rounds (3), each between two baseline measurements; each wave's ratio is taken against
  the two around it, and each figure reported is the rounds' median.
- `POST /v1/rank` with reserve=true beside `GET /healthz` under the same load (--connections in
  flight; wrk where installed, else a bounded asyncio httpx loop in a child process), reported only;
  with --floor also a FastAPI POST on its own port that only validates the body and checks the token.
- the latency of sequential `/v1/rank/batch` calls of 1,000 cardholders.

Only loopback traffic; every phase is bounded in time. Run it with another checkout's interpreter
(e.g. `../baseline/.venv/bin/python benchmarks/api_load.py`) to measure that checkout's code.

    .venv/bin/python benchmarks/api_load.py                # 100k cardholders
    .venv/bin/python benchmarks/api_load.py --users 20000 --duration 5
    .venv/bin/python benchmarks/api_load.py --users 20000 --duration 5 --response   # send-or-hold answers

`--response` publishes the bundle beside push response models fitted on the world's push log (as
`batch_cpu.py --response`), so that every answer takes the send-or-hold path of a version from
`recsys train`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-scheduler-token"
ADMIN = "bench-admin-token"
PREFIX = "bench"
# Days the waves may replay after the world's end; the API's clock is fixed just after them (the past
# window it accepts is at most 366 days). At 20,000 cardholders a pass takes about a second.
WAVE_DAYS = 360
REPLAY_DAYS = pd.Timedelta(days=WAVE_DAYS + 2)

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
    from worlds.generator import WorldConfig, generate_world

    out = work / f"world-{users}"
    if not (out / "cardholders.parquet").exists():
        log(f"generating a {users:,}-cardholder world in {out}")
        generate_world(WorldConfig(users=users, items=200, days=90, seed=7), out, force=True)
    return out


def ensure_bundle(work: Path, world: Path, users: int) -> Path:
    out = work / f"bundle-{users}"
    if (out / "bundle.json").exists():
        return out
    from features.bundle_inputs import item_metadata
    from features.loader import load_dataset
    from features.pipeline import build_training_matrices
    from recsys.bundle import ModelBundle
    from recsys.models.lightfm_hybrid import LightFMHybrid

    log("training a small-epoch hybrid model for the benchmark")
    dataset = load_dataset(world)
    as_of = dataset.time_range()[1]
    matrices, builder = build_training_matrices(dataset, as_of)
    model = LightFMHybrid(no_components=32, epochs=3, num_threads=2).fit(matrices)
    ModelBundle(model=model, users=matrices.users, items=matrices.items, feature_state=builder.to_dict(),
                item_meta=item_metadata(dataset.content, matrices.items),
                user_segments=matrices.user_segments, as_of=as_of).save(out)
    return out


def ensure_response_bundle(bundle_path: Path, world: Path) -> Path:
    """The benchmark's bundle beside push response models fitted on the world's push log, so that ranking
    takes the send-or-hold path (`recsys.decision`) as a version from `recsys train` does. One fit, no
    choice on the validation slice and no refit: the serving work per cardholder is the same."""
    out = bundle_path.with_name(f"{bundle_path.name}-response")
    if (out / "bundle.json").exists():
        return out
    from dataclasses import replace

    from features.loader import load_dataset
    from recsys.bundle import ModelBundle
    from training.response import ResponseFitConfig, fit_response_models

    log("fitting the push response models for the benchmark")
    dataset = load_dataset(world)
    config = ResponseFitConfig(refit=False, user_hour_grid=(1.0,), reminder_opens=True)
    response, _ = fit_response_models(dataset, dataset.time_range()[1], config)
    replace(ModelBundle.load(bundle_path), response=response).save(out)
    return out


def publish_into(redis_url: str, world: Path, bundle_path: Path):
    import redis

    from features.loader import load_dataset
    from publishing.publish import publish
    from recsys.bundle import ModelBundle
    from recsys.publication import PublicationStore

    client = redis.Redis.from_url(redis_url)
    try:
        return publish(ModelBundle.load(bundle_path), load_dataset(world), PublicationStore(client, PREFIX),
                       model_uri=str(bundle_path))
    finally:
        client.close()

@dataclass(frozen=True)
class Published:
    world: Path
    redis_server: Any  # recsys.embedded_redis's server handle
    home: Path  # scratch directory, removed on the way out
    as_of: pd.Timestamp  # the bundle's
    users: list[str]
    report: Any  # the publication's report


@contextlib.contextmanager
def published_world(work_dir: Path, users: int, prefix: str, response: bool = False) -> Iterator[Published]:
    """The benchmark's world and bundle (made once under `work_dir`; `response`: with push response models,
    `ensure_response_bundle`) published into a fresh embedded Redis, which is stopped, and the scratch
    directory removed, on the way out."""
    from recsys.embedded_redis import start_embedded_redis

    work = work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    world = ensure_world(work, users)
    bundle_path = ensure_bundle(work, world, users)
    if response:
        bundle_path = ensure_response_bundle(bundle_path, world)
    redis_server = start_embedded_redis()
    home = Path(tempfile.mkdtemp(prefix=prefix, dir=work))
    try:
        log("publishing")
        report = publish_into(redis_server.url, world, bundle_path)
        log(f"published {report.users:,} cardholders in {report.seconds:.1f}s, "
            f"{report.record_bytes_mean:.0f} B/record, {report.redis_bytes_per_user or 0:.0f} B in Redis")
        holders = pd.read_parquet(world / "cardholders.parquet", columns=["user_id"])["user_id"].astype(str)
        as_of = pd.Timestamp(json.loads((bundle_path / "bundle.json").read_text())["as_of"])
        yield Published(world, redis_server, home, as_of, holders.tolist(), report)
    finally:
        redis_server.stop()
        shutil.rmtree(home, ignore_errors=True)



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


def _server_env(redis_url: str, home: Path, as_of: pd.Timestamp) -> dict[str, str]:
    env = {**os.environ, "RECSYS_REDIS_URL": redis_url, "RECSYS_REDIS_PREFIX": PREFIX,
           "RECSYS_SCHEDULER_TOKEN": TOKEN, "RECSYS_ADMIN_TOKEN": ADMIN, "RECSYS_HOME": str(home),
           "RECSYS_LOG_LEVEL": "WARNING",
           # the requests replay days from the world's fixed end onwards, a day per wave pass: the
           # server's clock is fixed after any day a run reaches, its past window spans them all,
           # so no run depends on today's date
           "RECSYS_SERVER_TIME": (as_of + REPLAY_DAYS).isoformat(),
           "RECSYS_CLOCK_PAST_SECONDS": str(366 * 86400)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def start_floor(redis_url: str, port: int, workers: int, home: Path, as_of: pd.Timestamp
                ) -> subprocess.Popen:
    from serving.ready import wait_until_ready

    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api_load:floor_app",
         "--app-dir", str(ROOT / "benchmarks"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--loop", "uvloop",
         "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        env=_server_env(redis_url, home, as_of), cwd=ROOT)
    wait_until_ready(f"http://127.0.0.1:{port}", process, seconds=60, path="/openapi.json")
    return process


def start_server(redis_url: str, port: int, workers: int, home: Path, as_of: pd.Timestamp
                 ) -> subprocess.Popen:
    from serving.ready import wait_until_ready

    recsys = Path(sys.executable).with_name("recsys")
    process = subprocess.Popen([str(recsys), "serve", "--host", "127.0.0.1", "--port", str(port),
                                "--workers", str(workers)], env=_server_env(redis_url, home, as_of), cwd=home)
    wait_until_ready(f"http://127.0.0.1:{port}", process, seconds=60)
    return process


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


# ---------------------------------------------------------------------- scheduler wave and its baseline
WAVE_BATCH = 1000


def wave_bodies(users: list[str], now: pd.Timestamp):
    """Encoded `/v1/rank/batch` bodies of WAVE_BATCH cardholders: every cardholder once per pass,
    each pass one day later (a new day's wave, so yesterday's daily cap does not decide it)."""
    for day in range(WAVE_DAYS):
        when = (now + pd.Timedelta(days=day)).isoformat()
        for start in range(0, len(users) - WAVE_BATCH + 1, WAVE_BATCH):
            chunk = users[start:start + WAVE_BATCH]
            yield json.dumps({"requests": [{"user_id": u, "k": 3, "reserve": True, "now": when}
                                           for u in chunk]}).encode()
    raise RuntimeError(f"the waves replayed all {WAVE_DAYS} days: use more --users or fewer --wave-seconds")


async def _post(host: str, port: int, head: bytes, body: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 POST on a new connection (a batch answer closes its connection anyway): the status
    and the body. Plain asyncio streams: httpx's pure-Python HTTP parsing cost the load generator, which
    shares the API's cores, about 5 ms of CPU per 1 MB answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        header = await reader.readuntil(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        length = re.search(rb"(?im)^content-length:\s*(\d+)", header)
        content = await (reader.readexactly(int(length.group(1))) if length else reader.read())
        return status, content
    finally:
        writer.close()


async def _wave(base: str, bodies, seconds: float, in_flight: int) -> dict:
    latencies: list[float] = []
    decided = 0
    address = httpx.URL(base)
    head = (f"POST /v1/rank/batch HTTP/1.1\r\nHost: {address.host}:{address.port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            "Connection: close\r\n").encode()
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal decided
        while time.perf_counter() < deadline:
            body = next(bodies)
            started = time.perf_counter()
            status, content = await _post(address.host, address.port, head, body)
            latencies.append((time.perf_counter() - started) * 1e3)
            if status != 200:
                raise RuntimeError(f"batch failed: {status} {content[:300]!r}")
            decided += WAVE_BATCH

    began = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(in_flight)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {"decisions_per_s": decided / elapsed, "batches": len(latencies), "seconds": elapsed,
            "p50_ms": statistics.median(latencies), "p99_ms": float(np.percentile(latencies, 99)),
            "max_ms": latencies[-1], "in_flight": in_flight}


def scheduler_wave(base: str, bodies, seconds: float, in_flight: int) -> dict:
    """One wave over the `wave_bodies` iterator `bodies` (shared by successive waves, so each goes on
    from the day the previous one reached)."""
    return asyncio.run(_wave(base, bodies, seconds, in_flight))


def batches_begun(base: str) -> tuple[float, float]:
    """(`/v1/rank/batch` calls so far that began while their worker ranked another batch, all calls so far),
    from the API's `/metrics` (every worker's counts); (0, 0) from a server without that counter."""
    from prometheus_client.parser import text_string_to_metric_families

    counts = {"true": 0.0, "false": 0.0}
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=10).text):
        if family.name == "qianmian_rank_batches":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["beside"]] += sample.value
    return counts["true"], counts["true"] + counts["false"]


def run_wave(base: str, bodies, server_pid: int, redis_pid: int, seconds: float, in_flight: int) -> dict:
    """`scheduler_wave` with the CPU each batch cost the API workers, Redis and this process (the load
    generator): machine load changes the wall times, much less these."""
    log(f"scheduler wave: {in_flight} concurrent batch calls of 1,000 with reserve, {seconds:.0f} s")
    watched = {"api": _tree(server_pid), "redis": [redis_pid], "client": [os.getpid()]}
    before = {part: cpu_seconds(pids) for part, pids in watched.items()}
    each_before = {pid: cpu_seconds([pid]) for pid in watched["api"]}
    beside_before, begun_before = batches_begun(base)
    wave = scheduler_wave(base, bodies, seconds, in_flight)
    beside, begun = batches_begun(base)
    # the share of batches that began while their worker ranked another (they wait for each other)
    wave["beside_share"] = (beside - beside_before) / (begun - begun_before) if begun > begun_before else None
    wave["cpu_ms_per_batch"] = {part: (cpu_seconds(pids) - before[part]) / wave["batches"] * 1e3
                                for part, pids in watched.items()}
    # how the batches were spread over the API processes: two on one worker wait for each other
    used = sorted((cpu_seconds([pid]) - start for pid, start in each_before.items()), reverse=True)
    wave["api_cpu_shares"] = [seconds / max(sum(used), 1e-9) for seconds in used if seconds > 0]
    cpu = wave["cpu_ms_per_batch"]
    log(f"scheduler wave: {wave['decisions_per_s']:,.0f} decisions/s over {wave['batches']} batches, "
        f"p50 {wave['p50_ms']:.0f} ms, p99 {wave['p99_ms']:.0f} ms; CPU per batch: API {cpu['api']:.0f} ms, "
        f"Redis {cpu['redis']:.0f} ms, load generator {cpu['client']:.0f} ms; API CPU by process "
        f"{' / '.join(f'{share:.0%}' for share in wave['api_cpu_shares'])}{beside_text(wave)}")
    return wave


def median_wave(rounds: list[dict]) -> dict:
    """The waves of one concurrency over the rounds as one row: each figure the rounds' median (CPU per
    part and the share of batches beside another too), the rounds' ratios listed."""
    row = {key: statistics.median(wave[key] for wave in rounds)
           for key in ("decisions_per_s", "p50_ms", "p99_ms", "max_ms", "ratio")}
    row.update(in_flight=rounds[0]["in_flight"], batches=sum(wave["batches"] for wave in rounds),
               round_ratios=[wave["ratio"] for wave in rounds],
               cpu_ms_per_batch={part: statistics.median(wave["cpu_ms_per_batch"][part] for wave in rounds)
                                 for part in rounds[0]["cpu_ms_per_batch"]})
    shares = [wave["beside_share"] for wave in rounds if wave["beside_share"] is not None]
    row["beside_share"] = statistics.median(shares) if shares else None
    # the API's spread over its processes from the round whose throughput is the median one
    middle = sorted(rounds, key=lambda wave: wave["decisions_per_s"])[len(rounds) // 2]
    row["api_cpu_shares"] = middle["api_cpu_shares"]
    return row


def beside_text(wave: dict) -> str:
    share = wave.get("beside_share")
    return "" if share is None else f"; {share:.0%} of the batches began beside another in one worker"


def caps_decide_rate(redis_url: str, world: Path, users: list[str], now: pd.Timestamp, n: int,
                     reserve: bool, round_: int) -> float:
    """Decisions/s of `RedisCapEngine.decide_batch` over `n` cardholders in pipelined batches of
    WAVE_BATCH, each asking about the k + 3 = 6 candidates a rank request hands the caps (the
    shipped policy, a key prefix of its own, so the API's caps state is untouched)."""
    import random

    import redis

    from recsys.caps.decisions import Candidate, CapRequest
    from recsys.caps.policy import default_policy
    from recsys.caps.redis_engine import RedisCapEngine

    # tags split inline, not with recsys.cells: this script also measures checkouts that predate it
    content = pd.read_parquet(world / "content.parquet")
    content = content[~content["transactional"].fillna(False).astype(bool)]
    pool = [Candidate(str(row.content_id), str(row.kind),
                      tuple(t for t in (row.tags if isinstance(row.tags, str) else "").split("|") if t))
            for row in content.itertuples()]
    rng = random.Random(round_)
    when = (now + pd.Timedelta(days=round_)).to_pydatetime()
    requests = [CapRequest(u, tuple(rng.sample(pool, 6)), "Asia/Shanghai", reserve) for u in users[:n]]
    client = redis.Redis.from_url(redis_url)
    engine = RedisCapEngine(client, default_policy(), prefix=f"{PREFIX}-baseline:caps")
    try:
        engine.decide_batch(requests[:WAVE_BATCH], now=when)  # load the script
        started = time.perf_counter()
        for start in range(0, len(requests), WAVE_BATCH):
            engine.decide_batch(requests[start:start + WAVE_BATCH], now=when)
        return len(requests) / (time.perf_counter() - started)
    finally:
        engine.close()
        client.close()


# ---------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=1, help="paired runs (bare endpoint, then rank)")
    # The scheduler ranks millions of cardholders a day with many requests in flight; concurrent
    # requests are what the coalescer batches. Fewer in flight: see --connections 8 in the README.
    parser.add_argument("--connections", type=int, default=32, help="requests in flight (wrk connections)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-rounds", type=int, default=10)
    parser.add_argument("--work-dir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--floor", action="store_true",
                        help="also measure the floor (FastAPI POST: body validation and token only)")
    parser.add_argument("--wave-seconds", type=float, default=10.0, help="length of each scheduler wave")
    parser.add_argument("--wave-rounds", type=int, default=3,
                        help="rounds of waves, each between two caps-baseline measurements (medians "
                             "reported)")
    parser.add_argument("--wave-in-flight", type=int, nargs="+", default=None,
                        help="concurrent batch calls of each wave, the first one checked against the targets "
                             "(default: one per worker, then two per worker)")
    parser.add_argument("--baseline-users", type=int, default=20_000,
                        help="cardholders decided per caps-baseline measurement")
    parser.add_argument("--python-load", action="store_true",
                        help="use the Python load loop even if wrk exists")
    parser.add_argument("--response", action="store_true",
                        help="publish the bundle beside push response models (fitted once under --work-dir), "
                             "so that every answer is decided by send or hold (recsys.decision)")
    args = parser.parse_args()
    if args.wave_rounds < 1:
        parser.error("--wave-rounds must be at least 1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    with published_world(args.work_dir, args.users, "api-load-", args.response) as published:
        return _measure(args, published)


def _measure(args: argparse.Namespace, published: Published) -> int:
    from recsys.embedded_redis import free_port

    world, redis_server, home, as_of, users = (published.world, published.redis_server, published.home,
                                               published.as_of, published.users)
    report, work = published.report, args.work_dir.resolve()
    server = floor = None
    try:
        users_file = home / "users.txt"
        users_file.write_text("\n".join(users) + "\n")
        now = (as_of.tz_convert("Asia/Shanghai").normalize() + pd.Timedelta(hours=10)).isoformat()

        port = free_port()
        server = start_server(redis_server.url, port, args.workers, home, as_of)
        base = f"http://127.0.0.1:{port}"
        names = ("healthz", "floor", "rank") if args.floor else ("healthz", "rank")
        if args.floor:
            floor_port = free_port()
            floor = start_floor(redis_server.url, floor_port, args.workers, home, as_of)
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
        # The wave starts a day after everything above, so their reservations do not decide it.
        wave_start = pd.Timestamp(now) + pd.Timedelta(days=1)
        bodies = wave_bodies(users, wave_start)
        wave_in_flight = args.wave_in_flight or [args.workers, 2 * args.workers]
        baselines = {"decide": [], "reserve": []}
        rounds: list[list[dict]] = []  # per round, a wave at each of wave_in_flight
        for round_ in range(args.wave_rounds + 1):
            for kind in ("decide", "reserve"):
                rate = caps_decide_rate(redis_server.url, world, users, wave_start, args.baseline_users,
                                        kind == "reserve", 100 + 2 * round_ + (kind == "reserve"))
                baselines[kind].append(rate)
                log(f"caps baseline ({kind}, batches of 1,000): {rate:,.0f} decisions/s")
            if round_ < args.wave_rounds:
                rounds.append([run_wave(base, bodies, server.pid, redis_server.process.pid, args.wave_seconds,
                                        n) for n in wave_in_flight])
    finally:
        for process in (server, floor):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()

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
    baseline = statistics.mean(baselines["decide"])
    # The machine's speed drifts within a run: each wave is set against the caps baselines measured just
    # before and just after it, and the rounds' medians are reported.
    for round_, measured in enumerate(rounds):
        for wave in measured:
            wave["ratio"] = wave["decisions_per_s"] / statistics.mean(baselines["decide"][round_:round_ + 2])
    waves = [median_wave([measured[position] for measured in rounds])
             for position in range(len(wave_in_flight))]
    wave = waves[0]
    wave_ratio = wave["ratio"]
    summary = {
        "users": report.users, "publish_seconds": report.seconds, "record_bytes": report.record_bytes_mean,
        "redis_bytes_per_user": report.redis_bytes_per_user, "rank": rank, "healthz": bare,
        "throughput_ratio": ratio, "round_ratios": ratios, "runs": results, "batch_1000": batch,
        "floor": floor_row, "floor_round_ratios": floor_ratios,
        "load_generator": "wrk" if use_wrk else "python", "scheduler_waves": waves,
        "caps_baseline": baselines, "wave_ratio": wave_ratio, "wave_rounds": rounds,
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
    for row in waves:
        cpu = row["cpu_ms_per_batch"]
        label = f"scheduler wave, {row['in_flight']} in flight"
        print(f"{label:<28}{row['decisions_per_s']:>10.0f}{row['p50_ms']:>10.1f}{row['p99_ms']:>10.1f}"
              f"   decisions/s ({row['ratio']:.0%} of caps decide; rounds "
              f"{', '.join(f'{ratio:.0%}' for ratio in row['round_ratios'])}); "
              f"CPU per 1k batch: API {cpu['api']:.0f} ms, Redis {cpu['redis']:.0f} ms, "
              f"load generator {cpu['client']:.0f} ms; API CPU by process "
              f"{' / '.join(f'{share:.0%}' for share in row['api_cpu_shares'])}{beside_text(row)}")
    print(f"{'caps decide, pipelined':<28}{baseline:>10.0f}   decisions/s (mean of "
          f"{', '.join(f'{r:,.0f}' for r in baselines['decide'])}); with reserve "
          f"{', '.join(f'{r:,.0f}' for r in baselines['reserve'])}")
    checks = [
        (f"scheduler wave ({wave['in_flight']} in flight) {wave_ratio:.0%} of the pipelined caps-decide rate "
         "(target >= 50%)", wave_ratio >= 0.5),
        (f"scheduler wave ({wave['in_flight']} in flight) 1k-batch p99 {wave['p99_ms']:.0f} ms "
         "(target <= 150 ms)", wave["p99_ms"] <= 150.0),
    ]
    print(f"  single rank: {ratio:.0%} of the bare endpoint, p50 {rank['p50_ms']:.2f} ms (reported only)")
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
