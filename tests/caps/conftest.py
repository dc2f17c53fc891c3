"""Caps fixtures: a 3-node Redis Cluster on loopback ports, started with the bundled redis-server."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from recsys.embedded_redis import EmbeddedRedis, redis_server_binary, start_embedded_redis


def _cluster_port(rng: random.Random) -> int:
    """A free port whose cluster bus port (+10000) is free too; Redis refuses ports above 55535."""
    for _ in range(200):
        port = rng.randint(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free loopback port pair for a Redis Cluster node")


def _create_cluster(ports: list[int]) -> None:
    cli = Path(redis_server_binary()).with_name("redis-cli")
    if cli.exists():
        subprocess.run(
            [
                str(cli),
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        return
    clients = [redis.Redis(port=p) for p in ports]
    share = 16384 // len(ports)
    for index, client in enumerate(clients):
        last = 16383 if index == len(ports) - 1 else (index + 1) * share - 1
        client.execute_command("CLUSTER ADDSLOTS", *range(index * share, last + 1))
    for client in clients[1:]:
        client.execute_command("CLUSTER MEET", "127.0.0.1", ports[0])


def _wait_ok(ports: list[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [redis.Redis(port=p).cluster("info")["cluster_state"] for p in ports]
        if all(state == "ok" for state in states):
            return
        time.sleep(0.1)
    raise RuntimeError(f"Redis Cluster on ports {ports} did not reach cluster_state:ok")


def start_cluster() -> list[EmbeddedRedis]:
    """A fresh 3-primary Redis Cluster on free loopback ports (the caller stops the servers)."""
    servers: list[EmbeddedRedis] = []
    try:
        rng = random.Random()
        for _ in range(3):
            port = _cluster_port(rng)
            servers.append(
                start_embedded_redis(port, ["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
            )
        ports = [server.port for server in servers]
        _create_cluster(ports)
        _wait_ok(ports)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


@pytest.fixture
def own_cluster() -> Iterator[list[EmbeddedRedis]]:
    """A 3-primary Redis Cluster for one test, which may stop its nodes."""
    servers = start_cluster()
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()
