"""Fixed vocabularies of the synthetic world: topics, spend categories with their ISO 18245 MCCs,
amount scales, card tiers, time zones and cardholder personas.

Everything here is static data; the generator draws from it with a seeded RNG. The MCC table is the
world's own small selection of real ISO 18245 codes per spend category (not an exhaustive list).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpendCategory:
    """A spend topic: the MCCs it is paid under, how often and how much, and how often online."""

    name: str
    mccs: tuple[str, ...]
    daily_share: float  # relative transaction frequency before personal taste
    amount_median: float  # CNY, classic card, before the cardholder's spend level
    amount_sigma: float  # lognormal spread
    online_share: float


SPEND_CATEGORIES: tuple[SpendCategory, ...] = (
    SpendCategory("dining", ("5812", "5813", "5814"), 6.0, 68.0, 0.7, 0.30),
    SpendCategory("groceries", ("5411", "5499", "5462"), 5.0, 95.0, 0.7, 0.25),
    SpendCategory("fuel", ("5541", "5542"), 1.2, 320.0, 0.4, 0.02),
    SpendCategory("airlines", ("4511", "3000", "3005", "3006", "3007", "3008", "3075", "3077", "3078",
                               "3099", "3161"), 0.15, 1800.0, 0.6, 0.85),
    SpendCategory("hotels", ("7011", "3501", "3504", "3509", "3512", "3513"), 0.2, 780.0, 0.6, 0.55),
    SpendCategory("travel_agency", ("4722",), 0.12, 2600.0, 0.8, 0.80),
    SpendCategory("transport", ("4111", "4112", "4121", "4131", "7523"), 3.0, 35.0, 0.8, 0.60),
    SpendCategory("department_store", ("5311", "5310", "5399", "5300"), 1.0, 280.0, 0.9, 0.20),
    SpendCategory("electronics", ("5732", "5734", "5722"), 0.3, 1500.0, 1.0, 0.55),
    SpendCategory("digital", ("5817", "5818", "5815", "5816"), 2.0, 30.0, 0.9, 1.00),
    SpendCategory("education", ("8220", "8299", "8211", "8241"), 0.1, 2200.0, 0.9, 0.50),
    SpendCategory("healthcare", ("8011", "8062", "5912", "8021", "8099"), 0.4, 260.0, 1.0, 0.15),
    SpendCategory("entertainment", ("7832", "7922", "7996", "7997", "7941", "7999"), 0.8, 150.0, 0.8, 0.55),
    SpendCategory("utilities", ("4900",), 0.25, 210.0, 0.5, 0.90),
    SpendCategory("telecom", ("4814", "4812", "4899"), 0.3, 120.0, 0.6, 0.90),
    SpendCategory("fashion", ("5651", "5691", "5661", "5621", "5611"), 0.8, 420.0, 0.8, 0.50),
    SpendCategory("luxury", ("5944", "5948", "5977"), 0.08, 5200.0, 1.0, 0.30),
)

FINANCE_TOPICS: tuple[str, ...] = ("installment", "points", "credit_limit", "travel_perks", "cashback")

SPEND_TOPICS: tuple[str, ...] = tuple(category.name for category in SPEND_CATEGORIES)
TOPICS: tuple[str, ...] = SPEND_TOPICS + FINANCE_TOPICS
TOPIC_INDEX: dict[str, int] = {name: index for index, name in enumerate(TOPICS)}
N_SPEND = len(SPEND_TOPICS)

# Tags that describe a content item's form but carry no taste signal.
CONTEXT_TAGS: tuple[str, ...] = ("weekend", "limited_time", "new_customer", "family", "guide")

CARD_TIERS: tuple[str, ...] = ("classic", "gold", "platinum", "diamond")
TIER_SHARE = np.array([0.55, 0.30, 0.12, 0.03])
TIER_LIMIT_MEDIAN = np.array([12_000.0, 30_000.0, 80_000.0, 200_000.0])  # CNY
TIER_AMOUNT_FACTOR = np.array([1.0, 1.35, 2.0, 3.2])
TIER_POINTS_RATE = np.array([1.0, 1.2, 1.5, 2.0])  # points per CNY

CITY_TIER_SHARE = np.array([0.25, 0.30, 0.22, 0.15, 0.08])

# Standard UTC offsets in hours; local times are converted with these (none of the mainland or
# nearby zones observes daylight saving; the few abroad zones are approximated by standard time).
TIMEZONES: tuple[tuple[str | None, float, float], ...] = (
    ("Asia/Shanghai", 8.0, 0.800),
    (None, 8.0, 0.080),  # empty: the configured default zone
    ("Asia/Hong_Kong", 8.0, 0.040),
    ("Asia/Urumqi", 6.0, 0.025),
    ("Asia/Macau", 8.0, 0.010),
    ("Asia/Taipei", 8.0, 0.010),
    ("Asia/Singapore", 8.0, 0.008),
    ("Asia/Tokyo", 9.0, 0.007),
    ("Europe/London", 0.0, 0.006),
    ("America/Los_Angeles", -8.0, 0.006),
    ("Australia/Sydney", 10.0, 0.004),
    ("America/New_York", -5.0, 0.004),
)
ABROAD_FROM = 6  # zones at and after this index are outside Greater China


@dataclass(frozen=True)
class Persona:
    """A cardholder archetype: the topics it leans to and who tends to belong to it."""

    name: str
    leanings: dict[str, float]
    weight: float
    age_center: float
    min_tier: int = 0


PERSONAS: tuple[Persona, ...] = (
    Persona("urban_foodie", {"dining": 1.6, "entertainment": 1.0, "digital": 0.6, "fashion": 0.6,
                             "cashback": 1.0, "transport": 0.5}, 1.4, 27),
    Persona("business_traveller", {"airlines": 2.0, "hotels": 1.8, "travel_agency": 1.0, "travel_perks": 1.6,
                                   "points": 1.0, "dining": 0.4}, 0.8, 38, 1),
    Persona("family_household", {"groceries": 1.5, "education": 1.6, "healthcare": 1.0, "utilities": 1.0,
                                 "department_store": 1.0, "installment": 0.6}, 1.0, 40),
    Persona("tech_gamer", {"electronics": 1.8, "digital": 1.6, "entertainment": 0.8, "installment": 1.2,
                           "telecom": 0.6}, 1.0, 25),
    Persona("luxury_shopper", {"luxury": 2.2, "fashion": 1.4, "department_store": 0.8, "travel_perks": 1.0,
                               "hotels": 0.8, "points": 0.8}, 0.5, 36, 2),
    Persona("campus_starter", {"digital": 1.2, "dining": 0.8, "telecom": 1.0, "education": 1.0,
                               "cashback": 1.4, "credit_limit": 1.2}, 0.9, 23),
    Persona("commuter_driver", {"fuel": 2.0, "transport": 0.8, "groceries": 0.6, "utilities": 0.6,
                                "points": 1.2, "cashback": 0.6}, 0.8, 34),
    Persona("credit_stretcher", {"installment": 2.0, "credit_limit": 2.0, "electronics": 0.8,
                                 "fashion": 0.6, "cashback": 0.8}, 0.7, 29),
    Persona("weekend_explorer", {"travel_agency": 1.6, "entertainment": 1.2, "hotels": 0.8,
                                 "transport": 0.8, "travel_perks": 0.8, "dining": 0.4}, 0.8, 31),
)



def persona_centers() -> np.ndarray:
    """[n_personas, n_topics] mean log-taste of each persona."""
    centers = np.zeros((len(PERSONAS), len(TOPICS)))
    for row, persona in enumerate(PERSONAS):
        for topic, lean in persona.leanings.items():
            centers[row, TOPIC_INDEX[topic]] = lean
    return centers


def mcc_table() -> tuple[np.ndarray, np.ndarray]:
    """Padded [n_categories, max_codes] MCC strings and the number of codes per category."""
    width = max(len(category.mccs) for category in SPEND_CATEGORIES)
    table = np.full((len(SPEND_CATEGORIES), width), "", dtype="<U4")
    counts = np.zeros(len(SPEND_CATEGORIES), dtype=np.int64)
    for row, category in enumerate(SPEND_CATEGORIES):
        table[row, : len(category.mccs)] = category.mccs
        counts[row] = len(category.mccs)
    return table, counts


def all_mccs() -> frozenset[str]:
    return frozenset(code for category in SPEND_CATEGORIES for code in category.mccs)
