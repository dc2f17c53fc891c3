"""The cap rules as pure functions over a cardholder's push history: the specification.

`ReferenceCapEngine` applies these directly; `RedisCapEngine` runs the same logic in Lua
(`lua/caps.lua`) and must decide exactly as `evaluate` does. A vectorised simulator must agree
with them too.

Semantics (all times epoch milliseconds; `now` is the caller's clock):

- A push record is *reserved* (counts until `expires`), *confirmed* (sent; counts while within
  the policy's history horizon) or *released* (send failed; never counts). Records whose
  reservation expired, or confirmed records older than the horizon, are invisible and purged by
  the next mutating operation on that cardholder.
- Counting records: visible reserved + confirmed marketing pushes, plus transactional ones when
  `transactional.counts_toward_limits`. Limits and the minimum gap use them.
- Calendar windows are the cardholder's local day/month, `[start, end)`; rolling windows are
  `(now - duration, +inf)`.
- Fatigue uses the streak of confirmed marketing pushes since the last open and the time of the
  last confirmed one; no-repeat uses the last time each content was confirmed, plus pending
  reservations of that content.
- Transactional candidates are exempt from every rule except the campaign throttle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from recsys.caps.decisions import (
    Block,
    Candidate,
    CandidateDecision,
    CapRequestError,
    PushStatus,
    ReservationStatus,
    from_ms,
)
from recsys.caps.policy import Limit, Policy, QuietHours, format_duration
from recsys.times import zone

RESERVED = ReservationStatus.RESERVED
CONFIRMED = ReservationStatus.CONFIRMED
RELEASED = ReservationStatus.RELEASED

# (rule, eligible_ms or None, a, b): the store-independent form of a block; a and b are the
# numbers its detail text is built from.
RawBlock = tuple[str, int | None, int | None, int | None]


@dataclass(slots=True)
class PushRecord:
    push_id: str
    status: ReservationStatus
    ts: int
    expires: int
    content_id: str
    kind: str
    tags: tuple[str, ...]
    transactional: bool
    campaign: str | None


@dataclass(slots=True)
class CardholderRecord:
    """Everything a store keeps about one cardholder."""

    pushes: dict[str, PushRecord] = field(default_factory=dict)
    sent_contents: dict[str, int] = field(default_factory=dict)  # content id -> last confirmed ts
    opted_out: int | None = None
    muted: int | None = None
    unopened: int = 0
    last_sent: int | None = None
    # the latest `SEND_OUTCOMES` marketing sends, oldest first: (push id, sent ms, opened); the hours a
    # cardholder opens at, learned live (`recsys.live_hours`)
    outcomes: list[tuple[str, int, bool]] = field(default_factory=list)


# enough for two months at the default four marketing pushes a month; older sends are in the push log
SEND_OUTCOMES = 8


@dataclass(frozen=True, slots=True)
class Calendar:
    """Local calendar facts for one zone at one instant (epoch ms)."""

    timezone: str
    now: int
    day_start: int
    day_end: int
    month_start: int
    month_end: int
    quiet_until: int | None  # end of the current quiet period, None when not quiet


def _local_ms(day: datetime, at: time, tz: ZoneInfo) -> int:
    moment = datetime.combine(day.date(), at, tzinfo=tz)
    return int(moment.timestamp() * 1000)


def _quiet_until(quiet: QuietHours | None, local: datetime, tz: ZoneInfo) -> int | None:
    if quiet is None:
        return None
    minute = local.hour * 60 + local.minute
    start, end = quiet.start_minute, quiet.end_minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    end_time = time(end // 60, end % 60)
    until = _local_ms(local, end_time, tz)
    if until <= int(local.timestamp() * 1000):
        until = _local_ms(local + timedelta(days=1), end_time, tz)
    return until


def quiet_end(quiet: QuietHours, timezone: str, at: int) -> int | None:
    """End of the quiet period `at` falls in (epoch ms), None when `at` is outside quiet hours."""
    tz = zone(timezone)
    return _quiet_until(quiet, datetime.fromtimestamp(at / 1000, tz), tz)


def calendar(policy: Policy, timezone: str, now: int) -> Calendar:
    """Day/month boundaries and quiet-hours end for a cardholder's zone, computed with zoneinfo."""
    return _calendar(policy.quiet_hours, timezone, now)


# One entry per (quiet hours, zone, millisecond): a batch decided at one instant over a few dozen zones
# needs a few dozen; the bound only keeps a long-running process from growing without limit.
CALENDAR_CACHE_SIZE = 4096


@lru_cache(maxsize=CALENDAR_CACHE_SIZE)
def _calendar(quiet: QuietHours | None, timezone: str, now: int) -> Calendar:
    tz = zone(timezone)
    local = from_ms(now).astimezone(tz)
    midnight = time(0, 0)
    day_start = _local_ms(local, midnight, tz)
    day_end = _local_ms(local + timedelta(days=1), midnight, tz)
    first = local.replace(day=1)
    next_first = (first + timedelta(days=32)).replace(day=1)
    return Calendar(
        timezone=timezone,
        now=now,
        day_start=day_start,
        day_end=day_end,
        month_start=_local_ms(first, midnight, tz),
        month_end=_local_ms(next_first, midnight, tz),
        quiet_until=_quiet_until(quiet, local, tz),
    )


def visible(record: PushRecord, policy: Policy, now: int) -> bool:
    if record.status == CONFIRMED:
        return record.ts > now - policy.history_horizon * 1000
    return now < record.expires


def counts(record: PushRecord, policy: Policy, now: int) -> bool:
    """Whether a record counts toward limits and the minimum gap."""
    if record.status == RELEASED or not visible(record, policy, now):
        return False
    return not record.transactional or policy.transactional.counts_toward_limits


def purge(state: CardholderRecord, policy: Policy, now: int) -> None:
    """Drop invisible push records (run at the start of every mutating operation).

    `sent_contents` is kept: one entry per distinct content ever sent, dropped with the whole
    cardholder state after `policy.retention` without activity (a store-level memory bound).
    """
    for push_id in [pid for pid, rec in state.pushes.items() if not visible(rec, policy, now)]:
        del state.pushes[push_id]


def _window_bounds(limit: Limit, cal: Calendar) -> tuple[int, int | None]:
    """[low, high) in ms for calendar windows; (low, inf) for rolling ones (low exclusive)."""
    if limit.window == "calendar_day":
        return cal.day_start, cal.day_end
    if limit.window == "calendar_month":
        return cal.month_start, cal.month_end
    return cal.now - (limit.duration or 0) * 1000, None


def limit_window_times(limit: Limit, cal: Calendar, counting: list[PushRecord]) -> list[int]:
    """Timestamps (ascending) of counting pushes inside the limit's window."""
    low, high = _window_bounds(limit, cal)
    times = []
    for record in counting:
        if limit.filtered and not limit.matches(record.kind, record.tags):
            continue
        if high is None:
            if record.ts > low:
                times.append(record.ts)
        elif low <= record.ts < high:
            times.append(record.ts)
    times.sort()
    return times


def _limit_block(limit: Limit, cal: Calendar, counting: list[PushRecord]) -> RawBlock | None:
    times = limit_window_times(limit, cal, counting)
    if len(times) < limit.max:
        return None
    if limit.window == "calendar_day":
        eligible = cal.day_end
    elif limit.window == "calendar_month":
        eligible = cal.month_end
    else:
        eligible = times[len(times) - limit.max] + (limit.duration or 0) * 1000
    return (f"limit:{limit.name}", eligible, len(times), limit.max)


def throttle_bucket(policy: Policy, campaign: str, now: int) -> tuple[int, int, int]:
    """(bucket index, max, per_ms) of a campaign's current rate window."""
    throttle = policy.campaign_throttle
    if throttle is None:
        raise CapRequestError("the policy has no campaign throttle")
    maximum, per = throttle.rate(campaign)
    per_ms = per * 1000
    return now // per_ms, maximum, per_ms


def evaluate(
    policy: Policy,
    state: CardholderRecord,
    candidates: tuple[Candidate, ...] | list[Candidate],
    cal: Calendar,
    throttle_counts: dict[tuple[str, int], int] | None = None,
) -> list[list[RawBlock]]:
    """The blocks of every candidate, in rule order (empty list = allowed)."""
    now = cal.now
    counting = [rec for rec in state.pushes.values() if counts(rec, policy, now)]
    user_blocks: list[RawBlock] = []
    if state.opted_out is not None:
        user_blocks.append(("opt_out", None, state.opted_out, None))
    if state.muted is not None:
        pause = policy.mute.pause
        if pause is None:
            user_blocks.append(("muted", None, state.muted, None))
        elif now < state.muted + pause * 1000:
            user_blocks.append(("muted", state.muted + pause * 1000, state.muted, None))
    if cal.quiet_until is not None:
        user_blocks.append(("quiet_hours", cal.quiet_until, None, None))
    limit_blocks: list[tuple[Limit, RawBlock | None]] = []
    for limit in policy.limits:
        limit_blocks.append((limit, _limit_block(limit, cal, counting)))
    tail_blocks: list[RawBlock] = []
    if policy.min_gap and counting:
        last = max(rec.ts for rec in counting)
        if now < last + policy.min_gap * 1000:
            tail_blocks.append(("min_gap", last + policy.min_gap * 1000, last, None))
    fatigue = policy.fatigue
    if fatigue and state.unopened >= fatigue.after_unopened and state.last_sent is not None:
        if now < state.last_sent + fatigue.pause * 1000:
            until = state.last_sent + fatigue.pause * 1000
            tail_blocks.append(("fatigue", until, state.unopened, state.last_sent))

    pushed = last_pushed(state, now) if policy.no_repeat is not None else {}
    results: list[list[RawBlock]] = []
    for candidate in candidates:
        blocks: list[RawBlock] = []
        if not candidate.transactional:
            blocks.extend(user_blocks)
            tag_set = frozenset(candidate.tags)
            for limit, block in limit_blocks:
                if block is not None and (not limit.filtered or limit.matches(candidate.kind, tag_set)):
                    blocks.append(block)
            blocks.extend(tail_blocks)
            if policy.no_repeat is not None:
                block = _no_repeat_block(policy, pushed.get(candidate.content_id), now)
                if block is not None:
                    blocks.append(block)
        if candidate.campaign is not None and policy.campaign_throttle is not None:
            bucket, maximum, per_ms = throttle_bucket(policy, candidate.campaign, now)
            used = (throttle_counts or {}).get((candidate.campaign, bucket), 0)
            if used >= maximum:
                blocks.append(("campaign_throttle", (bucket + 1) * per_ms, used, maximum))
        results.append(blocks)
    return results


def last_pushed(state: CardholderRecord, now: int) -> dict[str, int]:
    """Each marketing content's latest push to this cardholder at `now` (epoch ms): the later of when it
    was sent and its latest reservation not yet expired."""
    last = dict(state.sent_contents)
    for rec in state.pushes.values():
        if rec.status == RESERVED and not rec.transactional and now < rec.expires:
            before = last.get(rec.content_id)
            if before is None or rec.ts > before:
                last[rec.content_id] = rec.ts
    return last


def repeat_blocked(policy: Policy, state: CardholderRecord, now: int) -> list[str]:
    """The marketing content ids the no-repeat rule blocks for this cardholder at `now` (epoch ms): sent
    within its window (or ever), or reserved and not expired."""
    if policy.no_repeat is None:
        return []
    pushed = last_pushed(state, now)
    window = policy.no_repeat.window
    if window is None:
        return list(pushed)
    since = now - window * 1000  # `_no_repeat_block`'s window, for every content at once
    return [content_id for content_id, last in pushed.items() if last > since]


def _no_repeat_block(policy: Policy, last: int | None, now: int) -> RawBlock | None:
    """The no-repeat rule's block of a content last pushed at `last` (`last_pushed`; None: never)."""
    if last is None:
        return None
    window = policy.no_repeat.window if policy.no_repeat else None
    if window is None:
        return ("no_repeat", None, last, None)
    if last > now - window * 1000:
        return ("no_repeat", last + window * 1000, last, None)
    return None


def _fmt_time(ms: int | None, tz: ZoneInfo) -> str:
    if ms is None:
        return "?"
    d = datetime.fromtimestamp(ms / 1000, tz)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d} {d.hour:02d}:{d.minute:02d} {d.tzname()}"


def describe(policy: Policy, raw: RawBlock, candidate: Candidate, timezone: str) -> Block:
    """Turn a raw block into a `Block`; its detail text (identical for every store) is rendered lazily."""
    eligible = raw[1]
    return Block(
        raw[0],
        eligible_at=None if eligible is None else from_ms(eligible),
        render=lambda: detail_text(policy, raw, candidate, timezone),
    )


def detail_text(policy: Policy, raw: RawBlock, candidate: Candidate, timezone: str) -> str:
    """The human-readable reason for a raw block."""
    rule, eligible, a, b = raw
    tz = zone(timezone)
    if rule == "opt_out":
        detail = f"cardholder opted out of marketing pushes at {_fmt_time(a, tz)}"
    elif rule == "muted":
        until = "until unmuted" if eligible is None else f"until {_fmt_time(eligible, tz)}"
        detail = f"cardholder muted the account at {_fmt_time(a, tz)}; no marketing {until}"
    elif rule == "quiet_hours":
        quiet = policy.quiet_hours
        span = f"{quiet.start}-{quiet.end}" if quiet else "?"
        detail = f"quiet hours {span} in {timezone}"
    elif rule.startswith("limit:"):
        name = rule.split(":", 1)[1]
        limit = next((lim for lim in policy.limits if lim.name == name), None)
        what = limit.describe() if limit else "pushes"
        detail = f"{a} of at most {b} {what}"
    elif rule == "min_gap":
        detail = f"last push at {_fmt_time(a, tz)}; minimum gap {format_duration(policy.min_gap or 0)}"
    elif rule == "fatigue":
        pause = format_duration(policy.fatigue.pause) if policy.fatigue else "?"
        detail = f"{a} consecutive unopened pushes, the last at {_fmt_time(b, tz)}; pause {pause}"
    elif rule == "no_repeat":
        detail = f"content {candidate.content_id} already pushed or reserved at {_fmt_time(a, tz)}"
    elif rule == "campaign_throttle":
        detail = f"campaign {candidate.campaign} used {a} of {b} reservations in this rate window"
    else:
        detail = rule
    return detail


def settle(policy: Policy, raws: list[RawBlock], candidate: Candidate, cal: Calendar) -> int | None:
    """Overall eligible time: latest block end, moved past quiet hours; None if a block never ends."""
    if not raws:
        return cal.now
    ends = [raw[1] for raw in raws]
    if any(end is None for end in ends):
        return None
    at = max(end for end in ends if end is not None)
    if policy.quiet_hours is not None and not candidate.transactional:
        later = quiet_end(policy.quiet_hours, cal.timezone, at)
        if later is not None:
            at = later
    return at


def decide_candidates(
    policy: Policy,
    raw_blocks: list[list[RawBlock]],
    candidates: tuple[Candidate, ...] | list[Candidate],
    cal: Calendar,
    memo: dict | None = None,
) -> tuple[CandidateDecision, ...]:
    """Candidate decisions from raw blocks. `memo` (one dict per policy) caches texts and times."""
    if memo is None:
        memo = {}
    return tuple(
        decide_one(policy, raws, candidate, cal, memo)
        for candidate, raws in zip(candidates, raw_blocks, strict=True)
    )


def decide_one(
    policy: Policy, raws: list[RawBlock], candidate: Candidate, cal: Calendar, memo: dict
) -> CandidateDecision:
    """One candidate's decision from its raw blocks; `memo` (one dict per policy) caches texts and times."""
    if not raws:
        return CandidateDecision(candidate.content_id, True, (), from_ms(cal.now))
    # no_repeat and campaign_throttle, the only candidate-specific texts, always come last
    # (campaign_throttle, when present, is the very last)
    last = raws[-1][0]
    repeat = last == "no_repeat" or (len(raws) > 1 and raws[-2][0] == "no_repeat")
    key = (
        tuple(raws),
        cal.timezone,
        candidate.transactional,
        candidate.content_id if repeat else None,
        candidate.campaign if last == "campaign_throttle" else None,
    )
    cached = memo.get(key)
    if cached is None:
        if len(memo) > 20_000:  # bounded: every entry is more for the garbage collector to walk
            memo.clear()
        blocks = tuple(describe(policy, raw, candidate, cal.timezone) for raw in raws)
        at = settle(policy, raws, candidate, cal)
        cached = memo[key] = (blocks, None if at is None else from_ms(at))
    return CandidateDecision(candidate.content_id, False, cached[0], cached[1])


def settled_status(state: CardholderRecord, policy: Policy, push_id: str, now: int) -> PushStatus | None:
    """What confirming or releasing `push_id` answers when the push is not pending, else None."""
    purge(state, policy, now)
    record = state.pushes.get(push_id)
    if record is None or not visible(record, policy, now):
        return PushStatus.NOT_FOUND
    if record.status == CONFIRMED:
        return PushStatus.ALREADY_CONFIRMED
    if record.status == RELEASED:
        return PushStatus.ALREADY_RELEASED
    return None


def confirm(state: CardholderRecord, policy: Policy, push_id: str, now: int) -> PushStatus:
    settled = settled_status(state, policy, push_id, now)
    if settled is not None:
        return settled
    confirm_record(state, state.pushes[push_id], now)
    return PushStatus.CONFIRMED


def confirm_record(state: CardholderRecord, record: PushRecord, sent: int) -> None:
    """Mark a push sent at `sent` (ms): it counts toward the fatigue streak and no-repeat and is kept
    among the send outcomes (unless transactional)."""
    record.status = CONFIRMED
    if not record.transactional:
        state.unopened += 1
        state.last_sent = record.ts if state.last_sent is None else max(state.last_sent, record.ts)
        previous = state.sent_contents.get(record.content_id)
        state.sent_contents[record.content_id] = record.ts if previous is None else max(previous, record.ts)
        state.outcomes = [*state.outcomes, (record.push_id, sent, False)][-SEND_OUTCOMES:]


def record_opened(state: CardholderRecord, push_id: str) -> None:
    """Mark a kept send outcome opened (a push not among them: nothing to mark)."""
    state.outcomes = [(pid, sent, opened or pid == push_id) for pid, sent, opened in state.outcomes]


def record_sent(state: CardholderRecord, policy: Policy, push_id: str, sent: Candidate, now: int
                ) -> PushStatus:
    """A push reported sent with no pending reservation (its TTL passed, or it was never reserved
    here): it happened, so it counts as a send at `now`; `sent` describes its content."""
    purge(state, policy, now)
    existing = state.pushes.get(push_id)
    if existing is not None:
        return confirm(state, policy, push_id, now)
    state.pushes[push_id] = PushRecord(push_id, RESERVED, now, now, sent.content_id, sent.kind,
                                       tuple(sent.tags), sent.transactional, sent.campaign)
    confirm_record(state, state.pushes[push_id], now)
    return PushStatus.RECORDED


def release(state: CardholderRecord, policy: Policy, push_id: str, now: int) -> PushStatus:
    settled = settled_status(state, policy, push_id, now)
    if settled is not None:
        return settled
    state.pushes[push_id].status = RELEASED
    return PushStatus.RELEASED
