"""The cap-engine contract: one test suite, run against every store (reference, Redis, Redis Cluster)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from recsys.caps.decisions import (
    Candidate,
    CapRequest,
    CapRequestError,
    EventAlreadyApplied,
    PushStatus,
    ReservationStatus,
)
from recsys.caps.engine import CapEngine
from recsys.caps.policy import Limit, Policy, PolicyError, default_policy, parse_policy
from recsys.caps.redis_engine import RedisCapEngine
from recsys.caps.reference import ReferenceCapEngine

SH = "Asia/Shanghai"
NY = "America/New_York"


def at(text: str, tz: str = SH) -> datetime:
    """A local wall-clock time in `tz` as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


def policy_with(**changes: object) -> Policy:
    document = default_policy().to_dict()
    document.update(changes)
    return parse_policy(document)


ARTICLE = Candidate("art-1")
OTHER = Candidate("art-2")
THIRD = Candidate("art-3")
BILL = Candidate("bill-due", kind="reminder", transactional=True)

EngineFactory = Callable[[Policy], CapEngine]


class CapEngineContract:
    """Behaviour every `CapEngine` must have; subclasses provide the `make` fixture."""

    @pytest.fixture
    def make(self) -> Iterator[EngineFactory]:
        raise NotImplementedError

    @pytest.fixture
    def engine(self, make: EngineFactory) -> CapEngine:
        return make(default_policy())

    def push(
        self, engine: CapEngine, user: str, when: datetime, candidate: Candidate = ARTICLE, tz: str = SH
    ):
        decision = engine.decide(user, [candidate], timezone=tz, now=when, reserve=True)
        assert decision.reservation is not None, decision.decisions
        assert engine.confirm(user, decision.reservation.push_id, now=when) == PushStatus.CONFIRMED
        return decision

    # -- default policy --------------------------------------------------------------------
    def test_first_push_is_allowed_and_reserved(self, engine: CapEngine) -> None:
        now = at("2026-03-10 10:00")
        decision = engine.decide("u1", [ARTICLE, OTHER], timezone=SH, now=now, reserve=True, push_id="p-1")
        assert [d.allowed for d in decision.decisions] == [True, True]
        assert decision.reservation is not None
        assert decision.reservation.push_id == "p-1"
        assert decision.reservation.content_id == "art-1"
        assert decision.reservation.expires_at == now + timedelta(minutes=10)
        assert decision.policy_version == default_policy().version

    def test_daily_limit_and_gap_block_until_next_morning(self, engine: CapEngine) -> None:
        self.push(engine, "u1", at("2026-03-10 10:00"))
        decision = engine.decide("u1", [OTHER], timezone=SH, now=at("2026-03-10 12:00"))
        blocked = decision.decisions[0]
        assert not blocked.allowed
        assert blocked.rules == ("limit:daily", "min_gap")
        assert blocked.blocks[0].eligible_at == at("2026-03-11 00:00")
        assert blocked.blocks[1].eligible_at == at("2026-03-10 22:00")
        # midnight is inside quiet hours: the cardholder is eligible when they end
        assert blocked.eligible_at == at("2026-03-11 08:00")
        assert "1 of at most 1" in blocked.blocks[0].detail
        assert engine.decide("u1", [OTHER], timezone=SH, now=at("2026-03-11 08:00")).decisions[0].allowed

    def test_monthly_limit_resets_on_the_local_month(self, engine: CapEngine) -> None:
        for day, content in zip((3, 10, 17, 24), ("a", "b", "c", "d"), strict=True):
            self.push(engine, "u1", at(f"2027-01-{day:02d} 09:00", NY), Candidate(content), tz=NY)
            engine.record_open("u1", now=at(f"2027-01-{day:02d} 09:30", NY))
        last_evening = at("2027-01-31 21:00", NY)
        blocked = engine.decide("u1", [OTHER], timezone=NY, now=last_evening).decisions[0]
        assert blocked.rules == ("limit:monthly",)
        assert blocked.eligible_at == at("2027-02-01 08:00", NY)
        assert blocked.blocks[0].eligible_at == at("2027-02-01 00:00", NY)
        # 23:30 on Jan 31 in New York is already February in UTC, but still January locally
        assert (
            not engine.decide("u1", [OTHER], timezone=NY, now=at("2027-01-31 21:30", NY)).decisions[0].allowed
        )
        assert engine.decide("u1", [OTHER], timezone=NY, now=at("2027-02-01 08:00", NY)).decisions[0].allowed

    def test_quiet_hours_cross_midnight_but_spare_transactional(self, engine: CapEngine) -> None:
        night = at("2026-03-10 23:30")
        decision = engine.decide("u1", [ARTICLE, BILL], timezone=SH, now=night, reserve=True)
        assert decision.decisions[0].rules == ("quiet_hours",)
        assert decision.decisions[0].eligible_at == at("2026-03-11 08:00")
        assert decision.decisions[1].allowed
        assert decision.reservation is not None and decision.reservation.content_id == "bill-due"
        early = engine.decide("u1", [ARTICLE], timezone=SH, now=at("2026-03-11 07:59")).decisions[0]
        assert early.rules == ("quiet_hours",)
        assert engine.decide("u1", [ARTICLE], timezone=SH, now=at("2026-03-11 08:00")).decisions[0].allowed

    def test_same_content_never_twice(self, engine: CapEngine) -> None:
        self.push(engine, "u1", at("2026-03-01 10:00"))
        later = at("2026-03-20 10:00")
        decision = engine.decide("u1", [ARTICLE, OTHER], timezone=SH, now=later)
        assert decision.decisions[0].rules == ("no_repeat",)
        assert decision.decisions[0].eligible_at is None
        assert decision.decisions[1].allowed
        assert engine.decide("u1", [ARTICLE], timezone=SH, now=at("2026-09-01 10:00")).decisions[0].rules == (
            "no_repeat",
        )

    # -- reservations ---------------------------------------------------------------------
    def test_pending_reservation_counts_and_release_gives_it_back(self, engine: CapEngine) -> None:
        now = at("2026-03-10 10:00")
        first = engine.decide("u1", [ARTICLE], timezone=SH, now=now, reserve=True)
        assert first.reservation is not None
        second = engine.decide("u1", [OTHER], timezone=SH, now=now, reserve=True)
        assert second.reservation is None
        assert second.decisions[0].rules == ("limit:daily", "min_gap")
        assert engine.release("u1", first.reservation.push_id, now=now) == PushStatus.RELEASED
        third = engine.decide("u1", [OTHER], timezone=SH, now=now, reserve=True)
        assert third.reservation is not None and third.reservation.content_id == "art-2"

    def test_confirm_and_release_are_idempotent(self, engine: CapEngine) -> None:
        now = at("2026-03-10 10:00")
        push_id = engine.decide("u1", [ARTICLE], timezone=SH, now=now, reserve=True).reservation.push_id
        assert engine.confirm("u1", push_id, now=now) == PushStatus.CONFIRMED
        assert engine.confirm("u1", push_id, now=now) == PushStatus.ALREADY_CONFIRMED
        assert engine.release("u1", push_id, now=now) == PushStatus.ALREADY_CONFIRMED
        state = engine.state("u1", timezone=SH, now=now)
        assert state.sent_total == 1 and state.unopened_streak == 1
        assert [limit.count for limit in state.limits] == [1, 1]
        other = engine.decide("u2", [ARTICLE], timezone=SH, now=now, reserve=True).reservation.push_id
        assert engine.release("u2", other, now=now) == PushStatus.RELEASED
        assert engine.release("u2", other, now=now) == PushStatus.ALREADY_RELEASED
        assert engine.confirm("u2", other, now=now) == PushStatus.ALREADY_RELEASED
        assert engine.state("u2", timezone=SH, now=now).sent_total == 0
        assert engine.confirm("u3", "never-reserved", now=now) == PushStatus.NOT_FOUND

    def test_unconfirmed_reservation_expires(self, engine: CapEngine) -> None:
        now = at("2026-03-10 10:00")
        stale = engine.decide("u1", [ARTICLE], timezone=SH, now=now, reserve=True).reservation
        assert stale is not None
        assert len(engine.state("u1", timezone=SH, now=now).pending) == 1
        after = now + timedelta(minutes=10)
        assert engine.state("u1", timezone=SH, now=after).pending == ()
        fresh = engine.decide("u1", [ARTICLE], timezone=SH, now=after, reserve=True).reservation
        assert fresh is not None and fresh.push_id != stale.push_id
        assert engine.confirm("u1", stale.push_id, now=after) == PushStatus.NOT_FOUND

    def test_a_late_sent_still_counts_at_its_time(self, engine: CapEngine) -> None:
        now = at("2026-03-10 10:00")
        stale = engine.decide("u1", [ARTICLE], timezone=SH, now=now, reserve=True).reservation
        late = now + timedelta(minutes=25)
        # a decide with reserve purges the expired reservation before the sent arrives
        assert engine.decide("u2", [ARTICLE], timezone=SH, now=late, reserve=True).reservation
        engine.decide("u1", [BILL], timezone=SH, now=late, reserve=True)
        status = engine.confirm("u1", stale.push_id, now=late, sent=ARTICLE)
        assert status == PushStatus.RECORDED
        state = engine.state("u1", timezone=SH, now=late)
        assert state.sent_total == 1 and state.unopened_streak == 1
        assert engine.decide("u1", [OTHER], timezone=SH, now=late).decisions[0].rules == (
            "limit:daily", "min_gap")
        assert engine.confirm("u1", stale.push_id, now=late, sent=ARTICLE) == PushStatus.ALREADY_CONFIRMED
        # without a description of what was sent, an unknown push is still refused
        assert engine.confirm("u3", "never-reserved", now=late) == PushStatus.NOT_FOUND

    def test_an_event_id_is_applied_once(self, engine: CapEngine) -> None:
        now = at("2026-03-10 10:00")
        push_id = engine.decide("u1", [ARTICLE], timezone=SH, now=now, reserve=True).reservation.push_id
        assert engine.confirm("u1", push_id, now=now, event_id="e1") == PushStatus.CONFIRMED
        with pytest.raises(EventAlreadyApplied):
            engine.confirm("u1", push_id, now=now, event_id="e1")
        with pytest.raises(EventAlreadyApplied):
            engine.record_open("u1", now=now, push_id=push_id, event_id="e1")
        assert engine.state("u1", timezone=SH, now=now).unopened_streak == 1
        engine.record_mute("u1", now=now, event_id="e2")
        with pytest.raises(EventAlreadyApplied):
            engine.record_mute("u1", now=now + timedelta(days=1), event_id="e2")
        # event ids are per cardholder
        engine.record_opt_out("u2", now=now, event_id="e1")
        assert engine.state("u2", timezone=SH, now=now).opted_out

    def test_an_open_of_an_unknown_push_leaves_the_streak(self, engine: CapEngine) -> None:
        now = at("2026-03-10 10:00")
        decision = self.push(engine, "u1", now)
        assert engine.record_open("u1", now=now, push_id="not-a-push-of-u1") is False
        assert engine.state("u1", timezone=SH, now=now).unopened_streak == 1
        assert engine.record_open("u1", now=now, push_id=decision.reservation.push_id) is True
        assert engine.state("u1", timezone=SH, now=now).unopened_streak == 0

    def test_send_outcomes_keep_the_latest_marketing_sends_and_their_opens_once(self, engine: CapEngine
                                                                                ) -> None:
        from recsys.caps.rules import SEND_OUTCOMES

        asked, sent = at("2026-03-10 10:00"), at("2026-03-10 19:30")
        push_id = engine.decide("u1", [ARTICLE], timezone=SH, now=asked, reserve=True).reservation.push_id
        # sent at the later `send_at` answered, after the reservation expired: kept at the time it was sent
        assert engine.confirm("u1", push_id, now=sent, event_id="s1", sent=ARTICLE) == PushStatus.RECORDED
        sent_ms = int(sent.timestamp() * 1000)
        assert engine.load_record("u1").outcomes == [(push_id, sent_ms, False)]
        with pytest.raises(EventAlreadyApplied):
            engine.confirm("u1", push_id, now=sent, event_id="s1", sent=ARTICLE)
        assert engine.confirm("u1", push_id, now=sent, event_id="s2", sent=ARTICLE) == (
            PushStatus.ALREADY_CONFIRMED)
        assert engine.load_record("u1").outcomes == [(push_id, sent_ms, False)]
        assert engine.record_open("u1", now=sent + timedelta(minutes=5), push_id=push_id, event_id="o1")
        with pytest.raises(EventAlreadyApplied):
            engine.record_open("u1", now=sent + timedelta(minutes=5), push_id=push_id, event_id="o1")
        # a click after the open, or an open naming no push, marks nothing more
        assert engine.record_open("u1", now=sent + timedelta(minutes=6), push_id=push_id, event_id="c1")
        assert engine.record_open("u1", now=sent + timedelta(minutes=7))
        assert engine.load_record("u1").outcomes == [(push_id, sent_ms, True)]
        # transactional sends are not kept; the latest SEND_OUTCOMES marketing sends are
        assert engine.confirm("u2", "bill", now=sent, sent=BILL) == PushStatus.RECORDED
        assert engine.load_record("u2").outcomes == []
        for day in range(SEND_OUTCOMES + 2):
            moment = sent + timedelta(days=day)
            status = engine.confirm("u2", f"p-{day}", now=moment, sent=Candidate(f"a-{day}"))
            assert status == PushStatus.RECORDED
        kept = engine.load_record("u2").outcomes
        assert [pid for pid, _, _ in kept] == [f"p-{day}" for day in range(2, SEND_OUTCOMES + 2)]
        assert not any(opened for _, _, opened in kept)

    def test_records_of_many_cardholders_are_each_ones_record(self, engine: CapEngine) -> None:
        """`load_records` (one round trip) gives `load_record` of each cardholder, in the order asked:
        reservations, confirmed and released pushes, send outcomes with an open, an opt-out, a mute,
        and a cardholder never seen."""
        now = at("2026-03-10 10:00")
        kept = engine.decide("u1", [ARTICLE], timezone=SH, now=now, reserve=True).reservation.push_id
        engine.confirm("u1", kept, now=now + timedelta(hours=1), sent=ARTICLE)
        engine.record_open("u1", now=now + timedelta(hours=2), push_id=kept)
        engine.decide("u2", [ARTICLE], timezone=SH, now=now, reserve=True)
        engine.record_opt_out("u3", now=now)
        engine.record_mute("u4", now=now)
        gone = engine.decide("u5", [ARTICLE], timezone=SH, now=now, reserve=True).reservation.push_id
        engine.release("u5", gone, now=now)
        users = ["u4", "nobody", "u1", "u3", "u2", "u5", "u1"]
        assert engine.load_records(users) == [engine.load_record(user) for user in users]
        assert engine.load_records(["u1"])[0].pushes and engine.load_records(["u1"])[0].outcomes
        assert engine.load_records([]) == []

    def test_reserving_again_with_a_known_push_id_replays(self, engine: CapEngine) -> None:
        now = at("2026-03-10 10:00")
        first = engine.decide("u1", [ARTICLE], timezone=SH, now=now, reserve=True, push_id="retry-me")
        again = engine.decide("u1", [OTHER], timezone=SH, now=now, reserve=True, push_id="retry-me")
        assert again.reservation is not None and again.reservation.replayed
        assert again.reservation.content_id == first.reservation.content_id == "art-1"
        assert len(engine.state("u1", timezone=SH, now=now).pending) == 1

    # -- cardholder reactions ---------------------------------------------------------------
    def test_opt_out_blocks_marketing_until_opt_in(self, engine: CapEngine) -> None:
        now = at("2026-03-10 10:00")
        engine.record_opt_out("u1", now=now)
        decision = engine.decide("u1", [ARTICLE, BILL], timezone=SH, now=now)
        assert decision.decisions[0].rules == ("opt_out",)
        assert decision.decisions[0].eligible_at is None
        assert decision.decisions[1].allowed
        state = engine.state("u1", timezone=SH, now=now)
        assert state.opted_out and state.next_eligible_at is None
        engine.record_opt_in("u1", now=now)
        assert engine.decide("u1", [ARTICLE], timezone=SH, now=now).decisions[0].allowed

    def test_mute_blocks_until_unmuted_or_for_the_pause(self, make: EngineFactory) -> None:
        engine = make(default_policy())
        now = at("2026-03-10 10:00")
        engine.record_mute("u1", now=now)
        assert engine.decide("u1", [ARTICLE], timezone=SH, now=now + timedelta(days=300)).decisions[
            0
        ].rules == ("muted",)
        engine.record_unmute("u1", now=now)
        assert engine.decide("u1", [ARTICLE], timezone=SH, now=now).decisions[0].allowed
        engine.set_policy(policy_with(mute={"pause": "30d"}))
        engine.record_mute("u2", now=now)
        blocked = engine.decide("u2", [ARTICLE], timezone=SH, now=now).decisions[0]
        assert blocked.rules == ("muted",) and blocked.eligible_at == now + timedelta(days=30)
        assert engine.decide("u2", [ARTICLE], timezone=SH, now=now + timedelta(days=30)).decisions[0].allowed

    def test_fatigue_pauses_after_unopened_pushes_and_open_resets(self, engine: CapEngine) -> None:
        days = [at("2026-03-02 10:00"), at("2026-03-03 10:00"), at("2026-03-04 10:00")]
        for index, day in enumerate(days):
            self.push(engine, "u1", day, Candidate(f"c{index}"))
        blocked = engine.decide("u1", [OTHER], timezone=SH, now=at("2026-03-05 10:00")).decisions[0]
        assert blocked.rules == ("fatigue",)
        assert blocked.blocks[0].eligible_at == days[-1] + timedelta(days=14)
        assert "3 consecutive unopened" in blocked.blocks[0].detail
        engine.record_open("u1", now=at("2026-03-05 11:00"))
        assert engine.decide("u1", [OTHER], timezone=SH, now=at("2026-03-05 11:00")).decisions[0].allowed

    # -- richer policies ----------------------------------------------------------------------
    def test_kind_limit_on_a_rolling_week(self, make: EngineFactory) -> None:
        policy = policy_with(
            limits=[
                {"name": "daily", "window": "calendar_day", "max": 3},
                {"name": "promos", "window": "rolling", "duration": "7d", "max": 2, "kinds": ["promotion"]},
                {"name": "dining", "window": "rolling", "duration": "3d", "max": 1, "tags": ["dining"]},
            ],
            min_gap=None,
            fatigue=None,
        )
        engine = make(policy)
        first, second = at("2026-03-02 10:00"), at("2026-03-04 10:00")
        self.push(engine, "u1", first, Candidate("p1", kind="promotion"))
        self.push(engine, "u1", second, Candidate("p2", kind="promotion", tags=("dining", "weekend")))
        now = at("2026-03-05 10:00")
        decision = engine.decide(
            "u1",
            [
                Candidate("p3", kind="promotion"),
                Candidate("a1", tags=("dining",)),
                Candidate("a2", tags=("travel",)),
            ],
            timezone=SH,
            now=now,
        )
        promo, dining, travel = decision.decisions
        assert promo.rules == ("limit:promos",)
        assert promo.eligible_at == first + timedelta(days=7)
        assert dining.rules == ("limit:dining",)
        assert dining.eligible_at == second + timedelta(days=3)
        assert travel.allowed
        assert (
            engine.decide(
                "u1", [Candidate("p3", kind="promotion")], timezone=SH, now=first + timedelta(days=7)
            )
            .decisions[0]
            .allowed
        )

    def test_transactional_counts_only_when_the_policy_says_so(self, make: EngineFactory) -> None:
        now = at("2026-03-10 10:00")
        engine = make(default_policy())
        self.push(engine, "u1", now, BILL)
        assert engine.decide("u1", [ARTICLE], timezone=SH, now=now).decisions[0].allowed
        counting = make(policy_with(transactional={"counts_toward_limits": True}))
        self.push(counting, "u2", now, BILL)
        assert counting.decide("u2", [ARTICLE], timezone=SH, now=now).decisions[0].rules == (
            "limit:daily",
            "min_gap",
        )
        assert counting.decide("u2", [BILL], timezone=SH, now=now).decisions[0].allowed

    def test_rolling_limit_over_full_waits_for_enough_pushes_to_leave(self, make: EngineFactory) -> None:
        engine = make(
            policy_with(
                limits=[{"name": "two_days", "window": "rolling", "duration": "2d", "max": 2}],
                transactional={"counts_toward_limits": True},
                min_gap=None,
                quiet_hours=None,
            )
        )
        times = [at("2026-03-02 10:00"), at("2026-03-02 11:00"), at("2026-03-02 12:00")]
        for index, when in enumerate(times):
            self.push(engine, "u1", when, Candidate(f"bill-{index}", kind="reminder", transactional=True))
        blocked = engine.decide("u1", [ARTICLE], timezone=SH, now=at("2026-03-02 13:00")).decisions[0]
        assert blocked.blocks[0].rule == "limit:two_days" and "3 of at most 2" in blocked.blocks[0].detail
        # three in the window, at most two: the second-oldest must leave too
        assert blocked.eligible_at == times[1] + timedelta(days=2)

    def test_campaign_throttle_falls_back_to_the_next_candidate(self, make: EngineFactory) -> None:
        engine = make(policy_with(campaign_throttle={"max": 2, "per": "1m"}))
        now = at("2026-03-10 10:00:10")
        promo = Candidate("spring", kind="promotion", campaign="spring-sale")
        requests = [CapRequest(f"u{i}", (promo, ARTICLE), SH, reserve=True) for i in range(4)]
        results = engine.decide_batch(requests, now=now)
        contents = [result.reservation.content_id for result in results]
        assert contents == ["spring", "spring", "art-1", "art-1"]
        throttled = results[2].decisions[0]
        assert throttled.rules == ("campaign_throttle",)
        assert throttled.eligible_at == at("2026-03-10 10:01")
        later = engine.decide("u9", [promo], timezone=SH, now=at("2026-03-10 10:01"), reserve=True)
        assert later.reservation is not None and later.reservation.content_id == "spring"

    def test_batch_of_many_cardholders(self, engine: CapEngine) -> None:
        now = at("2026-03-10 10:00")
        engine.record_opt_out("u7", now=now)
        requests = [CapRequest(f"u{i}", (ARTICLE, OTHER), SH, reserve=True) for i in range(60)]
        results = engine.decide_batch(requests, now=now)
        assert [r.user_id for r in results] == [f"u{i}" for i in range(60)]
        reserved = [r for r in results if r.reservation is not None]
        assert len(reserved) == 59
        assert results[7].reservation is None and results[7].decisions[0].rules == ("opt_out",)
        again = engine.decide_batch(requests, now=now + timedelta(minutes=5))
        assert all(r.reservation is None for r in again)

    def test_state_reports_counts_and_next_eligible_time(self, engine: CapEngine) -> None:
        self.push(engine, "u1", at("2026-03-10 10:00"))
        pending = engine.decide("u2", [ARTICLE], timezone=SH, now=at("2026-03-10 10:00"), reserve=True)
        state = engine.state("u1", timezone=SH, now=at("2026-03-10 11:00"))
        assert {limit.name: limit.count for limit in state.limits} == {"daily": 1, "monthly": 1}
        assert state.next_eligible_at == at("2026-03-11 08:00")
        assert state.last_sent_at == at("2026-03-10 10:00")
        other = engine.state("u2", timezone=SH, now=at("2026-03-10 10:05"))
        assert [res.push_id for res in other.pending] == [pending.reservation.push_id]
        assert other.pending[0].status == ReservationStatus.RESERVED
        fresh = engine.state("nobody", now=at("2026-03-10 10:05"))
        assert fresh.next_eligible_at == at("2026-03-10 10:05") and fresh.timezone == SH

    def test_set_policy_applies_to_stored_history(self, engine: CapEngine) -> None:
        self.push(engine, "u1", at("2026-03-10 10:00"))
        assert not engine.decide("u1", [OTHER], timezone=SH, now=at("2026-03-10 11:00")).decisions[0].allowed
        engine.set_policy(
            policy_with(
                version="two-a-day",
                limits=[{"name": "daily", "window": "calendar_day", "max": 2}],
                min_gap=None,
            )
        )
        decision = engine.decide("u1", [OTHER], timezone=SH, now=at("2026-03-10 11:00"))
        assert decision.decisions[0].allowed and decision.policy_version == "two-a-day"

    def test_daylight_saving_day_boundaries(self, engine: CapEngine) -> None:
        # 2026-03-08 has 23 hours in New York; the day limit ends at local midnight, not +24h.
        self.push(engine, "u1", at("2026-03-08 09:00", NY), tz=NY)
        blocked = engine.decide("u1", [OTHER], timezone=NY, now=at("2026-03-08 12:00", NY)).decisions[0]
        assert blocked.blocks[0].eligible_at == at("2026-03-09 00:00", NY)
        assert blocked.blocks[0].eligible_at - at("2026-03-08 00:00", NY) == timedelta(hours=23)

    def test_window_edges_are_exact_to_the_millisecond(self, make: EngineFactory) -> None:
        engine = make(
            policy_with(
                limits=[
                    {"name": "daily", "window": "calendar_day", "max": 5},
                    {"name": "x_two_days", "window": "rolling", "duration": "2d", "max": 1, "tags": ["x"]},
                ],
                min_gap="1h",
                no_repeat={"window": "3d"},
                quiet_hours=None,
                fatigue=None,
            )
        )
        ms = timedelta(milliseconds=1)
        t0 = at("2026-03-02 10:00")
        self.push(engine, "u1", t0, Candidate("A", tags=("x",)))

        def rules_at(candidate: Candidate, when: datetime) -> tuple[str, ...]:
            return engine.decide("u1", [candidate], timezone=SH, now=when).decisions[0].rules

        assert rules_at(Candidate("B"), t0 + timedelta(hours=1) - ms) == ("min_gap",)
        assert rules_at(Candidate("B"), t0 + timedelta(hours=1)) == ()
        assert rules_at(Candidate("B", tags=("x",)), t0 + timedelta(days=2) - ms) == ("limit:x_two_days",)
        assert rules_at(Candidate("B", tags=("x",)), t0 + timedelta(days=2)) == ()
        assert rules_at(Candidate("A"), t0 + timedelta(days=3) - ms) == ("no_repeat",)
        assert rules_at(Candidate("A"), t0 + timedelta(days=3)) == ()
        t1 = at("2026-03-10 10:00")
        engine.decide("u1", [Candidate("C")], timezone=SH, now=t1, reserve=True)
        assert rules_at(Candidate("D"), t1 + timedelta(minutes=10) - ms) == ("min_gap",)
        assert rules_at(Candidate("D"), t1 + timedelta(minutes=10)) == ()

    def test_a_push_at_local_midnight_counts_for_the_new_day(self, make: EngineFactory) -> None:
        engine = make(policy_with(min_gap=None, quiet_hours=None, fatigue=None))
        ms = timedelta(milliseconds=1)
        midnight = at("2026-04-01 00:00", NY)
        self.push(engine, "u1", midnight - ms, Candidate("a"), tz=NY)
        self.push(engine, "u1", midnight, Candidate("b"), tz=NY)
        blocked = engine.decide("u1", [Candidate("c")], timezone=NY, now=midnight + ms).decisions[0]
        assert blocked.rules == ("limit:daily",)
        state = engine.state("u1", timezone=NY, now=midnight + ms)
        assert [(limit.name, limit.count) for limit in state.limits] == [("daily", 1), ("monthly", 1)]

    def test_bad_requests_are_refused(self, engine: CapEngine) -> None:
        with pytest.raises(CapRequestError, match="unknown time zone 'Mars/Olympus'"):
            engine.decide("u1", [ARTICLE], timezone="Mars/Olympus")
        with pytest.raises(CapRequestError, match="appears twice"):
            engine.decide_batch([CapRequest("u1", (ARTICLE,)), CapRequest("u1", (OTHER,))])
        with pytest.raises(CapRequestError, match="user_id"):
            engine.decide("", [ARTICLE])

    def test_a_batch_names_its_first_bad_request(self, engine: CapEngine) -> None:
        good = [CapRequest(f"u{i}", (ARTICLE,)) for i in range(3)]
        cases = [
            (CapRequest("", (ARTICLE,)), r"requests\[2\]\.user_id must be a non-empty string"),
            (CapRequest(7, (ARTICLE,)), r"requests\[2\]\.user_id must be a non-empty string, got 7"),  # type: ignore[arg-type]
            (CapRequest("u\x1e9", (ARTICLE,)), r"requests\[2\]\.user_id 'u\\x1e9': at most 256 characters"),
            (CapRequest("u" * 257, (ARTICLE,)), r"requests\[2\]\.user_id 'u{40}': at most 256 characters"),
            (CapRequest("u1", (ARTICLE,)), r"requests\[2\]: cardholder 'u1' appears twice"),
            (CapRequest("u9", (ARTICLE,), push_id="p\x1f"), r"requests\[2\]\.push_id 'p\\x1f'"),
            (CapRequest("u9", (ARTICLE,), timezone="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        ]
        for bad, message in cases:
            with pytest.raises(CapRequestError, match=message):
                engine.decide_batch([*good[:2], bad, *good[2:]])


class TestReferenceEngine(CapEngineContract):
    @pytest.fixture
    def make(self) -> Iterator[EngineFactory]:
        yield ReferenceCapEngine


@pytest.mark.redis
class TestRedisEngine(CapEngineContract):
    @pytest.fixture
    def make(self, redis_url: str, key_prefix: str, redis_client) -> Iterator[EngineFactory]:
        engines: list[RedisCapEngine] = []

        def build(policy: Policy) -> CapEngine:
            engines.append(RedisCapEngine.from_url(redis_url, policy, prefix=f"{key_prefix}-{len(engines)}"))
            return engines[-1]

        yield build
        for engine in engines:
            engine.close()

    def test_keys_share_one_hash_tag_and_expire(self, engine: RedisCapEngine, redis_client) -> None:
        self.push(engine, "u1", at("2026-03-10 10:00"))
        key = engine.user_key("u1")
        assert key.startswith("{") and key.endswith("}")
        assert 0 < redis_client.pttl(key) <= 400 * 86_400_000
        engine.record_opt_out("u1", now=at("2026-03-10 11:00"))
        assert redis_client.pttl(key) == -1  # an opt-out is never forgotten
        assert engine.memory_usage("u1") > 0

    def test_a_policy_the_script_cannot_hold_is_refused_and_the_old_one_kept(
        self, engine: RedisCapEngine
    ) -> None:
        # past the policy's own bound (30 limits), as a policy object built without validation
        limits = tuple(Limit(name=f"l{i}", window="calendar_day", max=5) for i in range(31))
        with pytest.raises(PolicyError, match="at most 30 limits"):
            engine.set_policy(default_policy().model_copy(update={"limits": limits}))
        assert engine.policy == default_policy()
        self.push(engine, "u1", at("2026-03-10 10:00"))
        assert engine.decide("u1", [OTHER], timezone=SH, now=at("2026-03-10 11:00")).decisions[0].rules == (
            "limit:daily",
            "min_gap",
        )


@pytest.mark.redis
@pytest.mark.cluster
class TestRedisClusterEngine(CapEngineContract):
    @pytest.fixture
    def make(self, cluster_url: str, key_prefix: str) -> Iterator[EngineFactory]:
        engines: list[RedisCapEngine] = []

        def build(policy: Policy) -> CapEngine:
            engine = RedisCapEngine.from_url(
                cluster_url, policy, prefix=f"{key_prefix}-{len(engines)}", cluster=True
            )
            engines.append(engine)
            return engine

        yield build
        for engine in engines:
            engine.close()

    def test_batch_spans_every_node(self, engine: RedisCapEngine) -> None:
        client = engine._client
        nodes = {client.get_node_from_key(engine.user_key(f"u{i}")).name for i in range(60)}
        assert len(nodes) == 3
