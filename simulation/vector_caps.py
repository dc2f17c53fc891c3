"""The anti-disturbance policy decided for many cardholders at once with numpy.

The per-cardholder reference engine (`recsys/caps/reference.py`) is the specification; this engine
applies the same rules to arrays of cardholders so a month of a large population can be replayed in
minutes. `tests/simulation/test_vector_caps.py` checks that both decide identically, rule by rule,
on random sequences of sends, opens and mutes across time zones and month ends.

Each cardholder has a fixed, ordered list of candidate contents (the ranking's top K). State per
cardholder: for every limit, the times of the last `max` pushes it counts (a ring buffer); the last
push that counts toward the minimum gap; per candidate, the last time it was pushed (no-repeat);
the unopened streak and the last marketing push (fatigue); the mute time; the opt-in flag.
Times are int64 seconds since the epoch (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.caps.policy import Limit, Policy
from simulation.local_calendar import NEVER, LocalFields, ZoneClock

# Rules in the order the engines report them (`recsys.caps.decisions.RULE_ORDER`), limits expanded.
FIXED_BEFORE_LIMITS = ("opt_out", "muted", "quiet_hours")
FIXED_AFTER_LIMITS = ("min_gap", "fatigue", "no_repeat", "campaign_throttle")
# A limit above this many pushes per window is tracked up to this many; exceeding it is reported.
MAX_TRACKED_PER_WINDOW = 64
MAX_RULES = 64  # one bit per rule in a uint64 decision mask


class SimulationError(ValueError):
    """A simulation that cannot run as asked; the message says what to change."""


def rule_names(policy: Policy) -> tuple[str, ...]:
    """Every rule a decision under `policy` can report, in report order."""
    return FIXED_BEFORE_LIMITS + tuple(f"limit:{limit.name}" for limit in policy.limits) + FIXED_AFTER_LIMITS


@dataclass(frozen=True)
class Items:
    """What the rules need to know about each content: kind, tags, transactional flag."""

    kinds: np.ndarray  # object [n_items]
    tags: tuple[tuple[str, ...], ...]
    transactional: np.ndarray  # bool [n_items]

    def __len__(self) -> int:
        return len(self.kinds)

    def matching(self, limit: Limit) -> np.ndarray:
        """bool [n_items]: contents a limit applies to and counts."""
        return np.fromiter(
            (limit.matches(str(kind), tags) for kind, tags in zip(self.kinds, self.tags, strict=True)),
            dtype=bool,
            count=len(self.kinds),
        )


@dataclass(frozen=True)
class Decisions:
    """Decisions for `rows` at `now`, as one bit per rule: bit r of `mask[j, k]` is set when rule r
    (`rules[r]`) blocks candidate k of row j. 0 means allowed (for a present candidate)."""

    rows: np.ndarray
    mask: np.ndarray  # uint64 [m, K]
    present: np.ndarray  # bool [m, K]: a candidate exists in that position
    n_rules: int

    @property
    def allowed(self) -> np.ndarray:
        return self.present & (self.mask == 0)

    @property
    def blocks(self) -> np.ndarray:
        """bool [m, K, n_rules]: rule r blocks candidate k of row j."""
        return bits(self.mask, self.n_rules)

    def first_allowed(self) -> np.ndarray:
        """Position of the first allowed candidate per row, -1 when none is."""
        allowed = self.allowed
        first = allowed.argmax(axis=1)
        return np.where(allowed.any(axis=1), first, -1)


def bits(mask: np.ndarray, n_rules: int) -> np.ndarray:
    """bool [..., n_rules] from a uint64 rule bit mask [...]."""
    shifts = np.arange(n_rules, dtype=np.uint64)
    return ((mask[..., None] >> shifts) & np.uint64(1)).astype(bool)


class _LimitState:
    def __init__(self, limit: Limit, n_users: int, matches: np.ndarray):
        self.limit = limit
        self.capacity = min(limit.max, MAX_TRACKED_PER_WINDOW)
        self.times = np.full((n_users, self.capacity), NEVER, dtype=np.int64)
        self.head = np.zeros(n_users, dtype=np.int64)
        self.matches = matches

    def window_start(self, fields: LocalFields, now: np.ndarray) -> np.ndarray:
        # Calendar windows are [local start, end); rolling ones (now - duration, now].
        if self.limit.window == "rolling":
            return now - int(self.limit.duration or 0) + 1
        return fields.day_start if self.limit.window == "calendar_day" else fields.month_start

    def full(self, fields: LocalFields, rows: np.ndarray, now: np.ndarray) -> np.ndarray:
        start = self.window_start(fields, now)
        counted = ((self.times[rows] >= start[:, None]) & (self.times[rows] <= now[:, None])).sum(axis=1)
        if self.capacity < self.limit.max and (counted >= self.capacity).any():
            raise SimulationError(
                f"limit {self.limit.name!r} allows {self.limit.max} pushes per window; the simulator "
                f"tracks at most {MAX_TRACKED_PER_WINDOW} per cardholder and a cardholder reached that: "
                "lower the limit"
            )
        return counted >= self.limit.max

    def record(self, rows: np.ndarray, now: np.ndarray) -> None:
        positions = self.head[rows]
        self.times[rows, positions] = now
        self.head[rows] = (positions + 1) % self.capacity


class VectorCapEngine:
    """Vectorised cap decisions and state for a population with fixed candidate lists."""

    def __init__(
        self,
        policy: Policy,
        clock: ZoneClock,
        items: Items,
        candidates: np.ndarray,
        opted_in: np.ndarray | None = None,
    ):
        candidates = np.asarray(candidates, dtype=np.int64)
        if candidates.ndim != 2 or candidates.shape[0] != len(clock):
            raise SimulationError(
                f"candidates must be [n_cardholders={len(clock)}, K], got shape {candidates.shape}"
            )
        if candidates.size and candidates.max() >= len(items):
            raise SimulationError("candidates refer to an item index beyond the item table")
        n_users = len(clock)
        self.policy = policy
        self.clock = clock
        self.items = items
        self.candidates = candidates
        self.present = candidates >= 0
        safe = np.where(self.present, candidates, 0)
        self.transactional = items.transactional[safe] & self.present
        self.rules = rule_names(policy)
        if len(self.rules) > MAX_RULES:
            raise SimulationError(
                f"the policy has {len(policy.limits)} limits; the simulator handles at most "
                f"{MAX_RULES - len(FIXED_BEFORE_LIMITS) - len(FIXED_AFTER_LIMITS)}: merge some limits"
            )
        self.rule_index = {name: index for index, name in enumerate(self.rules)}
        self.limits = [_LimitState(limit, n_users, items.matching(limit)) for limit in policy.limits]
        self.limit_matches = [state.matches[safe] & self.present for state in self.limits]
        self.opted_in = np.ones(n_users, dtype=bool)
        if opted_in is not None:
            self.opted_in[:] = np.asarray(opted_in, dtype=bool)
        self.muted_at = np.full(n_users, NEVER, dtype=np.int64)
        self.last_counted = np.full(n_users, NEVER, dtype=np.int64)
        self.last_marketing = np.full(n_users, NEVER, dtype=np.int64)
        self.streak = np.zeros(n_users, dtype=np.int64)
        self.last_sent = np.full(candidates.shape, NEVER, dtype=np.int64)
        self.sent_total = np.zeros(n_users, dtype=np.int64)
        if policy.quiet_hours is not None:
            self.quiet_start = policy.quiet_hours.start_minute * 60
            self.quiet_end = policy.quiet_hours.end_minute * 60

    @property
    def n_users(self) -> int:
        return len(self.clock)

    def in_quiet_hours(
        self, rows: np.ndarray, now: np.ndarray, fields: LocalFields | None = None
    ) -> np.ndarray:
        """bool [m]: local time inside the policy's quiet hours."""
        if self.policy.quiet_hours is None:
            return np.zeros(len(rows), dtype=bool)
        fields = fields if fields is not None else self.clock.local_fields(now, rows)
        second = fields.second_of_day
        if self.quiet_start < self.quiet_end:
            return (second >= self.quiet_start) & (second < self.quiet_end)
        return (second >= self.quiet_start) | (second < self.quiet_end)

    def quiet_end_after(self, rows: np.ndarray, now: np.ndarray) -> np.ndarray:
        """The next local end of the quiet hours at or after `now`."""
        if self.policy.quiet_hours is None:
            return np.asarray(now, dtype=np.int64).copy()
        return self.clock.next_local_time(now, self.quiet_end, rows)

    def decide(self, rows: np.ndarray, now: np.ndarray | int) -> Decisions:
        """Decide every candidate of each of `rows` (distinct cardholders) at `now` (per row or one)."""
        rows = np.asarray(rows, dtype=np.int64)
        now = np.broadcast_to(np.asarray(now, dtype=np.int64), rows.shape).copy()
        mask = np.zeros((len(rows), self.candidates.shape[1]), dtype=np.uint64)
        policy = self.policy
        fields = self.clock.local_fields(now, rows)

        def bit(name: str) -> np.uint64:
            return np.uint64(1 << self.rule_index[name])

        def user_rule(name: str, blocked: np.ndarray) -> None:
            mask[blocked] |= bit(name)

        user_rule("opt_out", ~self.opted_in[rows])
        muted_at = self.muted_at[rows]
        muted = muted_at != NEVER
        if policy.mute.pause is not None:
            muted &= now < muted_at + policy.mute.pause
        user_rule("muted", muted)
        user_rule("quiet_hours", self.in_quiet_hours(rows, now, fields))
        for state, matches in zip(self.limits, self.limit_matches, strict=True):
            full = state.full(fields, rows, now)
            if full.any():
                mask[full] |= np.where(matches[rows[full]], bit(f"limit:{state.limit.name}"), np.uint64(0))
        if policy.min_gap is not None:
            user_rule("min_gap", now < self.last_counted[rows] + policy.min_gap)
        if policy.fatigue is not None:
            tired = (self.streak[rows] >= policy.fatigue.after_unopened) & (
                now < self.last_marketing[rows] + policy.fatigue.pause
            )
            user_rule("fatigue", tired)
        if policy.no_repeat is not None:
            last = self.last_sent[rows]
            repeat = last != NEVER
            if policy.no_repeat.window is not None:
                repeat &= now[:, None] < last + policy.no_repeat.window
            mask |= np.where(repeat, bit("no_repeat"), np.uint64(0))
        # Transactional notices (and empty positions) are exempt from every rule simulated here.
        mask[~(self.present[rows] & ~self.transactional[rows])] = 0
        return Decisions(rows=rows, mask=mask, present=self.present[rows], n_rules=len(self.rules))

    def positions_of(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Position of `items[j]` in the candidate list of `rows[j]`, -1 when it is not a candidate."""
        hit = self.candidates[rows] == np.asarray(items, dtype=np.int64)[:, None]
        return np.where(hit.any(axis=1), hit.argmax(axis=1), -1)

    def record_pushes(self, rows: np.ndarray, now: np.ndarray | int, items: np.ndarray) -> None:
        """Record that content `items[j]` was sent (reserved and confirmed) to `rows[j]` at `now`.

        `rows` must be distinct; a content outside the cardholder's candidates still counts toward
        limits, the gap and fatigue (its no-repeat memory is not needed: it is never a candidate).
        """
        rows = np.asarray(rows, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        now = np.broadcast_to(np.asarray(now, dtype=np.int64), rows.shape).copy()
        transactional = self.items.transactional[items]
        counted = ~transactional | self.policy.transactional.counts_toward_limits
        for state in self.limits:
            take = counted & state.matches[items]
            state.record(rows[take], now[take])
        self.last_counted[rows[counted]] = np.maximum(self.last_counted[rows[counted]], now[counted])
        marketing = ~transactional
        m_rows, m_now = rows[marketing], now[marketing]
        positions = self.positions_of(m_rows, items[marketing])
        known = positions >= 0
        self.last_sent[m_rows[known], positions[known]] = m_now[known]
        self.streak[m_rows] += 1
        self.last_marketing[m_rows] = np.maximum(self.last_marketing[m_rows], m_now)
        self.sent_total[rows] += 1

    def record_opens(self, rows: np.ndarray) -> None:
        """An open of any push resets the unopened streak."""
        self.streak[np.asarray(rows, dtype=np.int64)] = 0

    def record_mutes(self, rows: np.ndarray, now: np.ndarray | int) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        self.muted_at[rows] = np.broadcast_to(np.asarray(now, dtype=np.int64), rows.shape)

    def record_unmutes(self, rows: np.ndarray) -> None:
        self.muted_at[np.asarray(rows, dtype=np.int64)] = NEVER

    def record_opt_outs(self, rows: np.ndarray) -> None:
        self.opted_in[np.asarray(rows, dtype=np.int64)] = False

    def record_opt_ins(self, rows: np.ndarray) -> None:
        self.opted_in[np.asarray(rows, dtype=np.int64)] = True
