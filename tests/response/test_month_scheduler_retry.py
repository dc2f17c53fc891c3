"""The closed-loop month's scheduler client against a real HTTP server: 503s and refused connections are
retried a bounded number of times and counted, other errors are not retried, and the last failure is
raised naming the call."""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import month  # noqa: E402


class Scripted(ThreadingHTTPServer):
    """Answers each POST with the next status of `statuses` (the last one repeats) and logs the bodies."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.statuses, self.bodies = statuses, []


class Handler(BaseHTTPRequestHandler):
    server: Scripted

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append((self.path, self.headers["Authorization"], body))
        status = self.server.statuses[min(len(self.server.bodies), len(self.server.statuses)) - 1]
        payload = json.dumps({"status": status, "echo": body}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, fmt: str, *args: object) -> None:
        pass


def serving(statuses: list[int]) -> Iterator[Scripted]:
    server = Scripted(statuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def flaky() -> Iterator[Scripted]:
    yield from serving([503, 503, 200])


@pytest.fixture
def down() -> Iterator[Scripted]:
    yield from serving([503])


@pytest.fixture
def refusing() -> Iterator[Scripted]:
    yield from serving([400])


def url(server: Scripted) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_two_503s_are_retried_and_counted(flaky: Scripted) -> None:
    client = month.SchedulerClient(url(flaky), "token-a", attempts=5, backoff=0.01)
    response = client.post("/v1/rank/batch", {"requests": [{"user_id": "u1"}]})
    client.close()
    assert response.json() == {"status": 200, "echo": {"requests": [{"user_id": "u1"}]}}
    assert dict(client.retries) == {"503": 2}
    # the same call three times, with the scheduler's token
    assert flaky.bodies == [("/v1/rank/batch", "Bearer token-a", {"requests": [{"user_id": "u1"}]})] * 3


def test_a_503_that_stays_fails_clearly_after_the_attempts(down: Scripted) -> None:
    client = month.SchedulerClient(url(down), "token", attempts=3, backoff=0.01)
    with pytest.raises(RuntimeError, match=r"POST /v1/events failed 3 times, last: 503"):
        client.post("/v1/events", {"events": []})
    client.close()
    assert len(down.bodies) == 3
    assert dict(client.retries) == {"503": 2}


def test_a_refused_connection_is_retried_then_named() -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = month.SchedulerClient(f"http://127.0.0.1:{port}", "token", attempts=2, backoff=0.01)
    with pytest.raises(RuntimeError, match=r"failed 2 times, last: ConnectError"):
        client.post("/v1/rank/batch", {"requests": []})
    client.close()
    assert dict(client.retries) == {"ConnectError": 1}


def test_a_client_error_is_not_retried(refusing: Scripted) -> None:
    client = month.SchedulerClient(url(refusing), "token", attempts=5, backoff=0.01)
    with pytest.raises(httpx.HTTPStatusError, match="400"):
        client.post("/v1/rank/batch", {"requests": []})
    client.close()
    assert len(refusing.bodies) == 1
    assert dict(client.retries) == {}


def test_attempts_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="attempts must be at least 1, got 0"):
        month.SchedulerClient("http://127.0.0.1:1", "token", attempts=0)
