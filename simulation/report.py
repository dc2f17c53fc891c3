"""What a simulation reports per policy, overall and per segment, and its terminal table."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

METRICS = (
    ("attempts", "scheduler requests (cardholder x send slot)"),
    ("sent", "pushes sent"),
    ("reached", "cardholders reached"),
    ("expected_opens", "expected opens"),
    ("opens_per_push", "expected opens per push"),
    ("expected_mutes", "expected mutes/unfollows"),
    ("mutes_per_1k_pushes", "expected mutes per 1,000 pushes"),
    ("pushes_per_1k", "pushes per 1,000 cardholders"),
    ("opens_per_1k", "expected opens per 1,000 cardholders"),
    ("mutes_per_1k", "expected mutes per 1,000 cardholders"),
    ("value_per_1k", "value (opens - 10 x mutes) per 1,000 cardholders"),
    ("held", "requests held by the send or hold decision"),
    ("blocked", "requests blocked"),
    ("deferred_quiet_hours", "requests deferred to the end of quiet hours"),
)
SEGMENT_METRICS = (
    ("sent", "pushes sent"),
    ("reached", "reached"),
    ("expected_opens", "expected opens"),
    ("opens_per_push", "opens per push"),
    ("expected_mutes", "expected mutes"),
)


ADDITIVE_WORLD = ("cardholders", "asked", "opted_out")  # world counts that partitions add up
VALUE_MUTE_WEIGHT = 10.0  # the value: opens - 10 x mutes


@dataclass
class Tally:
    """Counts for one policy, for all cardholders or one segment."""

    cardholders: int = 0
    attempts: int = 0
    sent: int = 0
    reached: int = 0
    expected_opens: float = 0.0
    expected_mutes: float = 0.0
    opens: int = 0  # drawn
    mutes: int = 0  # drawn
    blocked: int = 0
    no_candidate: int = 0
    deferred_quiet_hours: int = 0
    held: int = 0  # allowed by the caps, held by the decision (recsys.decision)
    # blocked requests each rule alone blocked (it blocked every candidate); `combined` when none did
    blocked_by_rule: dict[str, int] = field(default_factory=dict)
    # the same, charged to the first such rule in report order only: sums to `blocked`
    blocked_first_rule: dict[str, int] = field(default_factory=dict)

    @property
    def opens_per_push(self) -> float:
        return self.expected_opens / self.sent if self.sent else 0.0

    @property
    def mutes_per_1k_pushes(self) -> float:
        return 1000.0 * self.expected_mutes / self.sent if self.sent else 0.0

    @property
    def value(self) -> float:
        """Expected opens - VALUE_MUTE_WEIGHT x expected mutes: a mute loses the cardholder for good."""
        return self.expected_opens - VALUE_MUTE_WEIGHT * self.expected_mutes

    def per_1k(self, amount: float) -> float:
        return 1000.0 * amount / self.cardholders if self.cardholders else 0.0

    @property
    def pushes_per_1k(self) -> float:
        return self.per_1k(self.sent)

    @property
    def opens_per_1k(self) -> float:
        return self.per_1k(self.expected_opens)

    @property
    def mutes_per_1k(self) -> float:
        return self.per_1k(self.expected_mutes)

    @property
    def value_per_1k(self) -> float:
        return self.per_1k(self.value)

    @staticmethod
    def combine(parts: list[Tally]) -> Tally:
        """The tally of disjoint sets of cardholders: every count added up, rule by rule."""
        out = Tally()
        for item in fields(Tally):
            if item.name.startswith("blocked_") and item.name != "blocked":
                added: Counter[str] = Counter()
                for part in parts:
                    added.update(getattr(part, item.name))
                order = dict.fromkeys(rule for part in parts for rule in getattr(part, item.name))
                setattr(out, item.name, {rule: int(added[rule]) for rule in order})
            else:
                setattr(out, item.name, sum((getattr(part, item.name) for part in parts),
                                            type(getattr(out, item.name))()))
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("opens_per_push", "mutes_per_1k_pushes", "value", "pushes_per_1k", "opens_per_1k",
                     "mutes_per_1k", "value_per_1k"):
            data[name] = getattr(self, name)
        return data


@dataclass
class PolicyOutcome:
    """The replay of one policy: totals, per-segment tallies and daily series."""

    label: str
    policy: dict[str, Any]
    rules: tuple[str, ...]
    total: Tally
    segments: dict[str, dict[str, Tally]]
    daily: dict[str, list[float]]
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "policy": self.policy,
            "rules": list(self.rules),
            "total": self.total.to_dict(),
            "segments": {name: {label: tally.to_dict() for label, tally in labels.items()}
                         for name, labels in self.segments.items()},
            "daily": self.daily,
            "seconds": self.seconds,
        }


def combine_outcomes(parts: list[PolicyOutcome]) -> PolicyOutcome:
    """One policy's outcome over disjoint partitions of the cardholders: tallies added per segment
    label (labels in sorted order, as one replay of everyone lists them), daily series added."""
    first = parts[0]
    segments = {}
    for name in first.segments:
        labels = sorted({label for part in parts for label in part.segments.get(name, {})})
        segments[name] = {label: Tally.combine([part.segments[name][label] for part in parts
                                                if label in part.segments.get(name, {})])
                          for label in labels}
    daily = {key: [sum(values) for values in zip(*(part.daily[key] for part in parts), strict=True)]
             for key in first.daily}
    return PolicyOutcome(label=first.label, policy=first.policy, rules=first.rules,
                         total=Tally.combine([part.total for part in parts]), segments=segments, daily=daily,
                         seconds=sum(part.seconds for part in parts))


@dataclass
class SimulationReport:
    """Outcomes of every policy replayed on the same world with the same random draws."""

    outcomes: list[PolicyOutcome]
    world: dict[str, Any]
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"world": self.world, "config": self.config,
                "outcomes": [outcome.to_dict() for outcome in self.outcomes]}

    @staticmethod
    def combine(parts: list[SimulationReport]) -> SimulationReport:
        """The report of disjoint partitions of one world's cardholders replayed with the same
        policies, config and draws: outcomes and the world's counts added up."""
        world = dict(parts[0].world)
        for key in ADDITIVE_WORLD:
            world[key] = sum(part.world[key] for part in parts)
        outcomes = [combine_outcomes([part.outcomes[index] for part in parts])
                    for index in range(len(parts[0].outcomes))]
        return SimulationReport(outcomes=outcomes, world=world, config=parts[0].config)


def _fmt(value: float | int, metric: str) -> str:
    if metric == "opens_per_push":
        return f"{value:.3f}"
    if metric in ("mutes_per_1k_pushes", "mutes_per_1k"):
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def _value(tally: Tally, metric: str) -> float | int:
    return getattr(tally, metric)


def render_tables(report: SimulationReport, console: Console | None = None) -> None:
    """Print the comparison as rich tables: totals, blocks by rule, and each segment."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    outcomes = report.outcomes
    world, config = report.world, report.config
    console.print(
        f"[bold]Simulated {world['cardholders']:,} cardholders x {config['days']} days[/bold] from "
        f"{config['start']} ({len(config['slots'])} send slots a day at "
        f"{', '.join(config['slots'])} {config['scheduler_timezone']}); seed {config['seed']}"
    )
    console.print(f"ranking: {world['ranking']}\nresponse: {world['response']}")

    table = Table(title="Per policy", show_lines=False)
    table.add_column("metric")
    for outcome in outcomes:
        table.add_column(outcome.label, justify="right")
    for metric, text in METRICS:
        table.add_row(text, *(_fmt(_value(outcome.total, metric), metric) for outcome in outcomes))
    console.print(table)

    rules = list(dict.fromkeys(rule for outcome in outcomes for rule in outcome.total.blocked_by_rule))
    table = Table(title="Requests blocked, by rule (each rule that alone blocked every candidate)")
    table.add_column("rule")
    for outcome in outcomes:
        table.add_column(outcome.label, justify="right")
    for rule in [*rules, "no_candidate"]:
        cells = []
        for outcome in outcomes:
            if rule == "no_candidate":
                cells.append(f"{outcome.total.no_candidate:,}")
            elif rule in outcome.total.blocked_by_rule:
                cells.append(f"{outcome.total.blocked_by_rule.get(rule, 0):,}")
            else:
                cells.append("-")
        table.add_row(rule, *cells)
    console.print(table)

    for segment in outcomes[0].segments:
        table = Table(title=f"By {segment.replace('_', ' ')}")
        table.add_column(segment)
        table.add_column("metric")
        for outcome in outcomes:
            table.add_column(outcome.label, justify="right")
        for label, first in outcomes[0].segments[segment].items():
            for metric, text in SEGMENT_METRICS:
                name = f"{label} ({first.cardholders:,})" if metric == SEGMENT_METRICS[0][0] else ""
                table.add_row(name, text, *(_fmt(_value(outcome.segments[segment][label], metric), metric)
                                            for outcome in outcomes))
            table.add_section()
        console.print(table)
