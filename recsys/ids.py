"""Mapping between external string ids (cardholders, contents) and contiguous integer indices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd


class IdIndexError(ValueError):
    """An id list that cannot form an index (duplicates, empty ids) or an unknown id in a strict lookup."""


class IdIndex:
    """Immutable bijection between string ids and indices `0..n-1`, in the order given.

    Lookups are vectorised: `index_of(ids)` returns an int64 array with `-1` for ids the index does not
    know (a cardholder who arrived after the model was fitted); `index_of_strict` raises instead.
    """

    __slots__ = ("_ids", "_lookup")

    def __init__(self, ids: Iterable[str]):
        values = np.asarray([str(value) for value in ids], dtype=object)
        lookup = pd.Index(values)
        if not lookup.is_unique:
            duplicated = pd.unique(values[lookup.duplicated()])[:5].tolist()
            raise IdIndexError(f"duplicate ids {duplicated}: each id must appear once; deduplicate the input")
        if len(values) and (values == "").any():
            position = int(np.flatnonzero(values == "")[0])
            raise IdIndexError(f"empty id at position {position}: ids must be non-empty strings")
        self._ids = values
        self._lookup = lookup

    @classmethod
    def from_values(cls, values: Iterable[str]) -> IdIndex:
        """Index of the distinct values, in order of first appearance (duplicates allowed in the input)."""
        return cls(pd.unique(pd.Series(list(values), dtype=object).astype(str)))

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, value: object) -> bool:
        return str(value) in self._lookup

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdIndex) and np.array_equal(self._ids, other._ids)

    def __hash__(self) -> int:
        return hash(tuple(self._ids.tolist()))

    def __repr__(self) -> str:
        return f"IdIndex(n={len(self)})"

    @property
    def ids(self) -> np.ndarray:
        """The ids as an object array, position = index (a copy: the index is immutable)."""
        return self._ids.copy()

    def index_of(self, ids: Sequence[str] | np.ndarray | pd.Series | str) -> np.ndarray:
        """int64 indices of `ids`; `-1` where an id is unknown."""
        values = [ids] if isinstance(ids, str) else list(map(str, ids))
        return self._lookup.get_indexer(pd.Index(values, dtype=object)).astype(np.int64)

    def index_of_strict(self, ids: Sequence[str] | np.ndarray | pd.Series, what: str = "id") -> np.ndarray:
        """Like `index_of`, but raise `IdIndexError` naming the first unknown ids."""
        indices = self.index_of(ids)
        if (indices < 0).any():
            values = np.asarray(list(map(str, [ids] if isinstance(ids, str) else ids)), dtype=object)
            unknown = values[indices < 0][:5].tolist()
            raise IdIndexError(
                f"{int((indices < 0).sum())} unknown {what}(s), first {unknown}: "
                "they were not present when the index was built; refit the id mapping"
            )
        return indices

    def id_of(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Ids at `indices` (object array); raise `IdIndexError` for an index out of range."""
        positions = np.asarray(indices, dtype=np.int64)
        bad = (positions < 0) | (positions >= len(self))
        if bad.any():
            raise IdIndexError(
                f"index {int(positions[bad][0])} out of range for an index of {len(self)} ids"
            )
        return self._ids[positions]

    def to_list(self) -> list[str]:
        """JSON-serialisable form; `IdIndex(index.to_list()) == index`."""
        return self._ids.tolist()
