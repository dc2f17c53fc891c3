"""The anti-disturbance policy: which marketing pushes a cardholder may receive, and when.

A policy is a versioned YAML or JSON document, validated here into a frozen `Policy`. Every
engine (the in-memory reference, the Redis engine, the day-by-day simulator) reads the same
`Policy` and applies the rules documented in `recsys/caps/rules.py`.

Document shape (every key except `version` is optional; see `default_policy.yaml`)::

    version: "2026.11-default"      # required, free text, shown in every decision
    name: default
    default_timezone: Asia/Shanghai # for cardholders with no known zone
    reservation_ttl: 10m            # unconfirmed reservations stop counting after this
    limits:                         # marketing pushes per cardholder per window
      - {name: daily, window: calendar_day, max: 1}
      - {name: monthly, window: calendar_month, max: 4}
      - {name: promotions_weekly, window: rolling, duration: 7d, max: 2, kinds: [promotion]}
    min_gap: 12h                    # between two pushes to one cardholder
    quiet_hours: {start: "22:00", end: "08:00"}   # cardholder's local time; may cross midnight
    no_repeat: {window: forever}    # the same content never twice (or e.g. 90d)
    fatigue: {after_unopened: 3, pause: 14d}
    mute: {pause: forever}          # how long a mute/unfollow blocks marketing
    transactional: {counts_toward_limits: false}
    campaign_throttle: {max: 500, per: 1s, campaigns: {spring-sale: {max: 50, per: 1s}}}
    retention: 400d                 # idle cardholder state is dropped after this (memory bound)
    decision: {mute_weight: 10, min_value: 0, hour_margin: 0.1,   # send or hold (recsys.decision)
               pacing: {margin: 0.2},
               scheduler_slots: ["10:00", "19:30"],   # default_timezone; omit to learn them
               scheduler_follows_send_at: false,      # sends at once on `send`; omit to learn it
               control_share: 0.05}                   # sent whatever the value, to measure the uplift
    override_no_limits: "reason"    # required to store a policy with no limit on all marketing

Durations are integers (seconds) or strings `<n>s|m|h|d|w` (e.g. `90s`, `30m`, `12h`, `7d`), at most
10 years; `reservation_ttl` and campaign-throttle periods at most 1 day, `min_gap` at most 31 days,
rolling windows and fatigue pauses at most 366 days. At most 30 limits and 1,000 campaign overrides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from recsys.times import zone

DEFAULT_POLICY_RESOURCE = "default_policy.yaml"
MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
# Calendar months are at most 31 days; one more day covers any zone offset.
CALENDAR_MONTH_HORIZON_SECONDS = 32 * DAY

_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": MINUTE, "h": HOUR, "d": DAY, "w": 7 * DAY}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_CLOCK_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

# Every duration is bounded, so no setting overflows the stores' millisecond integers.
MAX_DURATION_SECONDS = 3650 * DAY
MAX_LIMITS = 30
MAX_SCHEDULER_SLOTS = 48


def is_clock(value: object) -> bool:
    """Whether `value` is a clock time "HH:MM" (24 h, two digits each)."""
    return isinstance(value, str) and _CLOCK_RE.match(value) is not None


def clock_minute(clock: str) -> int:
    """A validated "HH:MM" as its minute of the day."""
    return int(clock[:2]) * 60 + int(clock[3:])


class PolicyError(ValueError):
    """A policy document is missing, unreadable or breaks a rule; the message names the field."""


def parse_duration(value: object) -> int:
    """Seconds from an int or a string such as `90s`, `30m`, `12h`, `7d`, `2w`."""
    if isinstance(value, bool):
        raise ValueError("a duration must be seconds or a string like '12h' or '7d', not a boolean")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, float) and value.is_integer():
        seconds = int(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value.lower())
        if match is None:
            raise ValueError(
                f"{value!r} is not a duration: use seconds or '<n>s|m|h|d|w' such as '12h' or '7d'"
            )
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration: use seconds or a string such as '12h' or '7d'")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"a duration must be at most 3650d (10 years), got {format_duration(seconds)}")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact `<n><unit>` form, e.g. 604800 -> '7d'."""
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _duration_or_forever(value: object) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "forever"):
        return None
    return parse_duration(value)


Duration = Annotated[int, BeforeValidator(parse_duration)]
DurationOrForever = Annotated[int | None, BeforeValidator(_duration_or_forever)]


def _at_most(bound: int):
    def check(seconds: int) -> int:
        if seconds > bound:
            raise ValueError(f"at most {format_duration(bound)}, got {format_duration(seconds)}")
        return seconds

    return AfterValidator(check)


Duration1d = Annotated[int, BeforeValidator(parse_duration), _at_most(DAY)]
Duration31d = Annotated[int, BeforeValidator(parse_duration), _at_most(31 * DAY)]
Duration366d = Annotated[int, BeforeValidator(parse_duration), _at_most(366 * DAY)]


def _check_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"{what} {value!r} must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Limit(_Frozen):
    """At most `max` pushes per cardholder in a window, optionally only pushes of some kinds or tags.

    `calendar_day` / `calendar_month` windows are the cardholder's local day / month; `rolling`
    windows are the last `duration` before now. A limit with `kinds` and/or `tags` applies only to
    candidates whose kind is listed (and/or that carry one of the tags), and counts only such pushes.
    """

    name: str
    window: Literal["calendar_day", "calendar_month", "rolling"]
    max: int = Field(ge=1, le=10_000)
    duration: Duration366d | None = None
    kinds: tuple[str, ...] = Field(default=(), max_length=100)
    tags: tuple[str, ...] = Field(default=(), max_length=100)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "limit name")

    @field_validator("kinds", "tags")
    @classmethod
    def _labels(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            _check_name(value, "kind/tag")
        return tuple(dict.fromkeys(values))

    @model_validator(mode="after")
    def _duration_matches_window(self) -> Limit:
        if self.window == "rolling" and self.duration is None:
            raise ValueError(f"limit {self.name!r}: a rolling window needs `duration` (e.g. 7d)")
        if self.window != "rolling" and self.duration is not None:
            raise ValueError(
                f"limit {self.name!r}: `duration` only applies to rolling windows; remove it or set "
                "window: rolling"
            )
        return self

    @property
    def filtered(self) -> bool:
        return bool(self.kinds or self.tags)

    def matches(self, kind: str, tags: tuple[str, ...] | frozenset[str]) -> bool:
        """Whether a push of this kind and tags is counted by (and limited by) this limit."""
        if self.kinds and kind not in self.kinds:
            return False
        return not self.tags or any(tag in self.tags for tag in tags)

    def describe(self) -> str:
        what = "pushes"
        if self.kinds:
            what = f"{'/'.join(self.kinds)} pushes"
        if self.tags:
            what += f" tagged {'/'.join(self.tags)}"
        if self.window == "rolling":
            return f"{what} in any {format_duration(self.duration or 0)}"
        return f"{what} per calendar {'day' if self.window == 'calendar_day' else 'month'}"


class QuietHours(_Frozen):
    """No marketing push between `start` and `end` local time; `start > end` crosses midnight."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not is_clock(value):
            raise ValueError(f"{value!r} is not a clock time: use 'HH:MM' (24h), e.g. '22:00'")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours start and end are equal: remove `quiet_hours` to disable them")
        return self

    @property
    def start_minute(self) -> int:
        return clock_minute(self.start)

    @property
    def end_minute(self) -> int:
        return clock_minute(self.end)


class NoRepeat(_Frozen):
    """The same content is never pushed twice to a cardholder within `window` (None = forever)."""

    window: DurationOrForever = None


class Fatigue(_Frozen):
    """After `after_unopened` consecutive sent marketing pushes with no open, pause `pause` after the last.

    Any open resets the streak.
    """

    after_unopened: int = Field(ge=1, le=1000)
    pause: Duration366d


class Mute(_Frozen):
    """A mute/unfollow blocks marketing for `pause` after it (None = until the cardholder unmutes)."""

    pause: DurationOrForever = None


class Transactional(_Frozen):
    """Transactional notices are exempt from every marketing rule; do they count toward the limits?

    When `counts_toward_limits` is true, sent/reserved transactional notices are counted by the
    limits and the minimum gap (so a bill reminder uses up the day's slot); they never count toward
    fatigue or no-repeat.
    """

    counts_toward_limits: bool = False


class Rate(_Frozen):
    max: int = Field(ge=1, le=10_000_000)
    per: Duration1d


class CampaignThrottle(_Frozen):
    """At most `max` reservations per `per` (fixed windows aligned to the epoch) for each campaign.

    `campaigns` overrides the rate for named campaigns. Applies to every candidate that names a
    campaign, transactional or not (it protects the sending channel, not the cardholder).
    """

    max: int = Field(ge=1, le=10_000_000)
    per: Duration1d
    campaigns: dict[str, Rate] = Field(default_factory=dict, max_length=1000)

    @field_validator("campaigns")
    @classmethod
    def _campaign_names(cls, values: dict[str, Rate]) -> dict[str, Rate]:
        for name in values:
            _check_name(name, "campaign")
        return values

    def rate(self, campaign: str) -> tuple[int, int]:
        """(max, per_seconds) for a campaign."""
        override = self.campaigns.get(campaign)
        if override is not None:
            return override.max, override.per
        return self.max, self.per


class Pacing(_Frozen):
    """Hold a push when at least as many later days of the calendar month are worth more than
    (1 + `margin`) x its value now as the cardholder has monthly slots left (`recsys.decision`)."""

    margin: float = Field(0.2, ge=0.0, le=10.0)

    @model_validator(mode="before")
    @classmethod
    def _replaced_fields(cls, value: Any) -> Any:
        if isinstance(value, dict) and ({"min_value", "days_per_slot"} & set(value)):
            raise ValueError("pacing.min_value and pacing.days_per_slot were replaced by pacing.margin (hold "
                             "while enough later days of the month are worth more than now): write "
                             "pacing: {margin: 0.0}")
        return value


class Decision(_Frozen):
    """Whether a ranked push goes now (`recsys.decision`): its value is p_open - mute_weight x p_mute.

    Hold when the value is below `min_value`, when a later hour of the cardholder's local day (outside
    quiet hours) is worth more than (1 + `hour_margin`) x now and a scheduler slot comes before it, or
    under `pacing`. `scheduler_slots` fixes the slots (an empty list: never hold for one); without it
    they are learned from the batch calls. `scheduler_follows_send_at` fixes whether the scheduler sends
    at `send_at` (false: `send` means now and `hold` names its slot to ask again at); without it that is
    learned from its `sent` events. `enabled: false` sends whatever the caps allow (the engine before
    response models); `control_share` does so for a fixed share of the cardholders (`recsys.control`),
    against whom the decision's uplift is measured and on whose pushes response models can be refitted.
    """

    enabled: bool = True
    mute_weight: float = Field(10.0, ge=0.0, le=1000.0)
    min_value: float = Field(0.0, ge=-1.0, le=1.0)
    hour_margin: float = Field(0.1, ge=0.0, le=10.0)
    pacing: Pacing | None = Field(default_factory=Pacing)
    # the scheduler's times of asking ("HH:MM" in `default_timezone`); None: learned from its batch calls
    scheduler_slots: tuple[str, ...] | None = Field(None, max_length=MAX_SCHEDULER_SLOTS)
    # whether the scheduler sends at the `send_at` answered; None: learned from its `sent` events
    scheduler_follows_send_at: bool | None = None
    # the share of cardholders (by a fixed hash of the id) sent whatever the caps allow; at most half
    control_share: float = Field(0.0, ge=0.0, le=0.5)

    @field_validator("scheduler_follows_send_at", mode="before")
    @classmethod
    def _follows(cls, value: object) -> object:
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"scheduler_follows_send_at: {value!r} is not true, false or null: true or "
                             "false fixes whether the scheduler sends at send_at, null learns it from its "
                             "sent events")
        return value

    @field_validator("scheduler_slots")
    @classmethod
    def _slots(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        wrong = [clock for clock in value if not is_clock(clock)]
        if wrong:
            raise ValueError(f"scheduler_slots: {wrong[0]!r} is not a clock time: use 'HH:MM' (24h), "
                             "e.g. ['10:00', '19:30']")
        return tuple(sorted(set(value)))

    @property
    def slot_minutes(self) -> tuple[int, ...] | None:
        """`scheduler_slots` as minutes of the day (None: learn them)."""
        if self.scheduler_slots is None:
            return None
        return tuple(map(clock_minute, self.scheduler_slots))


class Policy(_Frozen):
    """A validated, immutable anti-disturbance policy. Build with `parse_policy` or `load_policy`."""

    version: str = Field(min_length=1, max_length=100)
    name: str = "unnamed"
    description: str = ""
    default_timezone: str = "Asia/Shanghai"
    reservation_ttl: Duration = 10 * MINUTE
    limits: tuple[Limit, ...] = Field(default=(), max_length=MAX_LIMITS)
    min_gap: Duration31d | None = None
    quiet_hours: QuietHours | None = None
    no_repeat: NoRepeat | None = None
    fatigue: Fatigue | None = None
    mute: Mute = Field(default_factory=Mute)
    transactional: Transactional = Field(default_factory=Transactional)
    campaign_throttle: CampaignThrottle | None = None
    retention: Duration = 400 * DAY
    decision: Decision = Field(default_factory=Decision)
    override_no_limits: str | None = Field(
        None, min_length=10, max_length=500,
        description="Why this policy may cap no marketing push by count (stored with its author).",
    )

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)  # UnknownZoneError, a ValueError, names the zone
        return value

    @field_validator("reservation_ttl")
    @classmethod
    def _ttl(cls, value: int) -> int:
        if value > DAY:
            raise ValueError("reservation_ttl above 1d would hold slots for unsent pushes too long")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        names = [limit.name for limit in self.limits]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"limits: duplicate limit name(s) {duplicates}: give each limit its own name")
        if self.retention < self.history_horizon:
            raise ValueError(
                f"retention ({format_duration(self.retention)}) is shorter than the longest window "
                f"({format_duration(self.history_horizon)}): raise retention"
            )
        return self

    @property
    def limits_all_marketing(self) -> bool:
        """Whether some count limit applies to every marketing push (one without kinds or tags)."""
        return any(not limit.filtered for limit in self.limits)

    def check_protective(self) -> None:
        """Refuse a policy that caps no marketing push by count unless it says why (`PolicyError`)."""
        if not self.limits_all_marketing and not self.override_no_limits:
            raise PolicyError(
                f"policy {self.version}: no limit applies to every marketing push (a limit without kinds "
                "or tags), so cardholders could be pushed without end; add one, or set "
                "`override_no_limits: <reason>` (kept with the author in the audit trail)"
            )

    @property
    def history_horizon(self) -> int:
        """Seconds of push history any rule can look back (records older than this never count)."""
        spans = [CALENDAR_MONTH_HORIZON_SECONDS, self.reservation_ttl]
        spans += [limit.duration for limit in self.limits if limit.duration]
        if self.min_gap:
            spans.append(self.min_gap)
        if self.no_repeat and self.no_repeat.window:
            spans.append(self.no_repeat.window)
        return max(spans)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able document that `parse_policy` turns back into an equal policy."""
        data = self.model_dump(mode="json")
        data["limits"] = [
            {key: value for key, value in limit.items() if value not in (None, [], ())}
            for limit in data["limits"]
        ]
        for limit in data["limits"]:
            if "duration" in limit:
                limit["duration"] = format_duration(limit["duration"])
        if data["override_no_limits"] is None:
            del data["override_no_limits"]
        for key in ("reservation_ttl", "min_gap", "retention"):
            if data[key] is not None:
                data[key] = format_duration(data[key])
        if self.no_repeat is not None:
            data["no_repeat"] = {
                "window": format_duration(self.no_repeat.window) if self.no_repeat.window else "forever"
            }
        data["mute"] = {"pause": format_duration(self.mute.pause) if self.mute.pause else "forever"}
        if self.fatigue is not None:
            data["fatigue"]["pause"] = format_duration(self.fatigue.pause)
        if self.campaign_throttle is not None:
            throttle = data["campaign_throttle"]
            throttle["per"] = format_duration(throttle["per"])
            for rate in throttle["campaigns"].values():
                rate["per"] = format_duration(rate["per"])
        return data

    def summary(self) -> str:
        """Human-readable lines, one per rule."""
        lines = [f"policy {self.name} version {self.version} (default zone {self.default_timezone})"]
        for limit in self.limits:
            lines.append(f"  limit {limit.name}: at most {limit.max} {limit.describe()}")
        if self.min_gap:
            lines.append(f"  min_gap: {format_duration(self.min_gap)} between two pushes")
        if self.quiet_hours:
            lines.append(f"  quiet_hours: {self.quiet_hours.start}-{self.quiet_hours.end} local time")
        if self.no_repeat:
            window = f"in {format_duration(self.no_repeat.window)}" if self.no_repeat.window else "ever"
            lines.append(f"  no_repeat: the same content at most once {window}")
        if self.fatigue:
            lines.append(
                f"  fatigue: pause {format_duration(self.fatigue.pause)} after "
                f"{self.fatigue.after_unopened} consecutive unopened pushes"
            )
        mute = format_duration(self.mute.pause) if self.mute.pause else "until unmuted"
        lines.append(f"  mute: no marketing {mute}; opt-out: no marketing until opted back in")
        counts = "count" if self.transactional.counts_toward_limits else "do not count"
        lines.append(f"  transactional notices: exempt from marketing rules and {counts} toward limits")
        if self.campaign_throttle:
            throttle = self.campaign_throttle
            lines.append(
                f"  campaign_throttle: {throttle.max} reservations per {format_duration(throttle.per)} "
                f"per campaign ({len(throttle.campaigns)} override(s))"
            )
        lines.append(
            f"  reservation_ttl: {format_duration(self.reservation_ttl)}; "
            f"retention: {format_duration(self.retention)}"
        )
        return "\n".join(lines)


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item.startswith("function-") or item in {"int", "str", "none"}:
            continue
        else:
            parts.append(f".{item}" if parts else str(item))
    return "".join(parts) or "(document)"


def parse_policy(mapping: Mapping[str, Any], source: str = "policy") -> Policy:
    """Validate a policy document; raises `PolicyError` naming each offending field."""
    if not isinstance(mapping, Mapping):
        raise PolicyError(f"{source}: a policy must be a mapping of fields, got {type(mapping).__name__}")
    try:
        return Policy.model_validate(dict(mapping))
    except ValidationError as error:
        problems = []
        for item in error.errors():
            message = str(item["msg"]).removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                message = "unknown field: check the spelling against the policy reference"
            problems.append(f"  {_location(tuple(item['loc']))}: {message}")
        raise PolicyError(f"{source}: invalid policy\n" + "\n".join(problems)) from None


def parse_policy_text(text: str, source: str = "policy") -> Policy:
    """Parse YAML (a superset of JSON) policy text."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PolicyError(f"{source}: not valid YAML/JSON: {error}") from None
    return parse_policy(document, source)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a `.yaml`, `.yml` or `.json` policy file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError(f"{path}: cannot read the policy file: {error.strerror or error}") from None
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise PolicyError(f"{path}: not valid JSON: {error}") from None
        return parse_policy(document, str(path))
    return parse_policy_text(text, str(path))


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    """The policy shipped in the package (`recsys/caps/default_policy.yaml`)."""
    text = resources.files(__package__).joinpath(DEFAULT_POLICY_RESOURCE).read_text(encoding="utf-8")
    return parse_policy_text(text, f"recsys/caps/{DEFAULT_POLICY_RESOURCE}")


def default_policy_text() -> str:
    """The shipped default policy file, comments included."""
    return resources.files(__package__).joinpath(DEFAULT_POLICY_RESOURCE).read_text(encoding="utf-8")
