"""When Redis cannot be reached, cap decisions fail closed with `CapStoreUnavailable`."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta

import pytest

from recsys.caps.decisions import Candidate, CapRequest, CapStoreUnavailable, PushStatus
from recsys.caps.redis_engine import RedisCapEngine
from recsys.embedded_redis import free_port, start_embedded_redis

pytestmark = pytest.mark.redis

NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


def test_closed_port_fails_closed() -> None:
    engine = RedisCapEngine.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=0.3)
    with pytest.raises(CapStoreUnavailable, match="unreachable"):
        engine.decide("u1", [Candidate("a")], now=NOW, reserve=True)
    with pytest.raises(CapStoreUnavailable):
        engine.confirm("u1", "p1", now=NOW)
    with pytest.raises(CapStoreUnavailable):
        engine.record_opt_out("u1", now=NOW)
    with pytest.raises(CapStoreUnavailable):
        engine.state("u1", now=NOW)


def test_hung_server_fails_closed_and_keeps_what_was_recorded() -> None:
    server = start_embedded_redis()
    engine = RedisCapEngine.from_url(server.url, timeout=0.3)
    try:
        first = engine.decide("u1", [Candidate("a")], now=NOW, reserve=True)
        assert engine.confirm("u1", first.reservation.push_id, now=NOW) == PushStatus.CONFIRMED
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            later = NOW + timedelta(days=1)
            with pytest.raises(CapStoreUnavailable):
                engine.decide("u1", [Candidate("b")], now=later, reserve=True)
            with pytest.raises(CapStoreUnavailable):
                engine.record_open("u1", now=later)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert engine.state("u1", now=later).sent_total == 1
        # A reservation whose reply was lost may have been made after all: it only blocks, until its TTL.
        after_ttl = later + timedelta(minutes=10)
        again = engine.decide("u1", [Candidate("a"), Candidate("b")], now=after_ttl, reserve=True)
        assert again.decisions[0].rules == ("no_repeat",)
        assert again.reservation is not None and again.reservation.content_id == "b"
    finally:
        engine.close()
        server.stop()


def test_scripts_are_reloaded_after_a_flush() -> None:
    server = start_embedded_redis()
    engine = RedisCapEngine.from_url(server.url)
    try:
        first = engine.decide("u1", [Candidate("a")], now=NOW, reserve=True)
        engine._client.script_flush()
        assert engine.confirm("u1", first.reservation.push_id, now=NOW) == PushStatus.CONFIRMED
        engine._client.script_flush()
        later = engine.decide_batch(
            [CapRequest(f"u{i}", (Candidate("a"), Candidate("b"))) for i in range(5)], now=NOW
        )
        blocked = ("limit:daily", "min_gap", "no_repeat")
        assert [d.decisions[0].rules for d in later] == [(), blocked, (), (), ()]
    finally:
        engine.close()
        server.stop()


@pytest.mark.cluster
def test_a_lost_cluster_node_fails_closed(own_cluster) -> None:
    engine = RedisCapEngine.from_url(own_cluster[0].url, cluster=True, timeout=0.3)
    try:
        requests = [CapRequest(f"u{i}", (Candidate("a"),), reserve=True) for i in range(30)]
        assert all(d.reservation is not None for d in engine.decide_batch(requests, now=NOW))
        own_cluster[2].stop()
        with pytest.raises(CapStoreUnavailable):
            engine.decide_batch(requests, now=NOW + timedelta(days=1))
    finally:
        engine.close()
