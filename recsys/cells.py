"""Lists inside contract table cells: `dining|weekend` (tags, card tiers); one reading for every package."""

from __future__ import annotations

import pandas as pd

SEPARATOR = "|"


def split_list(values: pd.Series) -> pd.Series:
    """`a|b` cells -> lists of stripped, non-empty strings (empty or missing cell -> [])."""
    return values.astype("string").fillna("").map(
        lambda text: [part.strip() for part in str(text).split(SEPARATOR) if part.strip()]
    )
