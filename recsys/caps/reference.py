"""`ReferenceCapEngine`: the policy applied in plain Python, in memory — the specification.

Used by tests (the Redis engine must decide exactly as this one does), by the simulator, and by
single-process tools. Thread-safe; state lives only as long as the object.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from recsys.caps import rules
from recsys.caps.decisions import (
    Candidate,
    CapRequest,
    EventAlreadyApplied,
    PushStatus,
    UserDecision,
    from_ms,
    now_utc,
    to_ms,
)
from recsys.caps.engine import CapEngine, check_id, new_push_id, reservation_of
from recsys.caps.policy import Policy, default_policy


class ReferenceCapEngine(CapEngine):
    """In-memory cap engine; the reference semantics for every other store."""

    def __init__(self, policy: Policy | None = None) -> None:
        super().__init__(policy or default_policy())
        self._records: dict[str, rules.CardholderRecord] = {}
        self._throttle: dict[tuple[str, int], int] = {}
        self._applied: dict[str, set[str]] = {}  # event ids applied, per cardholder
        self._lock = threading.RLock()

    def _record(self, user_id: str) -> rules.CardholderRecord:
        record = self._records.get(user_id)
        if record is None:
            record = self._records[user_id] = rules.CardholderRecord()
        return record

    def decide_batch(
        self, requests: Sequence[CapRequest], *, now: datetime | None = None
    ) -> list[UserDecision]:
        self._check_requests(requests)
        now_ms = to_ms(now or now_utc())
        policy = self._policy
        results = []
        with self._lock:
            for request in requests:
                cal = rules.calendar(policy, self.timezone_of(request.timezone), now_ms)
                record = self._records.get(request.user_id) or rules.CardholderRecord()
                if request.reserve:
                    rules.purge(record, policy, now_ms)
                raws = rules.evaluate(policy, record, request.candidates, cal, self._throttle)
                decisions = rules.decide_candidates(policy, raws, request.candidates, cal, self._memo)
                reservation = None
                if request.reserve:
                    push_id = request.push_id or new_push_id()
                    existing = record.pushes.get(push_id)
                    if existing is not None:
                        reservation = reservation_of(request.user_id, existing, replayed=True)
                    else:
                        chosen = next((i for i, blocks in enumerate(raws) if not blocks), None)
                        if chosen is not None:
                            reservation = self._reserve(request, chosen, push_id, now_ms)
                results.append(
                    UserDecision(request.user_id, decisions, reservation, policy.version, from_ms(now_ms))
                )
        return results

    def _reserve(self, request: CapRequest, chosen: int, push_id: str, now_ms: int):
        policy = self._policy
        candidate = request.candidates[chosen]
        record = self._record(request.user_id)
        pushed = rules.PushRecord(
            push_id=push_id,
            status=rules.RESERVED,
            ts=now_ms,
            expires=now_ms + policy.reservation_ttl * 1000,
            content_id=candidate.content_id,
            kind=candidate.kind,
            tags=tuple(candidate.tags),
            transactional=candidate.transactional,
            campaign=candidate.campaign,
        )
        record.pushes[push_id] = pushed
        if candidate.campaign is not None and policy.campaign_throttle is not None:
            bucket, _, _ = rules.throttle_bucket(policy, candidate.campaign, now_ms)
            key = (candidate.campaign, bucket)
            self._throttle[key] = self._throttle.get(key, 0) + 1
            if len(self._throttle) > 10_000:
                self._prune_throttle(now_ms)
        return reservation_of(request.user_id, pushed)

    def _prune_throttle(self, now_ms: int) -> None:
        policy = self._policy
        for campaign, bucket in list(self._throttle):
            current, _, _ = rules.throttle_bucket(policy, campaign, now_ms)
            if bucket < current:
                del self._throttle[(campaign, bucket)]

    def _once(self, user_id: str, event_id: str | None) -> None:
        """Refuse an event id already applied to this cardholder (call with the lock held)."""
        if event_id is not None:
            check_id(event_id, "event_id")
            if event_id in self._applied.get(user_id, ()):
                raise EventAlreadyApplied(f"event {event_id} was already applied to {user_id}")

    def _done(self, user_id: str, event_id: str | None) -> None:
        if event_id is not None:
            self._applied.setdefault(user_id, set()).add(event_id)

    def applied(self, events: Sequence[tuple[str, str]]) -> list[bool]:
        with self._lock:
            return [event_id in self._applied.get(user_id, ()) for user_id, event_id in events]

    def confirm(self, user_id: str, push_id: str, *, now: datetime | None = None,
                event_id: str | None = None, sent: Candidate | None = None) -> PushStatus:
        if sent is None:
            return self._settle(rules.confirm, user_id, push_id, now, event_id)

        def late(record: rules.CardholderRecord, policy: Policy, pid: str, now_ms: int) -> PushStatus:
            return rules.record_sent(record, policy, pid, sent, now_ms)

        return self._settle(late, user_id, push_id, now, event_id, create=True)

    def release(self, user_id: str, push_id: str, *, now: datetime | None = None,
                event_id: str | None = None) -> PushStatus:
        return self._settle(rules.release, user_id, push_id, now, event_id)

    def _settle(self, transition: Callable[[rules.CardholderRecord, Policy, str, int], PushStatus],
                user_id: str, push_id: str, now: datetime | None, event_id: str | None,
                create: bool = False) -> PushStatus:
        check_id(user_id, "user_id")
        check_id(push_id, "push_id")
        with self._lock:
            self._once(user_id, event_id)
            record = self._record(user_id) if create else self._records.get(user_id)
            status = PushStatus.NOT_FOUND
            if record is not None:
                status = transition(record, self._policy, push_id, to_ms(now or now_utc()))
            self._done(user_id, event_id)
            return status

    def _mutate(self, user_id: str, now: datetime | None, event_id: str | None
                ) -> tuple[rules.CardholderRecord, int]:
        check_id(user_id, "user_id")
        self._once(user_id, event_id)
        now_ms = to_ms(now or now_utc())
        record = self._record(user_id)
        rules.purge(record, self._policy, now_ms)
        self._done(user_id, event_id)
        return record, now_ms

    def record_open(self, user_id: str, *, now: datetime | None = None, push_id: str | None = None,
                    event_id: str | None = None) -> bool:
        with self._lock:
            record, _ = self._mutate(user_id, now, event_id)
            known = record.pushes.get(push_id) if push_id is not None else None
            if push_id is not None and (known is None or known.status == rules.RELEASED):
                return False
            record.unopened = 0
            if push_id is not None:
                rules.record_opened(record, push_id)
            return True

    def record_mute(self, user_id: str, *, now: datetime | None = None, event_id: str | None = None) -> None:
        with self._lock:
            record, now_ms = self._mutate(user_id, now, event_id)
            record.muted = now_ms

    def record_unmute(self, user_id: str, *, now: datetime | None = None,
                      event_id: str | None = None) -> None:
        with self._lock:
            record, _ = self._mutate(user_id, now, event_id)
            record.muted = None

    def record_opt_out(self, user_id: str, *, now: datetime | None = None,
                       event_id: str | None = None) -> None:
        with self._lock:
            record, now_ms = self._mutate(user_id, now, event_id)
            if record.opted_out is None:
                record.opted_out = now_ms

    def record_opt_in(self, user_id: str, *, now: datetime | None = None,
                      event_id: str | None = None) -> None:
        with self._lock:
            record, _ = self._mutate(user_id, now, event_id)
            record.opted_out = None

    def close(self) -> None:
        """Nothing to release: the state lives in this object."""

    def load_record(self, user_id: str) -> rules.CardholderRecord:
        with self._lock:
            return copy.deepcopy(self._records.get(user_id) or rules.CardholderRecord())
