"""What the cap engines take and return: candidates, decisions, reservations, cardholder state.

Every engine (`ReferenceCapEngine`, `RedisCapEngine`) speaks these types, so callers (the ranking
API, the simulator) never depend on the store. All times are timezone-aware UTC `datetime`s;
naive datetimes given to an engine are read as UTC (as in the data contract).

Rule names that can appear in `Block.rule`, in this order:

- `opt_out`           cardholder opted out of marketing; `eligible_at` None (until opted back in)
- `muted`             cardholder muted/unfollowed; until `muted_at + mute.pause`, None if forever
- `quiet_hours`       local time inside the quiet hours; eligible at their local end
- `limit:<name>`      a policy limit is full; eligible when a push leaves the window
- `min_gap`           too soon after the last push; eligible at last push + gap
- `fatigue`           N consecutive unopened pushes; eligible at last sent push + pause
- `no_repeat`         this content was already pushed (or reserved); None if the window is forever
- `campaign_throttle` the candidate's campaign used its reservations for this rate window
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from recsys.times import utc_datetime as to_utc

RULE_ORDER = (
    "opt_out",
    "muted",
    "quiet_hours",
    "limit",
    "min_gap",
    "fatigue",
    "no_repeat",
    "campaign_throttle",
)


class CapRequestError(ValueError):
    """A request to a cap engine is malformed (unknown zone, empty id, duplicate cardholder...)."""


class EventAlreadyApplied(Exception):
    """An event id this cardholder's state already reflects: applying it again would count it twice."""


class CapStoreUnavailable(RuntimeError):
    """The cap store (Redis) cannot be reached: nothing may be pushed until it answers again.

    Decisions fail closed: no decision and no reservation is returned, so no push is allowed.
    Nothing recorded before is lost (the store was not written, or the write is whole).
    """


class PushStatus(enum.StrEnum):
    """Outcome of `confirm` / `release` (both idempotent)."""

    CONFIRMED = "confirmed"  # reservation turned into a sent push
    RELEASED = "released"  # reservation given back (send failed); it no longer counts
    ALREADY_CONFIRMED = "already_confirmed"  # retry of a confirm, or release after confirm: no change
    ALREADY_RELEASED = "already_released"  # retry of a release, or confirm after release: no change
    NOT_FOUND = "not_found"  # unknown push id, or the reservation expired (TTL) before confirm
    RECORDED = "recorded"  # a sent push with no pending reservation (late or unknown): counted at its time


class ReservationStatus(enum.StrEnum):
    RESERVED = "reserved"
    CONFIRMED = "confirmed"
    RELEASED = "released"


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds (the engines' internal clock unit)."""
    moment = to_utc(moment)
    return (moment.toordinal() - 719163) * 86_400_000 + (
        moment.hour * 3_600_000 + moment.minute * 60_000 + moment.second * 1000 + moment.microsecond // 1000
    )


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def now_utc() -> datetime:
    return datetime.now(tz=UTC)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One content that could be pushed to a cardholder.

    `kind` is the data contract's content kind (`article`, `promotion`, `activity`, `reminder`),
    `tags` its topic tags; `transactional` marks service notices (exempt from marketing rules);
    `campaign` names the campaign whose send rate is throttled (None: not throttled).
    """

    content_id: str
    kind: str = "article"
    tags: tuple[str, ...] = ()
    transactional: bool = False
    campaign: str | None = None


# Not frozen: built once per cardholder of every batch, and a frozen dataclass sets each field through
# object.__setattr__ (1.3 against 0.3 us for five fields); nothing hashes these or changes them after.
@dataclass(slots=True)
class CapRequest:
    """One cardholder and the ordered candidates to decide (best first).

    `timezone` is the cardholder's IANA zone (None or "" -> the policy's default zone). With
    `reserve=True` the engine reserves a slot for the first allowed candidate, under `push_id`
    (generated when None). Reusing a push id that is still known returns the existing reservation
    (`Reservation.replayed`) instead of reserving again, so a retried request never double-books.
    """

    user_id: str
    candidates: tuple[Candidate, ...]
    timezone: str | None = None
    reserve: bool = False
    push_id: str | None = None


class Block:
    """One rule that blocks a candidate, why (`detail`), and when it stops blocking (None: no known time).

    Immutable. `detail` may be given as a `render` function, called on first access: engines
    decide far more candidates than callers ever explain.
    """

    __slots__ = ("rule", "eligible_at", "_detail", "_render")
    rule: str
    eligible_at: datetime | None

    def __init__(
        self,
        rule: str,
        detail: str | None = None,
        eligible_at: datetime | None = None,
        *,
        render: Callable[[], str] | None = None,
    ) -> None:
        if detail is None and render is None:
            raise ValueError(f"block {rule!r} needs a detail or a render function")
        object.__setattr__(self, "rule", rule)
        object.__setattr__(self, "eligible_at", eligible_at)
        object.__setattr__(self, "_detail", detail)
        object.__setattr__(self, "_render", render)

    @property
    def detail(self) -> str:
        if self._detail is None:
            object.__setattr__(self, "_detail", self._render())
        return self._detail

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Block is immutable: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Block):
            return NotImplemented
        return (self.rule, self.eligible_at, self.detail) == (other.rule, other.eligible_at, other.detail)

    def __hash__(self) -> int:
        return hash((self.rule, self.eligible_at, self.detail))

    def __repr__(self) -> str:
        return f"Block(rule={self.rule!r}, detail={self.detail!r}, eligible_at={self.eligible_at!r})"


@dataclass(frozen=True, slots=True)
class CandidateDecision:
    """The decision for one candidate.

    `eligible_at` is the earliest time at which, if nothing else is pushed, every rule passes:
    the latest `eligible_at` of the blocking rules, moved past quiet hours; None when some block
    has no end (opt-out, forever-mute, content already pushed under a forever no-repeat);
    the decision time when allowed.
    """

    content_id: str
    allowed: bool
    blocks: tuple[Block, ...]
    eligible_at: datetime | None

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(block.rule for block in self.blocks)


# Not frozen, as CapRequest: one per cardholder of every batch.
@dataclass(slots=True)
class Reservation:
    """A slot held for one push. It counts toward every cap until released or expired."""

    push_id: str
    user_id: str
    content_id: str
    reserved_at: datetime
    expires_at: datetime
    status: ReservationStatus = ReservationStatus.RESERVED
    replayed: bool = False  # the push id was already known: this is the earlier reservation


# Not frozen, as CapRequest: one per cardholder of every batch.
@dataclass(slots=True)
class UserDecision:
    """Decisions for one cardholder's candidates (same order) and the reservation, if one was made."""

    user_id: str
    decisions: tuple[CandidateDecision, ...]
    reservation: Reservation | None
    policy_version: str
    decided_at: datetime

    @property
    def first_allowed(self) -> int | None:
        """Index of the first allowed candidate, or None."""
        for index, decision in enumerate(self.decisions):
            if decision.allowed:
                return index
        return None

    @property
    def eligible_at(self) -> datetime | None:
        """Earliest time any of the candidates becomes allowed (None: none ever will, as things stand)."""
        times = [decision.eligible_at for decision in self.decisions if decision.eligible_at is not None]
        return min(times) if times else None


@dataclass(frozen=True, slots=True)
class LimitCount:
    """Pushes (sent + reserved) a limit currently counts for a cardholder."""

    name: str
    count: int
    max: int
    window: str
    window_start: datetime | None
    window_end: datetime | None


@dataclass(frozen=True, slots=True)
class CardholderState:
    """A cardholder's cap state at `as_of`, for display and debugging.

    `next_eligible_at` answers "when could a new marketing push (new content, no kind/tag limit,
    no campaign) go out": `as_of` if now, None if never as things stand. `blocks` are the rules
    blocking such a push.
    """

    user_id: str
    as_of: datetime
    timezone: str
    limits: tuple[LimitCount, ...]
    pending: tuple[Reservation, ...]
    sent_total: int
    unopened_streak: int
    last_sent_at: datetime | None
    opted_out: bool
    muted: bool
    next_eligible_at: datetime | None
    blocks: tuple[Block, ...] = field(default=())
    policy_version: str = ""
