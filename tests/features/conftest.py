"""Fixtures around the hand-made contract directory of `tests/features/handmade.py`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.loader import Dataset, load_dataset
from tests.features.handmade import AS_OF, make_hand_made_tables, write_contract_tables


@pytest.fixture
def hand_made_tables() -> dict[str, pd.DataFrame]:
    return make_hand_made_tables()


@pytest.fixture
def write_tables():
    """`write_tables(root, tables)`: the frames as contract CSV files under `root`."""
    return write_contract_tables


@pytest.fixture
def as_of() -> pd.Timestamp:
    return AS_OF


@pytest.fixture
def hand_made(tmp_path: Path) -> Dataset:
    return load_dataset(write_contract_tables(tmp_path / "data", make_hand_made_tables()))
