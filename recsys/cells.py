"""Contract table cells read one way for every package: `dining|weekend` lists (tags, card tiers) and
the label a missing category takes."""

from __future__ import annotations

import pandas as pd

SEPARATOR = "|"
UNKNOWN = "unknown"  # the label of a missing or unseen category: card tier, age band, city tier


def split_list(values: pd.Series) -> pd.Series:
    """`a|b` cells -> lists of stripped, non-empty strings (empty or missing cell -> [])."""
    return values.astype("string").fillna("").map(
        lambda text: [part.strip() for part in str(text).split(SEPARATOR) if part.strip()]
    )
