"""Which items a cardholder may be offered: one definition for batch ranking, evaluation, the API and
the studio's simulation.

An item may go to a cardholder when it is inside its validity window, is not a transactional notice,
is open to the cardholder's card tier (no tier list, or one naming it), has not been read or pushed
to them already, and they have not opted out of marketing pushes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd


def valid_between(valid_from: np.ndarray, valid_to: np.ndarray, start: float | np.ndarray,
                  end: float | np.ndarray | None = None) -> np.ndarray:
    """bool [n_items]: valid at some moment of [`start`, `end`] (at `start` alone when `end` is None).

    Bounds are numbers in any one unit (epoch seconds, microseconds); NaN is an open bound. Array
    arguments broadcast (e.g. items against a grid of moments)."""
    end = start if end is None else end
    with np.errstate(invalid="ignore"):
        return ~(np.asarray(valid_from) > end) & ~(np.asarray(valid_to) < start)


def tier_table(item_tiers: Sequence[Collection[str]], tiers: Sequence[str | None]) -> np.ndarray:
    """bool [len(tiers), n_items]: row g holds the items a cardholder of `tiers[g]` may get (items
    without a tier list, and items naming the tier); a None tier gets only the unrestricted items."""
    unrestricted = np.fromiter((not allowed for allowed in item_tiers), dtype=bool, count=len(item_tiers))
    rows = [unrestricted | np.fromiter((tier in allowed for allowed in item_tiers), dtype=bool,
                                       count=len(item_tiers)) if tier is not None else unrestricted
            for tier in tiers]
    return np.vstack(rows) if rows else np.zeros((0, len(item_tiers)), dtype=bool)


def cardholder_items(offerable: np.ndarray, tier_rows: np.ndarray, opt_in: np.ndarray,
                     seen_starts: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """bool [n, n_items]: what each of n cardholders may get now. `offerable` [n_items]: valid and not
    transactional; `tier_rows` [n, n_items]: each one's row of `tier_table`; `opt_in` [n]; the indices
    of the items each has read or been pushed, cardholder i's at `seen[seen_starts[i]:seen_starts[i + 1]]`."""
    allowed = tier_rows & offerable
    allowed[~np.asarray(opt_in, dtype=bool)] = False
    if len(seen):
        # one scatter for every cardholder's seen items (a batch has thousands of rows)
        rows = np.repeat(np.arange(len(seen_starts) - 1), np.diff(seen_starts))
        allowed[rows, seen] = False
    return allowed


def epoch_micros(values: pd.Series) -> np.ndarray:
    """float64 microseconds since the epoch (exact for any date this engine sees); NaN where missing."""
    stamps = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
    out = stamps.to_numpy(dtype="datetime64[us]").astype(np.int64).astype(np.float64)
    out[stamps.isna().to_numpy()] = np.nan
    return out
