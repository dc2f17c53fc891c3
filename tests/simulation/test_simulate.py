"""The day-by-day replay: determinism, common random numbers, accounting, segments, reference agreement."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from recsys.caps.decisions import Candidate
from recsys.caps.policy import default_policy
from recsys.caps.reference import ReferenceCapEngine
from simulation.replay import History
from simulation.runner import ScheduleConfig, SlotTrace, simulate, simulate_policy
from simulation.vector_caps import SimulationError, rule_names
from tests.simulation.conftest import policy_from

CONFIG = ScheduleConfig(days=12, seed=3)
ADDITIVE = ("attempts", "sent", "reached", "expected_opens", "expected_mutes", "opens", "mutes", "blocked",
            "no_candidate", "deferred_quiet_hours", "cardholders")


def outcome_numbers(report) -> list[dict]:
    return [{key: value for key, value in outcome.to_dict().items() if key != "seconds"}
            for outcome in report.outcomes]


def test_same_seed_same_report_and_other_seed_differs(small_world, strict_policy) -> None:
    first = simulate(small_world, [default_policy(), strict_policy], CONFIG)
    again = simulate(small_world, [default_policy(), strict_policy], CONFIG)
    assert outcome_numbers(first) == outcome_numbers(again)
    other = simulate(small_world, [default_policy(), strict_policy], replace(CONFIG, seed=4))
    assert outcome_numbers(other) != outcome_numbers(first)
    assert first.outcomes[0].total.sent > 100


def test_common_random_numbers_a_rule_that_never_binds_changes_nothing(small_world) -> None:
    base = default_policy()
    never_binds = {"name": "yearly", "window": "rolling", "duration": "365d", "max": 500}
    limits = [*base.to_dict()["limits"], never_binds]
    slack = policy_from(**{**base.to_dict(), "name": "slack", "limits": limits})
    report = simulate(small_world, [base, slack], CONFIG)
    a, b = report.outcomes
    assert a.total.to_dict() | {"blocked_by_rule": {}, "blocked_first_rule": {}} == \
        b.total.to_dict() | {"blocked_by_rule": {}, "blocked_first_rule": {}}
    assert b.total.blocked_by_rule["limit:yearly"] == 0


def test_stricter_policy_sends_fewer_pushes_and_causes_fewer_mutes(small_world, strict_policy,
                                                                   loose_policy) -> None:
    report = simulate(small_world, [strict_policy, default_policy(), loose_policy], CONFIG)
    strict, default, loose = (outcome.total for outcome in report.outcomes)
    assert strict.sent < default.sent < loose.sent
    assert strict.expected_mutes < default.expected_mutes < loose.expected_mutes
    assert strict.blocked > default.blocked > loose.blocked
    # frequency fatigue: each push of the loose policy is opened less often
    assert loose.opens_per_push < default.opens_per_push
    # the strict policy's extra rules are what blocked it
    assert strict.blocked_by_rule["min_gap"] > 0
    assert strict.blocked_by_rule["limit:monthly"] > default.blocked_by_rule["limit:monthly"]


def test_blocked_by_rule_counts_add_up(small_world, strict_policy, loose_policy) -> None:
    report = simulate(small_world, [strict_policy, default_policy(), loose_policy], CONFIG)
    for outcome in report.outcomes:
        total = outcome.total
        assert total.attempts == total.sent + total.blocked + total.no_candidate
        assert sum(total.blocked_first_rule.values()) == total.blocked
        for rule, count in total.blocked_by_rule.items():
            assert total.blocked_first_rule[rule] <= count <= total.blocked, rule
        expected = {*rule_names(small_world_policy(outcome)), "combined"} - {"campaign_throttle"}
        assert set(total.blocked_by_rule) == expected


def small_world_policy(outcome):
    return policy_from(**outcome.policy)


def test_segment_breakdown_sums_to_totals(small_world, strict_policy) -> None:
    report = simulate(small_world, [strict_policy, default_policy()], CONFIG)
    for outcome in report.outcomes:
        assert set(outcome.segments) == {"card_tier", "activity"}
        assert set(outcome.segments["activity"]) == {"low", "medium", "high"}
        for tallies in outcome.segments.values():
            for key in ADDITIVE:
                parts = sum(getattr(tally, key) for tally in tallies.values())
                assert parts == pytest.approx(getattr(outcome.total, key)), key
            for rule, count in outcome.total.blocked_by_rule.items():
                assert sum(tally.blocked_by_rule[rule] for tally in tallies.values()) == count
        assert outcome.total.cardholders == small_world.n_users
        assert sum(outcome.daily["sent"]) == outcome.total.sent
        assert sum(outcome.daily["expected_opens"]) == pytest.approx(outcome.total.expected_opens)


def test_replay_decides_as_the_reference_engine(small_world, strict_policy) -> None:
    """Every request of a replay, decided again by the reference engine: same rules, same push."""
    world = small_world.sample(120, seed=1)
    empty = np.zeros(0, dtype=np.int64)
    world = replace(world, history=History(empty, empty, empty, empty.astype(bool), empty.astype(bool)))
    policy = policy_from(**{**strict_policy.to_dict(), "quiet_hours": {"start": "20:00", "end": "09:30"},
                            "fatigue": {"after_unopened": 2, "pause": "3d"}, "mute": {"pause": "5d"},
                            "min_gap": "20h"})
    traces: list[SlotTrace] = []
    simulate_policy(world, policy, ScheduleConfig(days=8, seed=2), trace=traces.append)
    reference = ReferenceCapEngine(policy)
    rules = rule_names(policy)
    items = world.items
    compared = sent = 0
    for trace in traces:
        for j, row in enumerate(trace.rows):
            cands = [int(item) for item in world.candidates[row] if item >= 0]
            candidates = [Candidate(str(world.content_ids[i]), str(items.kinds[i]), items.tags[i],
                                    bool(items.transactional[i])) for i in cands]
            now = datetime.fromtimestamp(int(trace.now[j]), tz=UTC)
            user = str(world.user_ids[row])
            decision = reference.decide(user, candidates, timezone=world.timezones[row] or None, now=now)
            for k, expected in enumerate(decision.decisions):
                got = tuple(rules[r] for r in np.flatnonzero(trace.blocks[j, k]))
                assert got == expected.rules, (user, now, k)
                compared += 1
            if trace.chosen[j] < 0:
                continue
            valid_allowed = [k for k, d in enumerate(decision.decisions) if d.allowed and trace.valid[j, k]]
            assert valid_allowed[0] == trace.chosen[j]
            chosen = candidates[int(trace.chosen[j])]
            reserved = reference.decide(user, [chosen], timezone=world.timezones[row] or None, now=now,
                                        reserve=True).reservation
            assert reserved is not None
            reference.confirm(user, reserved.push_id, now=now)
            sent += 1
        now_of = dict(zip(trace.rows.tolist(), trace.now.tolist(), strict=True))
        for row in trace.opened:
            reference.record_open(str(world.user_ids[row]), now=datetime.fromtimestamp(now_of[int(row)], UTC))
        for row in trace.muted:
            reference.record_mute(str(world.user_ids[row]), now=datetime.fromtimestamp(now_of[int(row)], UTC))
    assert sent > 50 and compared > 10_000


def test_quiet_hours_decide_the_send_time(small_world) -> None:
    """Quiet 12:00-10:00: the 09:00 request waits until 10:00; later slots would wait past the next one."""
    policy = policy_from(name="mornings", limits=[{"name": "daily", "window": "calendar_day", "max": 1}],
                         quiet_hours={"start": "12:00", "end": "10:00"}, no_repeat={"window": "forever"})
    traces: list[SlotTrace] = []
    outcome = simulate_policy(small_world, policy, CONFIG, trace=traces.append)
    assert outcome.total.sent > 0 and outcome.total.deferred_quiet_hours > 0
    assert outcome.total.blocked_by_rule["quiet_hours"] > 0
    shanghai = small_world.timezones == "Asia/Shanghai"
    for trace in traces:
        sent_rows = trace.rows[trace.chosen >= 0]
        sent_at = trace.now[trace.chosen >= 0][shanghai[sent_rows]]
        local_minutes = ((sent_at + 8 * 3600) % 86400) // 60
        assert set(local_minutes.tolist()) <= {600}, trace.slot


def test_schedule_is_checked() -> None:
    with pytest.raises(SimulationError, match="send slot '9am'"):
        ScheduleConfig(slots=("9am",))
    with pytest.raises(SimulationError, match="days"):
        ScheduleConfig(days=0)
    with pytest.raises(SimulationError, match="in time order"):
        ScheduleConfig(slots=("12:00", "09:00"))


def test_a_sample_keeps_its_cardholders_history_renumbered(small_world) -> None:
    sample = small_world.sample(100, seed=7)
    assert sample.n_users == 100
    rows = {str(user): row for row, user in enumerate(small_world.user_ids)}
    keep = [rows[str(user)] for user in sample.user_ids]
    history = small_world.history
    expected = sum(int((history.rows == row).sum()) for row in keep)
    assert len(sample.history.rows) == expected > 0
    for new_row in np.unique(sample.history.rows)[:20]:
        old_row = keep[int(new_row)]
        assert np.array_equal(sample.history.items[sample.history.rows == new_row],
                              history.items[history.rows == old_row])
    assert small_world.sample(10_000) is small_world
