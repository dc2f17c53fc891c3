"""`recsys serve` on a loopback port: a new model and a new policy go live with no failed request."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from serving_support import ADMIN, ADMIN_HEADERS, SCHEDULER, SCHEDULER_HEADERS, wait_until_ready

from recsys.embedded_redis import free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def server(settings, redis_client, published, tmp_path: Path):
    """`recsys serve --workers 2` over the test's prefix, started after the first publication."""
    port = free_port()
    env = {
        **os.environ,
        "RECSYS_REDIS_URL": settings.redis_url, "RECSYS_REDIS_PREFIX": settings.redis_prefix,
        "RECSYS_HOME": str(tmp_path / "home"),
        "RECSYS_SCHEDULER_TOKEN": SCHEDULER, "RECSYS_ADMIN_TOKEN": ADMIN,
        "RECSYS_RELOAD_INTERVAL_SECONDS": "0.2", "RECSYS_LOG_LEVEL": "WARNING",
        "RECSYS_SERVER_TIME": settings.server_time.isoformat(),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    recsys = Path(sys.executable).with_name("recsys")
    process = subprocess.Popen([str(recsys), "serve", "--port", str(port), "--workers", "2"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    wait_until_ready(base, process, lambda: process.stderr.read().decode())
    try:
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_new_model_goes_live_without_dropped_requests(server, published, other_bundle_path, dataset, store,
                                                      daytime) -> None:
    from publishing.publish import publish
    from recsys.bundle import ModelBundle

    users = dataset.cardholders["user_id"].astype(str).tolist()[:200]
    seen_versions: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def hammer(offset: int) -> None:
        with httpx.Client(base_url=server, headers=SCHEDULER_HEADERS, timeout=10) as client:
            n = offset
            while not stop.is_set():
                response = client.post("/v1/rank", json={"user_id": users[n % len(users)], "now": daytime})
                statuses[response.status_code] += 1
                if response.status_code != 200:
                    failures.append(response.text[:300])
                if response.status_code == 200:
                    seen_versions[response.json()["model_version"]] += 1
                n += 1

    threads = [threading.Thread(target=hammer, args=(i * 37,)) for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        second = publish(ModelBundle.load(other_bundle_path), dataset, store)
        deadline = time.monotonic() + 10
        while seen_versions[second.version] < 20 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert set(statuses) == {200}, (statuses, failures[:3])
    assert seen_versions[published.version] > 0 and seen_versions[second.version] >= 20
    ready = httpx.get(f"{server}/readyz").json()
    assert ready["model_version"] == second.version


def test_metrics_aggregate_workers(server, published) -> None:
    with httpx.Client(base_url=server, headers=ADMIN_HEADERS) as client:
        for _ in range(20):
            assert client.get("/v1/policy").status_code == 200
        text = client.get("/metrics").text
    line = next(line for line in text.splitlines()
                if line.startswith("qianmian_http_requests_total") and 'route="/v1/policy"' in line)
    assert float(line.rsplit(" ", 1)[1]) == 20.0
    assert "qianmian_http_request_duration_seconds_bucket" in text
