"""PNG charts comparing the policies of a simulation report (matplotlib, Agg backend, no display)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.atomic import write_bytes
from recsys.simulation.report import SimulationReport

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")
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


def _bar_values(axis, labels: list[str], values: list[float], title: str, fmt: str) -> None:
    bars = axis.bar(range(len(values)), values, color=COLOURS[: len(values)] or COLOURS[0])
    axis.set_title(title, fontsize=10)
    axis.set_xticks(range(len(labels)), labels, fontsize=8)
    axis.bar_label(bars, labels=[format(value, fmt) for value in values], fontsize=8)
    axis.margins(y=0.15)
    axis.spines[["top", "right"]].set_visible(False)


def summary_chart(report: SimulationReport) -> Figure:
    figure, axes = _figure(2, 3, 11, 6)
    labels = _labels(report)
    for axis, (metric, title) in zip(axes.flat, SUMMARY, strict=True):
        values = [float(getattr(outcome.total, metric)) for outcome in report.outcomes]
        fmt = ".3f" if metric == "opens_per_push" else (".2f" if metric == "mutes_per_1k_pushes" else ",.0f")
        _bar_values(axis, labels, values, title, fmt)
    title = f"{report.world['cardholders']:,} cardholders x {report.config['days']} days"
    figure.suptitle(title, fontsize=11)
    return figure


def _grouped(axis, groups: list[str], series: list[list[float]], labels: list[str], title: str) -> None:
    width = 0.8 / max(len(series), 1)
    for index, (values, label) in enumerate(zip(series, labels, strict=True)):
        positions = [group + (index - (len(series) - 1) / 2) * width for group in range(len(groups))]
        axis.bar(positions, values, width=width, label=label, color=COLOURS[index % len(COLOURS)])
    axis.set_xticks(range(len(groups)), groups, fontsize=8, rotation=20 if len(groups) > 5 else 0)
    axis.set_title(title, fontsize=10)
    axis.spines[["top", "right"]].set_visible(False)


def blocked_chart(report: SimulationReport) -> Figure:
    figure, axes = _figure(1, 1, 11, 4)
    rules = list(dict.fromkeys(rule for outcome in report.outcomes for rule in outcome.total.blocked_by_rule))
    rules = [rule for rule in rules
             if any(outcome.total.blocked_by_rule.get(rule, 0) for outcome in report.outcomes)] or rules[:1]
    series = [[float(outcome.total.blocked_by_rule.get(rule, 0)) for rule in rules]
              for outcome in report.outcomes]
    _grouped(axes[0, 0], rules, series, _labels(report),
             "Requests blocked, by rule (each rule that alone blocked every candidate)")
    axes[0, 0].legend(fontsize=8)
    return figure


def segments_chart(report: SimulationReport) -> Figure:
    segments = list(report.outcomes[0].segments)
    figure, axes = _figure(len(segments), 3, 12, 3.3 * max(len(segments), 1))
    labels = _labels(report)
    for row, segment in enumerate(segments):
        groups = list(report.outcomes[0].segments[segment])
        for column, (metric, title) in enumerate(SEGMENT_METRICS):
            series = [[float(getattr(outcome.segments[segment][group], metric)) for group in groups]
                      for outcome in report.outcomes]
            _grouped(axes[row, column], groups, series, labels, f"{title} by {segment.replace('_', ' ')}")
    axes[0, 0].legend(fontsize=8)
    return figure


def daily_chart(report: SimulationReport) -> Figure:
    figure, axes = _figure(1, 3, 12, 3.5)
    for column, (key, title) in enumerate((("sent", "pushes sent"), ("expected_opens", "expected opens"),
                                           ("expected_mutes", "expected mutes"))):
        axis = axes[0, column]
        for index, outcome in enumerate(report.outcomes):
            total, cumulative = 0.0, []
            for value in outcome.daily[key]:
                total += value
                cumulative.append(total)
            axis.plot(range(1, len(cumulative) + 1), cumulative, label=outcome.label,
                      color=COLOURS[index % len(COLOURS)])
        axis.set_title(f"cumulative {title}", fontsize=10)
        axis.set_xlabel("day", fontsize=8)
        axis.spines[["top", "right"]].set_visible(False)
    axes[0, 0].legend(fontsize=8)
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
