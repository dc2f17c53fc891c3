"""PNG charts comparing the policies of a simulation report (matplotlib, Agg backend, no display).

Sized to be shown one per row at about their natural size (1,200 px wide): text is at least 11 pt
at 100 dpi, so it stays readable on a 1,400 px page.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.atomic import write_bytes
from simulation.report import SimulationReport

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")
WIDTH = 12.0  # inches at 100 dpi: 1,200 px
TITLE, LABEL, SMALL = 14, 12, 11  # points
SUMMARY = (
    ("sent", "Pushes sent"),
    ("reached", "Cardholders reached"),
    ("expected_opens", "Expected opens"),
    ("opens_per_push", "Expected opens per push"),
    ("expected_mutes", "Expected mutes / unfollows"),
    ("mutes_per_1k_pushes", "Expected mutes per 1,000 pushes"),
)
SEGMENT_METRICS = (
    ("sent", "pushes sent"),
    ("opens_per_push", "opens per push"),
    ("mutes_per_1k_pushes", "mutes per 1,000 pushes"),
)


def _figure(rows: int, cols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, axes


def _labels(report: SimulationReport) -> list[str]:
    return [outcome.label for outcome in report.outcomes]


def _style(axis) -> None:
    axis.tick_params(labelsize=SMALL)
    axis.spines[["top", "right"]].set_visible(False)


def _bar_values(axis, labels: list[str], values: list[float], title: str, fmt: str) -> None:
    bars = axis.bar(range(len(values)), values, color=COLOURS[: len(values)] or COLOURS[0])
    axis.set_title(title, fontsize=LABEL + 1)
    axis.set_xticks(range(len(labels)), labels, fontsize=LABEL)
    axis.bar_label(bars, labels=[format(value, fmt) for value in values], fontsize=LABEL)
    axis.margins(y=0.15)
    _style(axis)


def summary_chart(report: SimulationReport) -> Figure:
    figure, axes = _figure(2, 3, WIDTH, 7)
    labels = _labels(report)
    for axis, (metric, title) in zip(axes.flat, SUMMARY, strict=True):
        values = [float(getattr(outcome.total, metric)) for outcome in report.outcomes]
        fmt = ".3f" if metric == "opens_per_push" else (".2f" if metric == "mutes_per_1k_pushes" else ",.0f")
        _bar_values(axis, labels, values, title, fmt)
    title = f"{report.world['cardholders']:,} cardholders x {report.config['days']} days"
    figure.suptitle(title, fontsize=TITLE)
    return figure


def _grouped(axis, groups: list[str], series: list[list[float]], labels: list[str], title: str) -> None:
    width = 0.8 / max(len(series), 1)
    for index, (values, label) in enumerate(zip(series, labels, strict=True)):
        positions = [group + (index - (len(series) - 1) / 2) * width for group in range(len(groups))]
        axis.bar(positions, values, width=width, label=label, color=COLOURS[index % len(COLOURS)])
    axis.set_xticks(range(len(groups)), groups, fontsize=SMALL, rotation=20 if len(groups) > 5 else 0)
    axis.set_title(title, fontsize=LABEL)
    _style(axis)


def blocked_chart(report: SimulationReport) -> Figure:
    """Horizontal bars, so the rules' plain names fit on one line each."""
    from recsys.caps.policy import parse_policy
    from recsys.caps.words import rule_words_for

    rules = list(dict.fromkeys(rule for outcome in report.outcomes for rule in outcome.total.blocked_by_rule))
    rules = [rule for rule in rules
             if any(outcome.total.blocked_by_rule.get(rule, 0) for outcome in report.outcomes)] or rules[:1]
    policies = [parse_policy(outcome.policy, outcome.label) for outcome in report.outcomes]
    words = rule_words_for(rules, policies)
    figure, axes = _figure(1, 1, WIDTH, 1.5 + 0.45 * len(report.outcomes) * max(len(rules), 1))
    axis = axes[0, 0]
    height = 0.8 / max(len(report.outcomes), 1)
    for index, outcome in enumerate(report.outcomes):
        values = [float(outcome.total.blocked_by_rule.get(rule, 0)) for rule in rules]
        positions = [row + index * height for row in range(len(rules))]
        bars = axis.barh(positions, values, height=height, label=outcome.label,
                         color=COLOURS[index % len(COLOURS)])
        axis.bar_label(bars, labels=[f"{value:,.0f}" for value in values], fontsize=SMALL, padding=3)
    axis.set_yticks([row + (len(report.outcomes) - 1) * height / 2 for row in range(len(rules))],
                    [words[rule] for rule in rules], fontsize=LABEL)
    axis.invert_yaxis()
    axis.margins(x=0.12)
    axis.set_xlabel("requests blocked (a request: one cardholder at one send slot)", fontsize=LABEL)
    axis.set_title("Why requests were blocked: each rule that alone blocked every candidate", fontsize=TITLE)
    _style(axis)
    axis.legend(fontsize=LABEL, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside, never over a bar
    return figure


def segments_chart(report: SimulationReport) -> Figure:
    segments = list(report.outcomes[0].segments)
    figure, axes = _figure(len(segments), 3, WIDTH, 3.8 * max(len(segments), 1))
    labels = _labels(report)
    for row, segment in enumerate(segments):
        groups = list(report.outcomes[0].segments[segment])
        for column, (metric, title) in enumerate(SEGMENT_METRICS):
            series = [[float(getattr(outcome.segments[segment][group], metric)) for group in groups]
                      for outcome in report.outcomes]
            _grouped(axes[row, column], groups, series, labels, f"{title} by {segment.replace('_', ' ')}")
    axes[0, 0].legend(fontsize=SMALL)
    return figure


def daily_chart(report: SimulationReport) -> Figure:
    figure, axes = _figure(1, 3, WIDTH, 4.2)
    for column, (key, title) in enumerate((("sent", "Pushes sent"), ("expected_opens", "Expected opens"),
                                           ("expected_mutes", "Expected mutes / unfollows"))):
        axis = axes[0, column]
        for index, outcome in enumerate(report.outcomes):
            total, cumulative = 0.0, []
            for value in outcome.daily[key]:
                total += value
                cumulative.append(total)
            axis.plot(range(1, len(cumulative) + 1), cumulative, label=outcome.label,
                      color=COLOURS[index % len(COLOURS)])
        axis.set_title(f"{title}, running total", fontsize=LABEL)
        axis.set_xlabel("day of the simulation", fontsize=SMALL)
        _style(axis)
    axes[0, 0].legend(fontsize=SMALL)
    return figure


CHARTS = {"summary": summary_chart, "blocked_by_rule": blocked_chart, "segments": segments_chart,
          "daily": daily_chart}


def chart_pngs(report: SimulationReport) -> dict[str, bytes]:
    """Every chart as PNG bytes, by name."""
    pngs = {}
    for name, build in CHARTS.items():
        buffer = io.BytesIO()
        build(report).savefig(buffer, format="png")
        pngs[name] = buffer.getvalue()
    return pngs


def write_charts(report: SimulationReport, out_dir: str | Path) -> list[Path]:
    """Write `<name>.png` for every chart into `out_dir` (each via a temporary file, then renamed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in chart_pngs(report).items():
        paths.append(write_bytes(out / f"{name}.png", data))
    return paths
