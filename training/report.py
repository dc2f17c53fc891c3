"""The evaluation report: PNG plots (metric comparison, per-epoch curve, score distribution) and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A figure outside pyplot: no global backend switch, no figure registry to close."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    return figure, figure.subplots()


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def metric_bars(results: dict[str, dict[str, float]], names: list[str], path: Path) -> None:
    """Grouped bars: one group per metric, one bar per model."""
    models = list(results)
    width = 0.8 / max(len(models), 1)
    figure, axis = _figure(max(6, 1.6 * len(names)), 4)
    positions = np.arange(len(names))
    for i, model in enumerate(models):
        values = [results[model].get(name, np.nan) for name in names]
        axis.bar(positions + i * width, values, width, label=model)
    axis.set_xticks(positions + width * (len(models) - 1) / 2, names, rotation=20)
    axis.set_ylabel("value on the holdout")
    axis.set_title("Model vs baselines (time-split holdout)")
    axis.legend(fontsize=8)
    _save(figure, path)


def epoch_curve(curves: dict[str, list[float]], metric: str, path: Path) -> None:
    """The holdout metric (and epoch seconds on a second axis) per training epoch."""
    figure, axis = _figure(6, 4)
    values = curves.get(metric, [])
    axis.plot(range(1, len(values) + 1), values, marker="o", label=metric)
    axis.set_xlabel("epoch")
    axis.set_ylabel(metric)
    seconds = curves.get("epoch_seconds", [])
    if seconds:
        other = axis.twinx()
        other.plot(range(1, len(seconds) + 1), seconds, color="grey", linestyle="--", label="seconds")
        other.set_ylabel("seconds per epoch")
    axis.set_title("Holdout metric per epoch")
    _save(figure, path)


def score_distribution(scores: dict[str, np.ndarray], path: Path) -> None:
    """Histogram of the model's top-1 and all eligible scores on a sample of cardholders."""
    figure, axis = _figure(6, 4)
    for label, values in scores.items():
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            axis.hist(values, bins=50, alpha=0.5, density=True, label=label)
    axis.set_xlabel("score")
    axis.set_ylabel("density")
    axis.set_title("Score distribution")
    axis.legend(fontsize=8)
    _save(figure, path)


def write_report(directory: Path, summary: dict[str, Any], results: dict[str, dict[str, float]],
                 curves: dict[str, list[float]], scores: dict[str, np.ndarray], k: int, metric: str) -> Path:
    """Write report.json and the PNG plots into `directory`; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}", "auc", f"coverage@{k}",
             f"cold.ndcg@{k}"]
    metric_bars(results, names, directory / "metrics.png")
    epoch_curve(curves, metric, directory / "epochs.png")
    score_distribution(scores, directory / "scores.png")
    (directory / "report.json").write_text(json.dumps(
        {"summary": summary, "results": results, "curves": curves}, indent=2, sort_keys=True, default=str))
    return directory
