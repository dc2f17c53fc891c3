"""`recsys caps state` reads a cardholder's cap state from Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from qianmian.cli import app
from recsys.caps.decisions import Candidate
from recsys.caps.redis_engine import RedisCapEngine
from recsys.embedded_redis import free_port

pytestmark = pytest.mark.redis


def test_state_shows_counts_and_blocks(redis_url: str, key_prefix: str, redis_client) -> None:
    engine = RedisCapEngine.from_url(redis_url, prefix=key_prefix)
    now = datetime(2026, 10, 31, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    decision = engine.decide(
        "u1", [Candidate("welcome", kind="reminder", transactional=True)], now=now, reserve=True
    )
    engine.confirm("u1", decision.reservation.push_id, now=now)
    engine.record_opt_out("u1", now=now)
    engine.close()
    result = CliRunner().invoke(
        app, ["caps", "state", "u1", "--redis-url", redis_url, "--prefix", key_prefix,
              "--now", "2026-10-31T10:05:00+08:00"]
    )
    assert result.exit_code == 0, result.output
    assert "daily: 0/1" in result.output  # transactional notices do not count by default
    assert "opted out: True" in result.output
    assert "next eligible: never" in result.output
    assert "blocked by opt_out" in result.output
    assert "as of 2026-10-31 02:05:00 UTC" in result.output


def test_state_names_a_bad_now() -> None:
    result = CliRunner().invoke(app, ["caps", "state", "u1", "--now", "yesterday"])
    assert result.exit_code == 2
    assert "--now" in result.output and "'yesterday'" in result.output


def test_state_with_redis_down_exits_3() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(app, ["caps", "state", "u1", "--redis-url", url])
    assert result.exit_code == 3
    assert "unreachable" in result.output
