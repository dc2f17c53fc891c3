"""Scenario options: how a synthetic world is structured, to check models on worlds unlike the default.

A `Scenario` says what links hidden taste to what a bank observes (``taste_channel``), how many
cardholders read articles at all, how content is tagged, whether cardholders answer pushes better at
some hours, and how noisily behaviour reflects taste. `Scenario()` is the default world, generated
byte-identically to worlds made before scenarios existed; `SCENARIOS` names a few differently
structured presets (`recsys synth --scenario NAME`).

Taste channels:

- ``categories``: taste is a log-interest over 17 spend categories and 5 finance topics; spend
  categories are drawn from it and the MCC is uniform within its category (the default world).
- ``merchants``: taste lives on individual MCCs (each ``m<code>`` topic is half its category's taste
  plus a larger code-specific part); spend picks the MCC from that taste and items are about specific
  codes, so a coarse category map hides most of what matters.
- ``needs``: taste is mostly about needs (instalments, credit limit, points, cashback, travel perks):
  most items are primarily about them, menu clicks follow them strongly and spend reflects taste only
  weakly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from worlds import catalog

TASTE_CHANNELS = ("categories", "merchants", "needs")
TAG_VOCABULARIES = ("topics", "synonyms", "noisy")
MAX_NOISE = 5.0
MAX_HOUR_PREFERENCE = 4.0

# How strongly spend and menu use follow taste per channel: (spend taste weight, menu leaning, cap).
_CHANNEL_BEHAVIOUR = {"categories": (1.0, 0.6, 6.0), "merchants": (1.0, 0.6, 6.0), "needs": (0.25, 1.5, 30.0)}
NEEDS_ITEM_SHARE = 0.6  # share of marketing items primarily about a finance topic in a `needs` world
MERCHANT_CATEGORY_WEIGHT = 0.5  # a merchant topic's taste = this x its category's taste + own part
MERCHANT_OWN_SD = 1.0
SYNONYMS_PER_TOPIC = 3
# Preferred local hours: (mean, sd, share) of the morning, lunch and evening groups.
_PEAK_HOURS = ((8.0, 1.2, 0.3), (12.5, 1.0, 0.25), (20.0, 1.5, 0.45))


@dataclass(frozen=True)
class TopicSpace:
    """The world's taste topics: spend topics first (each mapped to a spend category), then finance topics."""

    names: tuple[str, ...]
    category: np.ndarray  # [n_spend_topics] index into catalog.SPEND_CATEGORIES
    mcc: tuple[str, ...]  # [n_spend_topics] the one MCC of a merchant topic, "" for a whole category

    @property
    def n_spend(self) -> int:
        return len(self.category)

    @property
    def fine(self) -> bool:
        """True when spend topics are single MCCs rather than whole categories."""
        return any(self.mcc)

    @cached_property
    def index(self) -> dict[str, int]:
        return {name: position for position, name in enumerate(self.names)}

    def merchant_topics_of(self, category: int) -> np.ndarray:
        return np.flatnonzero(self.category == category)


def category_space() -> TopicSpace:
    return TopicSpace(catalog.TOPICS, np.arange(catalog.N_SPEND), ("",) * catalog.N_SPEND)


def merchant_space() -> TopicSpace:
    codes = [(row, code) for row, cat in enumerate(catalog.SPEND_CATEGORIES) for code in cat.mccs]
    return TopicSpace(
        tuple(f"m{code}" for _, code in codes) + catalog.FINANCE_TOPICS,
        np.array([row for row, _ in codes]),
        tuple(code for _, code in codes),
    )


@dataclass(frozen=True)
class Scenario:
    """How the world is structured; see the module docstring. The defaults give the default world.

    - ``reader_share``: share of cardholders who read articles at all (None: about 60%, from engagement
      and age); readers are still the more engaged and younger ones.
    - ``tags``: ``topics`` (each item tagged with its topic names, a secondary topic sometimes left
      out), ``synonyms`` (each topic written as one of three opaque codes, never its name) or ``noisy``
      (topic tags often dropped and an unrelated topic often added).
    - ``hour_preference``: weight of each cardholder's preferred local hour in the open logit:
      ``+ hour_preference * cos(2 pi (send hour - peak hour) / 24)`` (0: hour does not matter).
    - ``noise``: standard deviation of per-cardholder, per-topic noise between the taste that answers
      pushes and the taste that spend, menu use and reads show (0: behaviour shows the true taste).
    """

    taste_channel: str = "categories"
    reader_share: float | None = None
    tags: str = "topics"
    hour_preference: float = 0.0
    noise: float = 0.0
    name: str = field(default="", compare=False)

    def problems(self) -> list[str]:
        found = []
        if self.taste_channel not in TASTE_CHANNELS:
            found.append(f"--taste must be one of {', '.join(TASTE_CHANNELS)}, got {self.taste_channel!r}")
        if self.reader_share is not None and not 0.0 <= self.reader_share <= 1.0:
            found.append(f"--reader-share must be between 0 and 1, got {self.reader_share}")
        if self.tags not in TAG_VOCABULARIES:
            found.append(f"--tags must be one of {', '.join(TAG_VOCABULARIES)}, got {self.tags!r}")
        if not 0.0 <= self.hour_preference <= MAX_HOUR_PREFERENCE:
            found.append(f"--hour-preference must be between 0 and {MAX_HOUR_PREFERENCE}, got "
                         f"{self.hour_preference}")
        if not 0.0 <= self.noise <= MAX_NOISE:
            found.append(f"--noise must be between 0 and {MAX_NOISE}, got {self.noise}")
        return found

    @property
    def is_default(self) -> bool:
        return self == Scenario()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @cached_property
    def space(self) -> TopicSpace:
        return merchant_space() if self.taste_channel == "merchants" else category_space()

    @property
    def spend_taste(self) -> float:
        """Weight of taste in the spend-topic logits."""
        return _CHANNEL_BEHAVIOUR[self.taste_channel][0]

    @property
    def menu_leaning(self) -> tuple[float, float]:
        """(exponent, cap) of a finance topic's taste in the rate of its menu key."""
        _, exponent, cap = _CHANNEL_BEHAVIOUR[self.taste_channel]
        return exponent, cap

    def primary_topic_weights(self) -> np.ndarray | None:
        """Probability of each coarse topic being an item's primary topic (None: balanced over topics)."""
        if self.taste_channel != "needs":
            return None
        finance = np.zeros(len(catalog.TOPICS), dtype=bool)
        finance[catalog.N_SPEND:] = True
        return np.where(finance, NEEDS_ITEM_SHARE / finance.sum(), (1 - NEEDS_ITEM_SHARE) / (~finance).sum())

    def with_overrides(self, **options: Any) -> Scenario:
        """This scenario with the given options replaced (None values are ignored)."""
        given = {key: value for key, value in options.items() if value is not None}
        if not given:
            return self
        return replace(self, **given, name=f"{self.name}+{','.join(sorted(given))}" if self.name else "")


SCENARIOS: dict[str, Scenario] = {
    "categories": Scenario(name="categories"),
    "merchants": Scenario(taste_channel="merchants", tags="synonyms", hour_preference=0.6, name="merchants"),
    "needs": Scenario(taste_channel="needs", reader_share=0.45, noise=0.5, hour_preference=0.6, name="needs"),
    "sparse-readers": Scenario(reader_share=0.2, tags="noisy", noise=0.8, hour_preference=1.0,
                               name="sparse-readers"),
}


def merchant_taste(rng: np.random.Generator, coarse: np.ndarray, space: TopicSpace) -> np.ndarray:
    """[n, n_topics] log-taste over merchant topics from the coarse [n, 22] category-and-finance taste."""
    n = len(coarse)
    own = rng.normal(0.0, MERCHANT_OWN_SD, (n, space.n_spend))
    spend = MERCHANT_CATEGORY_WEIGHT * coarse[:, space.category] + own
    return np.concatenate([spend, coarse[:, catalog.N_SPEND :]], axis=1)


def peak_hours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Each cardholder's preferred local hour (float, 0-24), from morning, lunch and evening groups."""
    means, sds, shares = (np.array(column) for column in zip(*_PEAK_HOURS, strict=True))
    group = np.searchsorted(np.cumsum(shares) / shares.sum(), rng.random(n), side="right")
    return np.mod(means[group] + sds[group] * rng.standard_normal(n), 24.0).astype(np.float32)


def reader_threshold(score: np.ndarray, share: float) -> np.ndarray:
    """The ``share`` of rows with the highest ``score`` (ties broken by position)."""
    n = len(score)
    count = int(round(share * n))
    reader = np.zeros(n, dtype=bool)
    if count:
        reader[np.argsort(-score, kind="stable")[:count]] = True
    return reader
