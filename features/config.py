"""Feature and interaction settings: windows, decay, weights. Plain data, serialised with the builder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np


class FeatureConfigError(ValueError):
    """A feature setting is missing, unknown or out of range."""


@dataclass(frozen=True)
class FeatureConfig:
    """How cardholder/item features and interaction weights are computed (all durations in days)."""

    spend_windows_days: tuple[int, ...] = (30, 90)
    menu_window_days: int = 90
    menu_recent_days: int = 7
    menu_count_cap: int = 20
    topic_window_days: int = 180
    read_count_cap: int = 50
    credit_limit_bins: int = 5
    level_quantile: float = 0.95
    half_life_days: float = 30.0
    interaction_window_days: int | None = None
    dwell_reference_seconds: float = 60.0
    min_dwell_weight: float = 0.2
    missing_dwell_weight: float = 0.5
    read_weight: float = 1.0
    open_weight: float = 1.0
    negative_weight: float = 1.0
    negative_grace_days: float = 2.0
    segment_by: tuple[str, ...] = ("card_tier", "age_band")
    mcc_min_users: int = 20
    title_min_items: int = 3
    profile_weight: float = 1.0
    spend_category_weight: float = 1.0
    spend_mcc_weight: float = 6.0
    spend_visits_weight: float = 6.0
    menu_weight: float = 1.0
    menu_share_weight: float = 3.0
    read_topic_weight: float = 1.0
    open_topic_weight: float = 1.0
    item_tag_weight: float = 1.0
    item_title_weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.spend_windows_days or any(int(w) <= 0 for w in self.spend_windows_days):
            raise FeatureConfigError("spend_windows_days must be a non-empty list of positive day counts")
        positive = (
            "menu_window_days", "menu_recent_days", "menu_count_cap", "topic_window_days",
            "read_count_cap", "credit_limit_bins", "half_life_days", "dwell_reference_seconds",
            "mcc_min_users", "title_min_items",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise FeatureConfigError(f"features.{name} must be > 0, got {getattr(self, name)!r}")
        for name in FAMILY_WEIGHTS:
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise FeatureConfigError(f"features.{name} must be a finite number >= 0, got {value!r}")
        if not 0.5 <= self.level_quantile <= 1.0:
            raise FeatureConfigError("features.level_quantile must be in [0.5, 1]")
        if self.interaction_window_days is not None and self.interaction_window_days <= 0:
            raise FeatureConfigError("features.interaction_window_days must be > 0 or null (all history)")
        unknown = set(self.segment_by) - SEGMENT_FIELDS
        if unknown:
            raise FeatureConfigError(
                f"features.segment_by has unknown field(s) {sorted(unknown)}; "
                f"choose from {sorted(SEGMENT_FIELDS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spend_windows_days"] = list(self.spend_windows_days)
        data["segment_by"] = list(self.segment_by)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FeatureConfig:
        data = dict(data or {})
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FeatureConfigError(f"unknown feature setting(s) {unknown}; known: {sorted(known)}")
        for name in ("spend_windows_days", "segment_by"):
            if name in data:
                if not isinstance(data[name], list | tuple):
                    raise FeatureConfigError(f"features.{name} must be a list, got {data[name]!r}")
                data[name] = tuple(data[name])
        for name, value in data.items():
            if name in ("spend_windows_days", "segment_by") or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FeatureConfigError(f"features.{name} must be a number, got {value!r}")
        return cls(**data)


FAMILY_WEIGHTS = (
    "profile_weight", "spend_category_weight", "spend_mcc_weight", "spend_visits_weight", "menu_weight",
    "menu_share_weight",
    "read_topic_weight",
    "open_topic_weight", "item_tag_weight", "item_title_weight",
)
"""Multipliers of each feature family's columns; 0 leaves the family out of the model input."""

SEGMENT_FIELDS = frozenset({"card_tier", "age_band", "city_tier", "gender", "tenure_band"})
