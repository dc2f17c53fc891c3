"""Vectorised categorical draws with a different distribution per row."""

from __future__ import annotations

import numpy as np


def row_cdf(weights: np.ndarray) -> np.ndarray:
    """Cumulative distribution per row of non-negative ``weights`` (rows of zeros stay zero)."""
    cum = np.cumsum(weights, axis=1, dtype=np.float64)
    total = cum[:, -1:]
    return np.divide(cum, total, out=np.zeros_like(cum), where=total > 0)


def draw_from_rows(rng: np.random.Generator, cdf: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One column per entry of ``rows``, drawn from that row of ``cdf`` (see `row_cdf`).

    Searches the flattened CDFs shifted by their row number, so no [len(rows), n_columns] matrix is
    built. Draws from an all-zero row return -1.
    """
    n_rows, n_cols = cdf.shape
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    shifted = (cdf + np.arange(n_rows)[:, None]).ravel()
    target = rows + rng.random(len(rows)) * (1.0 - 1e-12)
    flat = np.searchsorted(shifted, target, side="right")
    column = np.minimum(flat - rows * n_cols, n_cols - 1)
    return np.where(cdf[rows, -1] > 0, column, -1).astype(np.int64)
