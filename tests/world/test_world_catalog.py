"""The world's MCC table holds real ISO 18245 codes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from worlds import catalog

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "mcc-codes" / "mcc_codes_greggles.csv"


def test_every_mcc_is_four_digits_and_belongs_to_one_category():
    codes = [code for category in catalog.SPEND_CATEGORIES for code in category.mccs]
    assert all(len(code) == 4 and code.isdigit() for code in codes)
    assert len(codes) == len(set(codes))
    assert {"5812", "5411", "5541", "7011", "4722", "5311", "5732", "5817", "8220", "8011", "7832",
            "4900", "4814", "5651", "5944"} <= set(codes)
    airlines = next(c for c in catalog.SPEND_CATEGORIES if c.name == "airlines").mccs
    assert any(3000 <= int(code) <= 3299 for code in airlines)


def test_every_mcc_is_in_the_public_iso_18245_list():
    if not REFERENCE.is_file():
        pytest.skip(f"reference MCC list not found at {REFERENCE} (shared reference data is absent)")
    with REFERENCE.open(encoding="utf-8") as handle:
        known = {row["mcc"].zfill(4) for row in csv.DictReader(handle)}
    assert catalog.all_mccs() <= known, sorted(catalog.all_mccs() - known)


def test_topics_cover_spend_categories_and_finance_topics():
    assert catalog.TOPICS[: catalog.N_SPEND] == tuple(c.name for c in catalog.SPEND_CATEGORIES)
    assert set(catalog.FINANCE_TOPICS) <= set(catalog.TOPICS)
    for persona in catalog.PERSONAS:
        assert set(persona.leanings) <= set(catalog.TOPICS), persona.name


def test_the_feature_builder_knows_the_category_of_every_world_mcc():
    import pandas as pd

    from features.mcc import UNMAPPED, MccTable

    table = MccTable.shipped()
    codes = sorted(catalog.all_mccs())
    categories = [table.categories[i] for i in table.categorise(pd.Series(codes))]
    assert [code for code, name in zip(codes, categories, strict=True) if name == UNMAPPED] == []
