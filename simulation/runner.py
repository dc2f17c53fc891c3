"""Replay a period day by day under each policy: the scheduler asks, the caps decide, cardholders answer.

Each day has the scheduler's send slots (local times in the scheduler's zone, e.g. 09:00, 12:30 and
19:30 Asia/Shanghai). At each slot every cardholder who accepts marketing and has candidates is
asked for: the caps decide the ranked candidates (`VectorCapEngine`, same semantics as the
reference engine) and the first allowed one is sent. Where the slot falls in the cardholder's local
quiet hours, the request waits for their end if that comes before the next slot (the quiet hours
decide the send time of day); otherwise it is blocked by them. Each sent push is opened with the
response model's probability under the cardholder's push frequency (pushes in its trailing window,
counted by day) and may make the cardholder mute the account, with a probability rising with that
frequency. Opens reset the fatigue streak and mutes block later marketing, so both feed back into the
following days.

Reported opens and mutes are expectations (sums of the probabilities of the pushes actually sent);
the trajectory itself follows drawn outcomes. Draws use common random numbers: one uniform per
cardholder, slot and outcome, a fixed function of (seed, day, slot, outcome) and the cardholder's row
in the whole population (`slot_draws`), shared by every policy, so differences between policies come
from the policies, the same seed gives the same report, and a partition of the population draws what
the whole population would for its cardholders.
"""

from __future__ import annotations

import logging
import re
import time as timer
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from recsys.caps.policy import Policy
from recsys.control import in_control
from recsys.decision import SEND, day_values, decide_many, is_quiet, monthly_cap
from recsys.times import UnknownZoneError, zone
from simulation.local_calendar import LocalFields, ZoneClock
from simulation.replay import SimWorld
from simulation.report import PolicyOutcome, SimulationReport, Tally
from simulation.vector_caps import SimulationError, VectorCapEngine, bits

logger = logging.getLogger(__name__)

DEFAULT_SLOTS = ("09:00", "12:30", "19:30")
_CLOCK_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
MAX_DAYS = 366
# Charged with a blocked request when no single rule blocks every candidate (e.g. the best ones were
# already pushed and a kind limit blocks the rest).
COMBINED = "combined"
ALL_RULES = np.uint64(2**64 - 1)
# The scheduler's simulated pushes name no campaign, so the campaign throttle (which protects the
# sending channel, not cardholders) never applies and is left out of the report.
NOT_SIMULATED = ("campaign_throttle",)


@dataclass(frozen=True)
class ScheduleConfig:
    """The simulated period and the scheduler's habits."""

    days: int = 30
    seed: int = 0
    slots: tuple[str, ...] = DEFAULT_SLOTS
    scheduler_timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        if not 1 <= self.days <= MAX_DAYS:
            raise SimulationError(f"days must be between 1 and {MAX_DAYS}, got {self.days}")
        if not self.slots:
            raise SimulationError("at least one send slot is needed, e.g. 09:00")
        for slot in self.slots:
            if not _CLOCK_RE.match(slot):
                raise SimulationError(f"send slot {slot!r} is not a clock time: use HH:MM, e.g. 09:00")
        if list(self.slots) != sorted(set(self.slots)):
            raise SimulationError(f"send slots {list(self.slots)} must be distinct and in time order")
        try:
            zone(self.scheduler_timezone)
        except UnknownZoneError as error:
            raise SimulationError(f"scheduler time zone: {error}") from error

    @property
    def slot_seconds(self) -> list[int]:
        return [int(slot[:2]) * 3600 + int(slot[3:]) * 60 for slot in self.slots]


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def slot_draws(seed: int, day: int, slot: int, rows: np.ndarray) -> np.ndarray:
    """float64 [2, len(rows)] uniforms in [0, 1) for (open, mute) of the population rows `rows`.

    Each value is the SplitMix64 output at position `row` of a stream keyed by (seed, day, slot,
    outcome): random access by row, which numpy's generators only give for contiguous runs."""
    keys = np.random.SeedSequence([seed, day, slot]).generate_state(2, dtype=np.uint64)
    counters = np.asarray(rows, dtype=np.uint64) + np.uint64(1)
    out = np.empty((2, len(counters)))
    for outcome, key in enumerate(keys):
        z = key + counters * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX[0]
        z = (z ^ (z >> np.uint64(27))) * _MIX[1]
        z ^= z >> np.uint64(31)
        out[outcome] = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return out


def slot_instants(world: SimWorld, config: ScheduleConfig) -> tuple[np.ndarray, datetime]:
    """int64 [days, slots] UTC instants of the send slots, from the first midnight after the as-of time."""
    tz = zone(config.scheduler_timezone)
    local = world.as_of.to_pydatetime().astimezone(tz)
    first = (local + timedelta(days=1)).date()
    instants = np.empty((config.days, len(config.slots)), dtype=np.int64)
    for day in range(config.days):
        date = first + timedelta(days=day)
        for column, second in enumerate(config.slot_seconds):
            moment = datetime(date.year, date.month, date.day, second // 3600, second % 3600 // 60, tzinfo=tz)
            instants[day, column] = int(moment.timestamp())
    return instants, datetime(first.year, first.month, first.day, tzinfo=tz)


@dataclass(frozen=True)
class SlotTrace:
    """One send slot of a replay, for audits: who was asked when, what the caps said, what was sent.

    Arrays are aligned on `rows` (world rows asked); `blocks[j, k, r]` is rule r blocking candidate k;
    `valid[j, k]` says candidate k was a valid content at the time; `chosen[j]` the position sent, -1
    when none; `opened` / `muted` are the rows whose push was opened / who muted.
    """

    day: int
    slot: int
    rows: np.ndarray
    now: np.ndarray
    blocks: np.ndarray
    valid: np.ndarray
    chosen: np.ndarray
    opened: np.ndarray
    muted: np.ndarray


class _Segments:
    """Integer codes of each segment's labels, for bincount tallies."""

    def __init__(self, world: SimWorld):
        self.names = list(world.segments)
        self.labels: dict[str, np.ndarray] = {}
        self.codes: dict[str, np.ndarray] = {}
        for name, values in world.segments.items():
            self.labels[name], self.codes[name] = np.unique(values.astype(str), return_inverse=True)


class _Accumulator:
    """Running totals of one policy's replay, overall (segment code 0) and per segment."""

    def __init__(self, world: SimWorld, segments: _Segments, rules: tuple[str, ...], days: int):
        self.segments = segments
        self.rules = rules
        self.n_rules = len(rules)
        self.groups = {"all": np.zeros(world.n_users, dtype=np.int64)}
        self.groups.update(segments.codes)
        self.sizes = {name: int(codes.max(initial=-1)) + 1 for name, codes in self.groups.items()}
        self.sums = {name: {key: np.zeros(size) for key in (
            "attempts", "sent", "expected_opens", "expected_mutes", "opens", "mutes", "blocked",
            "no_candidate", "deferred_quiet_hours", "held")} for name, size in self.sizes.items()}
        self.by_rule = {name: np.zeros((size, self.n_rules)) for name, size in self.sizes.items()}
        self.first_rule = {name: np.zeros((size, self.n_rules)) for name, size in self.sizes.items()}
        self.reached = np.zeros(world.n_users, dtype=bool)
        self.daily = {key: np.zeros(days) for key in ("sent", "expected_opens", "expected_mutes", "blocked")}

    def add(self, key: str, rows: np.ndarray, weights: np.ndarray | None = None) -> None:
        for name, codes in self.groups.items():
            self.sums[name][key] += np.bincount(codes[rows], weights=weights, minlength=self.sizes[name])

    def add_rules(self, rows: np.ndarray, rule_matrix: np.ndarray) -> None:
        first = np.zeros_like(rule_matrix)
        has = rule_matrix.any(axis=1)
        first[np.flatnonzero(has), rule_matrix[has].argmax(axis=1)] = True
        for target, matrix in ((self.by_rule, rule_matrix), (self.first_rule, first)):
            row_index, rule_index = np.nonzero(matrix)
            for name, codes in self.groups.items():
                flat = codes[rows[row_index]] * self.n_rules + rule_index
                target[name] += np.bincount(flat, minlength=self.sizes[name] * self.n_rules).reshape(
                    self.sizes[name], self.n_rules)

    def _by_rule(self, counts: np.ndarray) -> dict[str, int]:
        return {rule: int(count) for rule, count in zip(self.rules, counts, strict=True)
                if rule not in NOT_SIMULATED}

    def tally(self, name: str, code: int, members: np.ndarray) -> Tally:
        sums = {key: values[code] for key, values in self.sums[name].items()}
        return Tally(
            cardholders=int(members.sum()),
            attempts=int(sums["attempts"]),
            sent=int(sums["sent"]),
            reached=int((self.reached & members).sum()),
            expected_opens=float(sums["expected_opens"]),
            expected_mutes=float(sums["expected_mutes"]),
            opens=int(sums["opens"]),
            mutes=int(sums["mutes"]),
            blocked=int(sums["blocked"]),
            no_candidate=int(sums["no_candidate"]),
            deferred_quiet_hours=int(sums["deferred_quiet_hours"]),
            held=int(sums["held"]),
            blocked_by_rule=self._by_rule(self.by_rule[name][code]),
            blocked_first_rule=self._by_rule(self.first_rule[name][code]),
        )


def _replay_history(world: SimWorld, engine: VectorCapEngine, recent: np.ndarray, start: int,
                    window_days: int) -> None:
    """Feed the pushes sent before the period into the cap state and the recent-push counts."""
    history = world.history
    if not len(history.rows):
        return
    order = np.lexsort((history.sent, history.rows))
    rows, items, sent = history.rows[order], history.items[order], history.sent[order]
    opened, muted = history.opened[order], history.muted[order]
    # k-th push of each cardholder in round k: rows are distinct within a round, order kept per row
    first_of_row = np.r_[0, np.flatnonzero(np.diff(rows)) + 1]
    rank = np.arange(len(rows)) - np.repeat(first_of_row, np.diff(np.r_[first_of_row, len(rows)]))
    for k in range(int(rank.max()) + 1):
        take = rank == k
        engine.record_pushes(rows[take], sent[take], items[take])
        engine.record_opens(rows[take & opened])
        engine.record_mutes(rows[take & muted], sent[take & muted])
    day = np.floor_divide(sent - start, 86400)
    marketing = ~world.items.transactional[items]
    inside = marketing & (day >= -window_days) & (day < 0)
    np.add.at(recent, (rows[inside], day[inside] % window_days), 1)


def simulate_policy(
    world: SimWorld,
    policy: Policy,
    config: ScheduleConfig,
    label: str | None = None,
    segments: _Segments | None = None,
    progress: Callable[[int], None] | None = None,
    trace: Callable[[SlotTrace], None] | None = None,
) -> PolicyOutcome:
    """Replay `config.days` days of `world` under `policy` (see the module docstring).

    `progress(1)` is called after each day; `trace` receives every slot's `SlotTrace`.
    """
    began = timer.perf_counter()
    segments = segments or _Segments(world)
    clock = ZoneClock(world.zones_under(policy.default_timezone))
    engine = VectorCapEngine(policy, clock, world.items, world.candidates, opted_in=world.opted_in)
    instants, first_day = slot_instants(world, config)
    start = int(first_day.timestamp())
    window_days = int(getattr(world.response, "window_days", 30))
    recent = np.zeros((world.n_users, window_days), dtype=np.int32)
    _replay_history(world, engine, recent, start, window_days)
    # Cardholders who refused marketing before the period are not asked for at all.
    asked = np.flatnonzero(world.opted_in & (world.candidates >= 0).any(axis=1))
    acc = _Accumulator(world, segments, (*engine.rules, COMBINED), config.days)
    candidates = world.candidates[asked]
    present = candidates >= 0
    safe = np.where(present, candidates, 0)
    response_users = world.response_users[asked]
    n_slots = instants.shape[1]
    deciding = world.decision_model is not None and policy.decision.enabled
    # sent now whatever the value, as the API answers them: fixed per cardholder, so hashed once
    control = in_control(world.user_ids, policy.decision.control_share if deciding else 0.0)
    month_sent = np.zeros(world.n_users, dtype=np.int64)  # marketing pushes this local month (decisions)
    month_of = np.full(world.n_users, -1, dtype=np.int64)
    following = np.r_[instants.reshape(-1)[1:], instants[-1, -1] + 86400]
    draw_rows = world.draw_rows
    for day in range(config.days):
        recent[:, day % window_days] = 0
        for slot in range(n_slots):
            slot_at = int(instants[day, slot])
            next_at = int(following[day * n_slots + slot])
            draws = slot_draws(config.seed, day, slot, draw_rows)
            now = np.full(len(asked), slot_at, dtype=np.int64)
            quiet = np.flatnonzero(engine.in_quiet_hours(asked, now))
            if len(quiet):
                ends = engine.quiet_end_after(asked[quiet], now[quiet])
                wait = ends < next_at
                now[quiet[wait]] = ends[wait]
                acc.add("deferred_quiet_hours", asked[quiet[wait]])
            decisions = engine.decide(asked, now)
            at = now[:, None]
            valid = present & (world.valid_from[safe] <= at) & (world.valid_to[safe] >= at)
            allowed = decisions.allowed & valid
            first = np.where(allowed.any(axis=1), allowed.argmax(axis=1), -1)
            acc.add("attempts", asked)
            has_valid = valid.any(axis=1)
            none_valid = np.flatnonzero(~has_valid)
            acc.add("no_candidate", asked[none_valid])
            blocked = np.flatnonzero(has_valid & (first < 0))
            if len(blocked):
                # A rule is charged with a blocked request when it alone blocks every valid candidate.
                every = np.where(valid[blocked], decisions.mask[blocked], ALL_RULES)
                alone_mask = np.bitwise_and.reduce(every, axis=1)
                alone = bits(alone_mask, len(engine.rules))
                combined = alone_mask == 0
                acc.add("blocked", asked[blocked])
                acc.add_rules(asked[blocked], np.concatenate([alone, combined[:, None]], axis=1))
                acc.daily["blocked"][day] += len(blocked)
            chosen = np.flatnonzero(first >= 0)
            if not len(chosen):
                if trace is not None:
                    trace(SlotTrace(day, slot, asked, now, decisions.blocks, valid, first,
                                    np.zeros(0, np.int64), np.zeros(0, np.int64)))
                continue
            rows = asked[chosen]
            items = candidates[chosen, first[chosen]]
            sent_at = now[chosen]
            column = day % window_days
            frequency = recent[rows].sum(axis=1) + 1  # this push included
            fields = clock.local_fields(sent_at, rows)
            if deciding:
                new_month = fields.month_start != month_of[rows]
                month_sent[rows[new_month]] = 0
                month_of[rows] = fields.month_start
                by_age = recent[rows][:, (day - np.arange(window_days)) % window_days]
                send, send_at = _decisions(world, policy, clock, rows, items, by_age, sent_at, fields,
                                           month_sent[rows], control[rows])
                acc.add("held", rows[~send])
                chosen, rows, items = chosen[send], rows[send], items[send]
                sent_at, frequency = send_at[send], frequency[send]
                # a send at a better hour later today: same local day, so the day and month are unchanged
                fields = LocalFields(fields.day_start[send], fields.month_start[send],
                                     sent_at - fields.day_start[send])
                month_sent[rows] += 1
            hours = fields.second_of_day // 3600
            users, response_items = response_users[chosen], world.response_items[items]
            p_open = world.response.open_probability(users, response_items, frequency, local_hours=hours)
            p_mute = world.response.mute_probability(users, frequency, response_items)
            opened = draws[0, rows] < p_open
            muted = draws[1, rows] < p_mute
            engine.record_pushes(rows, sent_at, items)
            recent[rows, column] += 1
            engine.record_opens(rows[opened])
            engine.record_mutes(rows[muted], sent_at[muted])
            acc.reached[rows] = True
            acc.add("sent", rows)
            acc.add("expected_opens", rows, p_open)
            acc.add("expected_mutes", rows, p_mute)
            acc.add("opens", rows[opened])
            acc.add("mutes", rows[muted])
            acc.daily["sent"][day] += len(rows)
            acc.daily["expected_opens"][day] += float(p_open.sum())
            acc.daily["expected_mutes"][day] += float(p_mute.sum())
            if trace is not None:
                trace(SlotTrace(day, slot, asked, now, decisions.blocks, valid, first, rows[opened],
                                rows[muted]))
        if progress is not None:
            progress(1)
    everyone = np.ones(world.n_users, dtype=bool)
    total = acc.tally("all", 0, everyone)
    by_segment = {
        name: {str(label): acc.tally(name, code, segments.codes[name] == code)
               for code, label in enumerate(segments.labels[name])}
        for name in segments.names
    }
    seconds = timer.perf_counter() - began
    logger.info("policy %s: %d pushes to %d cardholders in %.1fs", label or policy.name, total.sent,
                total.reached, seconds)
    return PolicyOutcome(
        label=label or policy.name,
        policy=policy.to_dict(),
        rules=engine.rules,
        total=total,
        segments=by_segment,
        daily={key: values.tolist() for key, values in acc.daily.items()},
        seconds=seconds,
    )


def _decisions(world: SimWorld, policy: Policy, clock: ZoneClock, rows: np.ndarray, items: np.ndarray,
               by_age: np.ndarray, now: np.ndarray, fields: LocalFields,
               month_sent: np.ndarray, control: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: send (bool) and when (epoch seconds), as the API decides (`recsys.decision.decide`) with the
    world's decision model (the published response model), valued at every local hour of the day at once;
    rows in the policy's control share (`control`, bool) are sent now whatever the value.

    `by_age` [n, window] counts each row's marketing pushes by age in days (0: today): the recent count of
    a push on a later day drops the pushes that have left the window by then."""
    settings = policy.decision
    model = world.decision_model
    users = world.decision_users[rows]
    grid = (len(rows), 24)
    frequency = by_age.sum(axis=1) + 1  # this push included
    users, items_grid, recent = (np.broadcast_to(np.asarray(a)[:, None], grid)
                                 for a in (users, items, frequency))
    every_hour = np.broadcast_to(np.arange(24)[None, :], grid)
    logits = {target: model.logit(target, users, items_grid, recent, every_hour)
              for target in ("open", "mute")}
    calibration = model.model.calibration
    value = (calibration["open"].apply(logits["open"])
             - settings.mute_weight * calibration["mute"].apply(logits["mute"]))
    quiet = np.array([is_quiet(policy.quiet_hours, datetime(2000, 1, 1, hour)) for hour in range(24)])
    cap = monthly_cap(policy)
    next_month = clock.local_fields(fields.month_start + 32 * 86400, rows).month_start
    days_left = (next_month - fields.day_start) // 86400 - 1
    window = by_age.shape[1]
    horizon = int(max(0, min(days_left.max(initial=0), window)))
    # recent count on each later day: older pushes leave the window (no other push assumed in between)
    leaving = np.cumsum(by_age[:, ::-1], axis=1)[:, :horizon]
    counts = frequency[:, None] - np.concatenate([np.zeros((len(rows), 1), np.int64), leaving], axis=1)
    later_values = np.zeros((len(rows), 0))
    if horizon and settings.pacing is not None:
        later_values = day_values(model.model, logits["open"], logits["mute"], counts, settings.mute_weight,
                                  ~quiet)
    # the later days of the month while the content is still valid
    valid_days = np.clip((world.valid_to[items] - fields.day_start) // 86400, 0,
                         np.minimum(days_left, later_values.shape[1]))
    hour_now = fields.second_of_day // 3600
    later = [[(datetime.fromtimestamp(int(fields.day_start[j]) + 3600 * hour, UTC), float(value[j, hour]))
              for hour in range(int(hour_now[j]) + 1, 24) if not quiet[hour]] for j in range(len(rows))]
    verdicts = decide_many(settings, value[np.arange(len(rows)), hour_now], later,
                           [datetime.fromtimestamp(int(moment), UTC) for moment in now],
                           [None if cap is None else max(0, cap - int(sent)) for sent in month_sent],
                           [later_values[j, :int(valid_days[j])] for j in range(len(rows))])
    out = np.array([verdict.decision == SEND for verdict in verdicts], dtype=bool)
    when = np.asarray(now, dtype=np.int64).copy()
    for j, verdict in enumerate(verdicts):
        if verdict.send_at is not None:
            when[j] = max(int(now[j]), int(verdict.send_at.timestamp()))
    out[control], when[control] = True, np.asarray(now, dtype=np.int64)[control]
    return out, when


def decision_variants(policies: Sequence[Policy], labels: Sequence[str], mute_weights: Sequence[float]
                      ) -> tuple[list[Policy], list[str]]:
    """Each policy as send-all (decisions off) and value-aware at each mute weight (lambda)."""
    out_policies, out_labels = [], []
    for policy, label in zip(policies, labels, strict=True):
        off = policy.decision.model_copy(update={"enabled": False})
        out_policies.append(policy.model_copy(update={"decision": off}))
        out_labels.append(f"{label} send-all")
        for weight in mute_weights:
            if not 0 <= weight <= 1000:
                raise SimulationError(f"mute weight {weight:g} is outside 0-1000 (the policy's bounds)")
            on = policy.decision.model_copy(update={"enabled": True, "mute_weight": float(weight)})
            out_policies.append(policy.model_copy(update={"decision": on}))
            out_labels.append(f"{label} lambda={weight:g}")
    return out_policies, out_labels


def unique_labels(policies: Sequence[Policy], labels: Sequence[str] | None) -> list[str]:
    """Labels for the policies, made distinct (`name`, `name (2)`, ...)."""
    wanted = list(labels) if labels is not None else [policy.name for policy in policies]
    if len(wanted) != len(policies):
        raise SimulationError(f"{len(wanted)} labels for {len(policies)} policies: give one per policy")
    seen: dict[str, int] = {}
    out = []
    for label in wanted:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def simulate(
    world: SimWorld,
    policies: Sequence[Policy],
    config: ScheduleConfig | None = None,
    labels: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> SimulationReport:
    """Replay the same world and random draws under each policy; the report compares them."""
    if not policies:
        raise SimulationError("give at least one policy to simulate")
    config = config or ScheduleConfig()
    segments = _Segments(world)
    names = unique_labels(policies, labels)
    outcomes = [simulate_policy(world, policy, config, name, segments, progress)
                for policy, name in zip(policies, names, strict=True)]
    _, first_day = slot_instants(world, config)
    return SimulationReport(
        outcomes=outcomes,
        world={
            "cardholders": world.n_users,
            "asked": int((world.opted_in & (world.candidates >= 0).any(axis=1)).sum()),
            "opted_out": int((~world.opted_in).sum()),
            "contents": len(world.content_ids),
            "candidates_per_cardholder": int(world.candidates.shape[1]),
            "as_of": world.as_of.isoformat(),
            "ranking": world.ranking_source,
            "response": world.response_source,
        },
        config={
            "days": config.days,
            "seed": config.seed,
            "slots": list(config.slots),
            "scheduler_timezone": config.scheduler_timezone,
            "start": first_day.isoformat(),
        },
    )
