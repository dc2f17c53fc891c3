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


def test_state_reads_the_configured_prefix_and_says_when_there_is_no_record(
    redis_url: str, key_prefix: str, redis_client, monkeypatch
) -> None:
    from recsys.config import get_settings

    engine = RedisCapEngine.from_url(redis_url, prefix=f"{key_prefix}:caps")  # as the ranking API keys it
    now = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: outside quiet hours, on any day
    decision = engine.decide("u7", [Candidate("card-offer", kind="promotion")], now=now, reserve=True)
    engine.confirm("u7", decision.reservation.push_id, now=now)
    engine.close()
    monkeypatch.setenv("RECSYS_REDIS_URL", redis_url)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", key_prefix)
    get_settings.cache_clear()
    try:
        known = CliRunner().invoke(app, ["caps", "state", "u7", "--now", now.isoformat()])
        unknown = CliRunner().invoke(app, ["caps", "state", "u8", "--now", now.isoformat()])
    finally:
        get_settings.cache_clear()
    assert known.exit_code == 0, known.output
    assert f"key: {{{key_prefix}:caps:u:u7}} (RECSYS_REDIS_PREFIX='{key_prefix}')" in known.output
    assert "sent in history: 1" in known.output and "no caps record" not in known.output
    assert unknown.exit_code == 0, unknown.output
    assert f"no caps record: nothing was ever reserved for u8 under '{key_prefix}:caps'" in unknown.output
