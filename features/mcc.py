"""MCC (ISO 18245) -> spend category, from the range table shipped in `features/data/mcc_categories.csv`."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

UNMAPPED = "other"
N_CODES = 10_000


class MccTableError(ValueError):
    """The MCC -> category table is malformed."""


@dataclass(frozen=True)
class MccTable:
    """Inclusive MCC ranges with a category each; a narrower range overrides a wider one it lies in."""

    rows: tuple[tuple[int, int, str], ...]

    @classmethod
    def shipped(cls) -> MccTable:
        text = resources.files("features").joinpath("data/mcc_categories.csv").read_text(encoding="utf-8")
        return cls.from_records(csv.DictReader(text.splitlines()))

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, str]]) -> MccTable:
        rows = []
        for line, record in enumerate(records, start=2):
            try:
                low, high = int(record["mcc_from"]), int(record["mcc_to"])
            except (KeyError, TypeError, ValueError) as error:
                raise MccTableError(
                    f"MCC table line {line}: mcc_from/mcc_to must be 4-digit codes"
                ) from error
            category = (record.get("category") or "").strip()
            if not (0 <= low <= high < N_CODES) or not category:
                raise MccTableError(
                    f"MCC table line {line}: need 0 <= mcc_from <= mcc_to <= 9999 and a category"
                )
            rows.append((low, high, category))
        if not rows:
            raise MccTableError("the MCC table is empty")
        return cls(tuple(rows))

    def to_json(self) -> list[list]:
        return [list(row) for row in self.rows]

    @classmethod
    def from_json(cls, rows: list[list]) -> MccTable:
        return cls(tuple((int(low), int(high), str(category)) for low, high, category in rows))

    @property
    def categories(self) -> tuple[str, ...]:
        """Category names, sorted, with `other` (codes no range covers) last."""
        return (*sorted({category for _, _, category in self.rows} - {UNMAPPED}), UNMAPPED)

    def lookup_array(self) -> np.ndarray:
        """int16 [10000]: category index per MCC; wider ranges are painted first so narrow ones win."""
        index = {name: i for i, name in enumerate(self.categories)}
        table = np.full(N_CODES, index[UNMAPPED], dtype=np.int16)
        for low, high, category in sorted(self.rows, key=lambda row: row[0] - row[1]):
            table[low : high + 1] = index[category]
        return table

    def categorise(self, mcc: pd.Series) -> np.ndarray:
        """Category index per MCC string (unparseable codes fall into `other`)."""
        # a few hundred distinct codes among millions of rows: parse each distinct code once
        positions, distinct = pd.factorize(pd.Series(mcc), use_na_sentinel=True)
        codes = pd.to_numeric(pd.Series(np.asarray(distinct, dtype=object)), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan)
        valid = np.isfinite(codes) & (codes >= 0) & (codes < N_CODES)
        other = len(self.categories) - 1
        per_code = np.full(len(codes) + 1, other, dtype=np.int16)
        per_code[:-1][valid] = self.lookup_array()[codes[valid].astype(np.int64)]
        return per_code[positions]  # sentinel -1 (missing) picks the trailing `other`
