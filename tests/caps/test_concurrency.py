"""Many processes reserve and confirm for the same few cardholders at once: no cap is ever exceeded."""

from __future__ import annotations

import multiprocessing
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from recsys.caps.decisions import Candidate, PushStatus
from recsys.caps.policy import parse_policy
from recsys.caps.redis_engine import RedisCapEngine

pytestmark = pytest.mark.redis

PROCESSES = 8
ATTEMPTS = 150
USERS = ["alice", "bob", "chen", "dana", "eli", "fang"]
DAILY_MAX = 3
BLITZ_MAX = 5
POLICY = {
    "version": "contention-1",
    "limits": [{"name": "daily", "window": "calendar_day", "max": DAILY_MAX}],
    "no_repeat": {"window": "forever"},
    "campaign_throttle": {"max": 1000, "per": "1h", "campaigns": {"blitz": {"max": BLITZ_MAX, "per": "1h"}}},
}
CONTENTS = [Candidate(f"c{i}", campaign="blitz" if i % 2 == 0 else None) for i in range(6)]
T0 = datetime(2026, 5, 20, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def _worker(url: str, prefix: str, seed: int, barrier, results) -> None:
    try:
        results.put(_attempts(url, prefix, seed, barrier))
    except Exception as error:  # the parent fails the test with it
        results.put(f"worker {seed} failed: {error!r}")


def _attempts(url: str, prefix: str, seed: int, barrier) -> list[tuple[str, str, str, str | None]]:
    rng = random.Random(seed)
    engine = RedisCapEngine.from_url(url, parse_policy(POLICY), prefix=prefix)
    confirmed = []
    barrier.wait(timeout=60)
    for attempt in range(ATTEMPTS):
        user = rng.choice(USERS)
        now = T0 + timedelta(seconds=rng.randint(0, 600))
        candidates = rng.sample(CONTENTS, 4)
        push_id = f"w{seed}-{attempt}"
        decision = engine.decide(user, candidates, now=now, reserve=True, push_id=push_id)
        if decision.reservation is None:
            continue
        if rng.random() < 0.2:
            engine.release(user, push_id, now=now)
            continue
        if engine.confirm(user, push_id, now=now) == PushStatus.CONFIRMED:
            content = decision.reservation.content_id
            campaign = next(c.campaign for c in candidates if c.content_id == content)
            confirmed.append((user, push_id, content, campaign))
        # a retried confirm must not count twice
        engine.confirm(user, push_id, now=now)
    engine.close()
    return confirmed


def test_no_cap_is_exceeded_under_contention(redis_url: str, key_prefix: str, redis_client) -> None:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [
        context.Process(target=_worker, args=(redis_url, key_prefix, seed, barrier, results))
        for seed in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    log = []
    for _ in workers:
        got = results.get(timeout=120)
        assert not isinstance(got, str), got
        log += got
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    per_user = Counter(user for user, _, _, _ in log)
    per_user_content = Counter((user, content) for user, _, content, _ in log)
    blitz = sum(1 for *_, campaign in log if campaign == "blitz")
    assert len({push_id for _, push_id, _, _ in log}) == len(log)
    assert max(per_user.values()) <= DAILY_MAX, per_user
    assert max(per_user_content.values()) == 1, per_user_content
    assert blitz <= BLITZ_MAX
    # 1,200 attempts for 6 cardholders: every daily slot is taken, none twice
    assert per_user == dict.fromkeys(USERS, DAILY_MAX)

    engine = RedisCapEngine.from_url(redis_url, parse_policy(POLICY), prefix=key_prefix)
    for user in USERS:
        state = engine.state(user, now=T0 + timedelta(minutes=11))
        assert state.sent_total == per_user[user]
        assert state.pending == ()
    engine.close()
