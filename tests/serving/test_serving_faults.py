"""Fault suite: a real uvicorn API over its own redis-server, faults injected under a bounded load.

Each scenario reserves one push for each of its cardholders, reports the pushes sent in batches of
50 (retrying a batch until it is answered, as the scheduler does) while a fault hits, then checks:
every event logged and applied exactly once (lost = a cardholder whose push does not count, or an
event missing from the log), no cardholder granted a second push the same day (cap violations),
`/healthz` never waiting on Redis, and, for publishes, no broken version ever served. The figures
are printed (`-s`) and quoted in the README.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import pytest
import redis
from serving_support import ADMIN, SCHEDULER, SCHEDULER_HEADERS, wait_until_ready

from recsys.embedded_redis import EmbeddedRedis, free_port, start_embedded_redis

pytestmark = [pytest.mark.redis, pytest.mark.fault]

PREFIX = "fault"
BATCH = 50
# Redis runs with an append-only file fsync'd on every write, so a killed server restarts with
# everything it acknowledged.
DURABLE = ["--appendonly", "yes", "--appendfsync", "always"]


@dataclass
class Figures:
    scenario: str
    events: int = 0
    lost: int = 0
    duplicates_unapplied: int = 0
    cap_violations: int = 0
    retries: int = 0
    recovery_seconds: float = 0.0
    broken_served: int = 0
    healthz_ms: list[float] = field(default_factory=list)
    healthz_spans: list[tuple[float, float]] = field(default_factory=list)  # (start, end), monotonic
    fault_span: tuple[float, float] | None = None

    def probes_inside_fault(self) -> int:
        """`/healthz` probes sent and answered while the fault held Redis."""
        start, end = self.fault_span
        return sum(1 for a, b in self.healthz_spans if start < a and b < end)

    def line(self) -> str:
        worst = max(self.healthz_ms, default=0.0)
        return json.dumps({"scenario": self.scenario, "events": self.events, "lost": self.lost,
                           "duplicates_unapplied": self.duplicates_unapplied,
                           "cap_violations": self.cap_violations, "retries": self.retries,
                           "recovery_s": round(self.recovery_seconds, 2), "broken_served": self.broken_served,
                           "healthz_max_ms": round(worst, 1), "healthz_probes": len(self.healthz_ms)})


class Redis:
    """The suite's own redis-server: killed and restarted on the same port and data directory."""

    def __init__(self) -> None:
        self.server: EmbeddedRedis = start_embedded_redis(extra_args=DURABLE)
        self.port, self.workdir = self.server.port, self.server.workdir
        self.spares: list[EmbeddedRedis] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait(timeout=5)

    def restart(self) -> None:
        self.spares.append(self.server)
        self.server = start_embedded_redis(self.port, [*DURABLE, "--dir", str(self.workdir)])

    def stop(self) -> None:
        for server in [*self.spares, self.server]:
            server.stop()


class Api:
    """One uvicorn worker process (`serving.app:app_from_environment`)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "serving.app:app_from_environment",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        process = self.process
        wait_until_ready(self.base, process,
                         lambda: process.stderr.read().decode() if process.poll() is not None else "")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@dataclass
class World:
    redis: Redis
    api: Api
    client: httpx.Client
    holders: list[str]
    daytime: str
    log_dir: Path
    store_client: redis.Redis


@pytest.fixture(scope="module")
def world(bundle, dataset, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from publishing.publish import publish
    from recsys.publication import PublicationStore

    as_of = dataset.time_range()[1]
    local_day = as_of.tz_convert("Asia/Shanghai").normalize()
    daytime = (local_day + pd.Timedelta(hours=10)).isoformat()
    server = Redis()
    home = tmp_path_factory.mktemp("fault-home")
    store_client = redis.Redis.from_url(server.url, socket_timeout=5)
    publish(bundle, dataset, PublicationStore(store_client, PREFIX))
    env = {
        **os.environ,
        "RECSYS_REDIS_URL": server.url, "RECSYS_REDIS_PREFIX": PREFIX, "RECSYS_HOME": str(home),
        "RECSYS_SCHEDULER_TOKEN": SCHEDULER, "RECSYS_ADMIN_TOKEN": ADMIN,
        "RECSYS_RELOAD_INTERVAL_SECONDS": "0.2", "RECSYS_LOG_LEVEL": "WARNING",
        "RECSYS_SERVER_TIME": (local_day + pd.Timedelta(hours=11)).isoformat(),
        "RECSYS_REDIS_TIMEOUT_SECONDS": "0.5", "RECSYS_RECORD_CACHE_SIZE": "0",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    api = Api(env)
    holders = dataset.cardholders["user_id"].astype(str).tolist()
    try:
        with httpx.Client(base_url=api.base, headers=SCHEDULER_HEADERS, timeout=5) as client:
            yield World(server, api, client, holders, daytime, home / "events", store_client)
    finally:
        api.stop()
        store_client.close()
        server.stop()


def reserve(world: World, users: list[str]) -> dict[str, str]:
    """A reserved push per cardholder (those the caps allow)."""
    body = {"requests": [{"user_id": u, "now": world.daytime, "reserve": True, "k": 1} for u in users]}
    results = world.client.post("/v1/rank/batch", json=body).json()["results"]
    return {r["user_id"]: r["push_id"] for r in results if r["push_id"]}


def deliver(world: World, events: list[dict], figures: Figures) -> list[dict]:
    """Post a batch until it is answered (as the scheduler retries after 503s, timeouts, refusals)."""
    failed_at = None
    deadline = time.monotonic() + 30
    while True:
        try:
            response = world.client.post("/v1/events", json={"events": events})
            if response.status_code == 200:
                if failed_at is not None:
                    figures.recovery_seconds = max(figures.recovery_seconds, time.monotonic() - failed_at)
                return response.json()["results"]
            assert response.status_code == 503, response.text
        except httpx.TransportError:
            pass
        figures.retries += 1
        failed_at = failed_at or time.monotonic()
        assert time.monotonic() < deadline, "the API did not recover within 30 s"
        time.sleep(0.05)


def probe_healthz(world: World, figures: Figures, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        with httpx.Client(base_url=world.api.base, timeout=5) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    ok = client.get("/healthz").status_code == 200
                except httpx.TransportError:
                    ok = None  # the API process itself is down (the kill scenario)
                if ok is not None:
                    assert ok
                    ended = time.monotonic()
                    figures.healthz_ms.append((ended - started) * 1000)
                    figures.healthz_spans.append((started, ended))
                time.sleep(0.02)  # not stop.wait: under faketime a timed wait can outlast the fault

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def run_scenario(world: World, name: str, users: list[str], fault: Callable[[], None],
                 after_batches: int = 1) -> Figures:
    figures = Figures(name)
    pushes = reserve(world, users)
    assert len(pushes) > 0.8 * len(users)
    events = [{"event_id": f"{name}-{user}", "type": "sent", "user_id": user, "push_id": push_id,
               "ts": world.daytime} for user, push_id in pushes.items()]
    figures.events = len(events)
    stop = threading.Event()
    prober = probe_healthz(world, figures, stop)
    answers: dict[str, str] = {}
    try:
        for number, start in enumerate(range(0, len(events), BATCH)):
            if number == after_batches:
                threading.Thread(target=fault, daemon=True).start()
            for result in deliver(world, events[start:start + BATCH], figures):
                answers[result["event_id"]] = result["status"]
    finally:
        stop.set()
        prober.join(timeout=10)
    check(world, figures, pushes, answers)
    print(figures.line())
    return figures


def check(world: World, figures: Figures, pushes: dict[str, str], answers: dict[str, str]) -> None:
    logged = set()
    for path in world.log_dir.glob("*.jsonl"):
        logged |= {json.loads(line)["event_id"] for line in path.read_text().splitlines() if line.strip()}
    later = (pd.Timestamp(world.daytime) + pd.Timedelta(minutes=30)).isoformat()
    for user in pushes:
        state = world.client.get(f"/v1/users/{user}/caps", params={"now": world.daytime}).json()
        event_id = f"{figures.scenario}-{user}"
        if state["sent_total"] != 1 or state["pending_reservations"] != 0 or event_id not in logged:
            figures.lost += 1
        if answers.get(event_id) == "duplicate" and state["sent_total"] != 1:
            figures.duplicates_unapplied += 1
    body = {"requests": [{"user_id": u, "now": later, "reserve": True, "k": 1} for u in pushes]}
    again = world.client.post("/v1/rank/batch", json=body).json()["results"]
    figures.cap_violations = sum(1 for result in again if result["push_id"] is not None)


def users_for(world: World, scenario: int, n: int = 120) -> list[str]:
    return world.holders[scenario * n:(scenario + 1) * n]


def assert_clean(figures: Figures) -> None:
    assert (figures.lost, figures.duplicates_unapplied, figures.cap_violations) == (0, 0, 0), figures
    assert figures.retries > 0, f"the fault did not hit the load: {figures}"


def test_redis_stalled_by_debug_sleep(world: World) -> None:
    holder: list[tuple[float, float]] = []

    def stall() -> None:
        started = time.monotonic()
        redis.Redis.from_url(world.redis.url, socket_timeout=10).execute_command("DEBUG", "SLEEP", "1.5")
        holder.append((started, time.monotonic()))

    figures = run_scenario(world, "debug-sleep", users_for(world, 0), stall)
    assert_clean(figures)
    figures.fault_span = holder[0]
    # Liveness is answered while Redis holds every other request (latencies are printed, not
    # asserted: the machine is shared and timings are noisy).
    assert figures.probes_inside_fault() >= 5, figures.line()


def test_redis_clients_paused(world: World) -> None:
    holder: list[tuple[float, float]] = []

    def pause() -> None:
        started = time.monotonic()
        redis.Redis.from_url(world.redis.url).execute_command("CLIENT", "PAUSE", "1500", "ALL")
        holder.append((started, started + 1.5))

    figures = run_scenario(world, "client-pause", users_for(world, 1), pause)
    assert_clean(figures)
    figures.fault_span = holder[0]
    assert figures.probes_inside_fault() >= 5, figures.line()


def test_redis_killed_and_restarted(world: World) -> None:
    def kill_and_restart() -> None:
        world.redis.kill()
        time.sleep(1.0)
        world.redis.restart()

    figures = run_scenario(world, "redis-killed", users_for(world, 2), kill_and_restart)
    assert_clean(figures)


def test_api_killed_mid_batch(world: World) -> None:
    """SIGKILL while a 1,000-event batch is being applied; the retry goes to a new process."""
    users = users_for(world, 3, 150)
    figures = Figures("api-killed")
    pushes = reserve(world, users)
    events = [{"event_id": f"api-killed-{user}", "type": "sent", "user_id": user, "push_id": push_id,
               "ts": world.daytime} for user, push_id in pushes.items()]
    # pad the batch with events of other cardholders so the kill lands while it is applied
    filler = [{"event_id": f"api-killed-m-{n}", "type": "muted", "user_id": f"filler-{n}",
               "ts": world.daytime} for n in range(1000 - len(events))]
    batch = events + filler
    figures.events = len(batch)
    engine_client = redis.Redis.from_url(world.redis.url)

    def marker(event: dict) -> str:
        return f"{{{PREFIX}:caps:u:{event['user_id']}}}:e:{event['event_id']}"

    def send() -> None:
        try:
            world.client.post("/v1/events", json={"events": batch}, timeout=30)
        except httpx.TransportError:
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    deadline = time.monotonic() + 10
    halfway = events[len(events) // 2]
    while time.monotonic() < deadline and not engine_client.exists(marker(halfway)):
        time.sleep(0.002)
    world.api.kill()
    sender.join(timeout=10)
    applied_before_restart = sum(engine_client.exists(marker(e)) for e in batch)
    killed_at = time.monotonic()
    world.api.start()
    answers = {r["event_id"]: r["status"] for r in deliver(world, batch, figures)}
    figures.recovery_seconds = time.monotonic() - killed_at
    figures.retries += 1
    check(world, figures, pushes, answers)
    print(figures.line(), json.dumps({"applied_before_kill": applied_before_restart, "batch": len(batch)}))
    assert 0 < applied_before_restart < len(batch), "the kill did not land mid-batch"
    duplicates = [e for e, status in answers.items() if status == "duplicate"]
    assert len(duplicates) == applied_before_restart
    assert all(engine_client.exists(marker(e)) for e in batch)
    assert (figures.lost, figures.duplicates_unapplied, figures.cap_violations) == (0, 0, 0), figures
    engine_client.close()


def test_overlapping_publishes_never_serve_a_broken_version(world: World, bundle, dataset) -> None:
    from publishing.publish import publish
    from recsys.publication import PublicationError, PublicationStore

    figures = Figures("publishes-overlapped")
    outcomes: list[str] = []

    def publish_one() -> None:
        client = redis.Redis.from_url(world.redis.url, socket_timeout=5)
        try:
            publish(bundle, dataset, PublicationStore(client, PREFIX), chunk=100)
            outcomes.append("live")
        except PublicationError as error:
            outcomes.append(type(error).__name__)
        finally:
            client.close()

    stop = threading.Event()
    served: list[int] = []

    def load() -> None:
        users = users_for(world, 4, 40)
        with httpx.Client(base_url=world.api.base, headers=SCHEDULER_HEADERS, timeout=5) as client:
            while not stop.is_set():
                body = {"requests": [{"user_id": u, "now": world.daytime, "k": 1} for u in users]}
                served.append(client.post("/v1/rank/batch", json=body).status_code)
                ready = client.get("/readyz")
                if ready.status_code != 200:
                    figures.broken_served += 1

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    publishers = [threading.Thread(target=publish_one) for _ in range(2)]
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join(timeout=60)
    time.sleep(0.5)
    stop.set()
    loader.join(timeout=10)
    figures.broken_served += sum(1 for status in served if status != 200)
    figures.events = len(served)
    live = PublicationStore(world.store_client, PREFIX)
    live.load(live.live_version())  # verified: loads whole
    print(figures.line(), json.dumps({"publishes": outcomes}))
    assert "live" in outcomes and set(outcomes) <= {"live", "PublishLockedError"}
    assert figures.broken_served == 0 and len(served) > 0
