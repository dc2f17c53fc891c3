"""Request and response bodies of the ranking API (they define the OpenAPI schema at /docs)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from features.validation import CARD_NUMBER_PATTERN
from recsys.times import iso_utc

MAX_BATCH = 1000
MAX_K = 50
MAX_CANDIDATES = 1000
MAX_EVENTS = 1000
MAX_FEATURES = 500

_CARD_NUMBER = re.compile(CARD_NUMBER_PATTERN)


def refuse_card_numbers(value: str) -> str:
    """The data contract's id rule (`recsys validate`): an id that looks like a card number is refused."""
    if _CARD_NUMBER.fullmatch(value):
        raise ValueError(
            f"id {value[:4]}... is a 13-19 digit number and looks like a card number: send pseudonymous ids"
        )
    return value


Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$"),
    AfterValidator(refuse_card_numbers),
]


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return value
    if value.tzinfo is None:
        raise ValueError(
            "timestamp has no time zone: send ISO 8601 with an offset, e.g. 2026-11-25T09:00:00Z"
        )
    # comparing aware times converts both to UTC (5 us a request); a local year inside these bounds is
    # inside them whatever the offset (under a day), so only the edge years are compared exactly
    if not (EARLIEST.year < value.year < LATEST.year - 1 or EARLIEST <= value <= LATEST):
        raise ValueError(f"timestamp {value.isoformat()} is outside 2000-01-01..2100-01-01")
    return value


AwareDatetime = Annotated[datetime, AfterValidator(_utc)]

# Every time an answer carries: ISO 8601 in UTC with `Z`, whatever zone it was computed in.
UtcTime = Annotated[datetime, PlainSerializer(iso_utc, return_type=str),
                    WithJsonSchema({"type": "string", "format": "date-time",
                                    "description": "ISO 8601 in UTC with Z, e.g. 2026-11-25T01:00:00Z"})]


def article(word: str) -> str:
    """The indefinite article before `word` ("an opened", "a sent"), by its first letter."""
    return "an" if word[:1].lower() in "aeiou" else "a"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _distinct_candidates(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        seen: set[str] = set()
        duplicate = next(v for v in values if v in seen or seen.add(v))
        raise ValueError(f"content id {duplicate!r} is listed twice: list each candidate once")
    return values


def _finite_features(values: dict[str, float]) -> dict[str, float]:
    for name, value in values.items():
        if not -1e6 <= value <= 1e6:
            raise ValueError(f"feature {name!r} has weight {value}: weights must be finite, within ±1e6")
    return values


class RankRequest(Strict):
    user_id: Identifier = Field(description="Pseudonymous cardholder id.")
    k: int = Field(3, ge=1, le=MAX_K, description="How many ranked, allowed items to return.")
    now: AwareDatetime | None = Field(None, description="Decision time (default: the server's clock).")
    # validators inside the optional types run only on a value, not on every request's None
    candidates: Annotated[list[Identifier], Field(max_length=MAX_CANDIDATES),
                          AfterValidator(_distinct_candidates)] | None = Field(
        None,
        description="Content ids to rank (e.g. today's campaign pool); default: every published item. "
        "Transactional contents are only considered when listed here.",
    )
    reserve: bool = Field(False, description="Reserve a cap slot for the top allowed item; returns push_id.")
    campaign: Identifier | None = Field(None, description="Campaign name, for the campaign throttle.")
    features: Annotated[dict[str, float], Field(max_length=MAX_FEATURES),
                        AfterValidator(_finite_features)] | None = Field(
        None,
        description="For a cardholder the published model does not know: feature weights by feature "
        "name (as `FeatureBuilder.user_feature_dicts` produces), e.g. {\"card_tier=gold\": 1.0}.",
    )


class BatchRankRequest(Strict):
    requests: list[RankRequest] = Field(min_length=1, max_length=MAX_BATCH)

    @field_validator("requests")
    @classmethod
    def _distinct_users(cls, values: list[RankRequest]) -> list[RankRequest]:
        seen: set[str] = set()
        for request in values:
            if request.user_id in seen:
                raise ValueError(f"cardholder {request.user_id!r} appears twice: one request per cardholder")
            seen.add(request.user_id)
        return values


SCORE = ("The ranking score, only for ordering the items of one answer: the model's raw score (cardholder "
         "factors · item factors; unbounded, may be negative, e.g. -68.1) for a cardholder the model knows "
         "or describes by features; for a popularity fallback, the item's popularity scaled so the most "
         "popular item is 1. Not a probability: calibrated P(open) / P(mute) come from the response models.")


class RankedItem(BaseModel):
    content_id: str
    score: float = Field(description=SCORE)
    reason: str
    title: str
    kind: str
    p_open: float | None = Field(None, description="P(open) at the request's local hour (response models).")
    p_mute: float | None = Field(None, description="P(mute or unfollow) at the request's local hour.")


class CapBlock(BaseModel):
    rule: str
    detail: str
    eligible_at: UtcTime | None


class CapsDecision(BaseModel):
    allowed: bool = Field(description="Whether at least one ranked item may be pushed now.")
    blocks: list[CapBlock] = Field(description="Rules blocking the best candidate (empty when allowed).")
    next_eligible_at: UtcTime | None = Field(
        description="When a candidate becomes allowed (now when allowed; null when none ever will).")
    policy_version: str
    short: bool = Field(
        description="True when fewer than k items are returned while eligible candidates were left "
                    "beyond the k + 3 best the caps look at: those were not checked (a larger k checks "
                    "more).")


class Skipped(BaseModel):
    content_id: str
    reason: str


REGISTRY_MODEL = ("The registered model (MLflow) the live publication came from; null when published from "
                  "a path or run URI.")
REGISTRY_VERSION = ("Its registry version number (an alias such as @champion resolved when published); "
                    "null when published from a path or run URI.")
MODEL_VERSION = "The live publication: when it was published (recsys publish), not the registry version."


class RankResponse(BaseModel):
    user_id: str
    items: list[RankedItem]
    model_version: str = Field(description=MODEL_VERSION)
    registry_model: str | None = Field(None, description=REGISTRY_MODEL)
    registry_version: str | None = Field(None, description=REGISTRY_VERSION)
    fallback: bool = Field(description="True when the cardholder is unknown to the published model.")
    fallback_source: Literal["features", "segment_popularity", "popularity"] | None
    caps: CapsDecision
    push_id: str | None = None
    reservation_expires_at: UtcTime | None = None
    decision: Literal["send", "hold"] = Field(
        "send", description="Send the first item now, or hold (recsys.decision); reserve only on send.")
    reason: str = Field("", description="Why send or hold, e.g. 'better hour later: 19:00 local ...'.")
    send_at: UtcTime | None = Field(
        None, description="Suggested send time (UTC): now or a better hour later today on send (always now "
        "for a scheduler known to send at once); on hold, when to ask again (a slot of the scheduler, "
        "better content's day, the caps' next eligible time), null when nothing is worth it.")
    best_hours: list[int] = Field(default_factory=list,
                                  description="The cardholder's best local send hours, best first.")
    skipped: list[Skipped] = Field(default_factory=list,
                                   description="Requested candidates that could not be ranked, and why.")


class BatchRankResponse(BaseModel):
    results: list[RankResponse]
    model_version: str = Field(description=MODEL_VERSION)
    registry_model: str | None = Field(None, description=REGISTRY_MODEL)
    registry_version: str | None = Field(None, description=REGISTRY_VERSION)


EventType = Literal["sent", "failed", "opened", "clicked", "muted", "unmuted", "unsubscribed", "subscribed"]


class Event(Strict):
    event_id: Identifier = Field(description="Unique id of this event; a repeated id is ignored.")
    type: EventType
    user_id: Identifier
    push_id: Identifier | None = Field(None, description="Required for sent, failed, opened and clicked.")
    content_id: Identifier | None = None
    ts: AwareDatetime | None = Field(None, description="When it happened (default: when received).")

    @model_validator(mode="after")
    def _push_id_when_needed(self) -> Event:
        if self.type in ("sent", "failed", "opened", "clicked") and self.push_id is None:
            raise ValueError(
                f"{article(self.type)} {self.type} event needs push_id: "
                "the id returned by /v1/rank with reserve=true"
            )
        return self


class EventBatch(Strict):
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS)


class EventResult(BaseModel):
    event_id: str
    status: Literal["applied", "recorded", "unchanged", "duplicate"] = Field(
        description="`applied`: the caps state changed; `recorded`: a `sent` with no pending reservation "
        "(never issued, or expired: the store cannot tell), counted as a send at its ts; `unchanged`: "
        "a valid event that changed nothing (e.g. `failed` after `sent`); `duplicate`: the event id "
        "was applied before.")
    detail: str


class EventBatchResponse(BaseModel):
    results: list[EventResult]


class LimitState(BaseModel):
    name: str
    count: int
    max: int
    window: str
    window_start: UtcTime | None
    window_end: UtcTime | None


class CapsState(BaseModel):
    user_id: str
    as_of: UtcTime
    timezone: str
    limits: list[LimitState]
    pending_reservations: int
    sent_total: int
    unopened_streak: int
    last_sent_at: UtcTime | None
    opted_out: bool
    muted: bool
    next_eligible_at: UtcTime | None
    blocks: list[CapBlock]
    policy_version: str


class PolicyView(BaseModel):
    revision: int
    author: str
    at: UtcTime
    note: str
    policy: dict[str, Any]


class PolicyChange(BaseModel):
    path: str
    old: Any
    new: Any


class PolicyRevisionView(BaseModel):
    revision: int
    version: str
    author: str
    at: UtcTime
    note: str
    diff: list[PolicyChange]


class PolicyVersions(BaseModel):
    current: int
    revisions: list[PolicyRevisionView]


class RollbackRequest(Strict):
    revision: int = Field(ge=1, description="The revision whose document becomes current again.")


class ReloadResponse(BaseModel):
    model_version: str | None
    policy_revision: int


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    redis: bool
    model_version: str | None = Field(description=MODEL_VERSION)
    registry_model: str | None = Field(None, description=REGISTRY_MODEL)
    registry_version: str | None = Field(None, description=REGISTRY_VERSION)
    policy_revision: int | None
    detail: str
