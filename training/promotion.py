"""Registered versions side by side, and moving `champion` by hand with an audit of who, when and why."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from training.outputs import check_output_path
from training.tracking import CHAMPION, ModelVersionInfo, Registry, TrackingError

AUDIT_FILE = Path("registry") / "champion-audit.jsonl"
TAG_PREFIX = "champion."
# the model's own holdout figures; baselines (popularity.*), timings and epoch curves stay in the run
HEADLINE_PREFIXES = ("", "cold", "lift", "open_rate_top1")


class PromotionError(ValueError):
    """A promotion that is refused: no reason given, or the version is already the champion."""


@dataclass(frozen=True)
class Promotion:
    """One move of the `champion` alias, as written to the audit file and the version's tags."""

    model: str
    version: str
    previous: str | None
    by: str
    at: str
    reason: str
    metrics: dict[str, float]
    previous_metrics: dict[str, float]

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


def audit_path(home: Path) -> Path:
    """The JSON-lines audit of champion moves made with `recsys models promote`, under RECSYS_HOME."""
    return Path(home) / AUDIT_FILE


def display_name(metric_key: str) -> str:
    """An MLflow metric name as the README writes it: `ndcg_at_10` -> `ndcg@10`."""
    return metric_key.replace("_at_", "@")


def headline_metrics(info: ModelVersionInfo) -> dict[str, float]:
    """The version's own holdout metrics (no baselines, timings or curves), by display name, sorted."""
    chosen = {display_name(key): value for key, value in info.metrics.items()
              if (key.split(".")[0] if "." in key else "") in HEADLINE_PREFIXES and key != "users"}
    return dict(sorted(chosen.items()))


def gate_metric(info: ModelVersionInfo) -> str | None:
    """The metric the run's champion gate used (its `evaluation.metric` parameter), if logged."""
    return info.params.get("evaluation.metric")


@dataclass(frozen=True)
class Comparison:
    name: str
    first: ModelVersionInfo
    second: ModelVersionInfo
    rows: list[tuple[str, float | None, float | None]]


def compare(registry: Registry, name: str, first: str, second: str) -> Comparison:
    """Two versions' headline metrics side by side (a metric only one of them logged shows None)."""
    a, b = registry.version(name, first), registry.version(name, second)
    ma, mb = headline_metrics(a), headline_metrics(b)
    rows = [(metric, ma.get(metric), mb.get(metric)) for metric in sorted(set(ma) | set(mb))]
    return Comparison(name, a, b, rows)


def promote(registry: Registry, name: str, version: str, reason: str, by: str, at: datetime,
            audit_file: Path) -> Promotion:
    """Point `champion` at `version`, tag the version and append the record to `audit_file`.

    The alias moves only after every check passed, and moves back if the tags or the audit line
    cannot be written, so no champion move goes unrecorded.
    """
    if not reason.strip():
        raise PromotionError("--reason is required: say why this version should be the champion")
    if not by.strip():
        raise PromotionError("--by is empty: name who promotes the version")
    if at.tzinfo is None:
        raise PromotionError("the promotion time must carry a time zone")
    check_output_path(audit_file, "audit file")
    target = registry.version(name, version)
    previous = registry.aliases(name).get(CHAMPION)
    if previous == target.version:
        raise PromotionError(f"{name!r} version {target.version} is already the {CHAMPION}: "
                             "nothing to promote")
    previous_metrics = headline_metrics(registry.version(name, previous)) if previous else {}
    record = Promotion(model=name, version=target.version, previous=previous, by=by.strip(),
                       at=at.astimezone(UTC).isoformat(), reason=reason.strip(),
                       metrics=headline_metrics(target), previous_metrics=previous_metrics)
    registry.set_alias(name, CHAMPION, target.version)
    try:
        registry.tag_version(name, target.version, {
            f"{TAG_PREFIX}promoted_at": record.at, f"{TAG_PREFIX}promoted_by": record.by,
            f"{TAG_PREFIX}reason": record.reason, f"{TAG_PREFIX}previous": previous or "none",
            f"{TAG_PREFIX}metrics": json.dumps(record.metrics, sort_keys=True),
        })
        _append_line(audit_file, record.to_json())
    except (OSError, TrackingError):
        if previous:
            registry.set_alias(name, CHAMPION, previous)
        else:
            registry.delete_alias(name, CHAMPION)
        raise
    return record


def _append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as sink:
        sink.write(line + "\n")
        sink.flush()
        os.fsync(sink.fileno())


def audit_records(audit_file: Path, name: str | None = None, version: str | None = None) -> list[dict]:
    """The promotions recorded in `audit_file`, oldest first, optionally of one model and version."""
    if not audit_file.is_file():
        return []
    records = []
    for number, line in enumerate(audit_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise TrackingError(f"{audit_file} line {number} is not JSON ({error.msg}): "
                                "fix or remove that line") from error
        if name not in (None, record.get("model")) or version not in (None, record.get("version")):
            continue
        records.append(record)
    return records
