"""Cardholders grouped by how much their own data says, and the item appeal that is best for each group.

`benchmarks/appeal_grid.py --by-group` ranks every cardholder once per item appeal weight on one fit,
then asks whether letting each group of cardholders take its own appeal beats the best single appeal.
The groups use only what the data shows at the as-of time (never the truth): whether the cardholder
read an article, how many positives (reads and opened pushes) they have, how many card transactions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSITIVE_EDGES = (1, 3, 10)  # groups 0, 1-2, 3-9, 10+
SPEND_QUARTILES = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Grouping:
    """One way of splitting the cardholders: a group number per cardholder and each group's name."""

    scheme: str
    labels: np.ndarray  # int [n_users], 0 .. len(names) - 1
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or (labels.size and (labels.min() < 0 or labels.max() >= len(self.names))):
            raise ValueError(f"grouping {self.scheme!r}: labels must be a 1-d array of 0 .. "
                             f"{len(self.names) - 1}")


def bucketed(scheme: str, counts: np.ndarray, edges: tuple[int, ...]) -> Grouping:
    """Groups by `counts` cut at ascending positive whole `edges` (a count equal to an edge starts the
    next group): edges (1, 3) give the groups 0, 1-2 and 3+."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or not np.all(np.isfinite(counts)) or (counts < 0).any():
        raise ValueError(f"grouping {scheme!r}: counts must be finite, non-negative and one per cardholder")
    edges = tuple(sorted({int(edge) for edge in edges}))
    if edges and edges[0] < 1:
        raise ValueError(f"grouping {scheme!r}: edges must be whole numbers >= 1, got {edges}")
    names = [str(low) if high == low + 1 else f"{low}-{high - 1}"
             for low, high in zip((0, *edges), edges, strict=False)]
    names.append(f"{edges[-1] if edges else 0}+")
    return Grouping(scheme, np.searchsorted(np.asarray(edges), counts, side="right"), tuple(names))


def crossed(first: Grouping, second: Grouping) -> Grouping:
    """Every pair of a group of `first` and a group of `second`, empty pairs dropped."""
    pairs = first.labels * len(second.names) + second.labels
    present, labels = np.unique(pairs, return_inverse=True)
    names = tuple(f"{first.names[p // len(second.names)]} / {second.names[p % len(second.names)]}"
                  for p in present)
    return Grouping(f"{first.scheme} x {second.scheme}", labels, names)


def evidence_groupings(reads: np.ndarray, positives: np.ndarray, spend_events: np.ndarray) -> list[Grouping]:
    """The groupings measured: reads (none / some), positives in training (0, 1-2, 3-9, 10+), card
    transactions (quartiles of this world's cardholders), and reads crossed with each of the other two."""
    read = Grouping("reads", (np.asarray(reads) > 0).astype(np.int64), ("no reads", "reads"))
    positive = bucketed("positives", positives, POSITIVE_EDGES)
    spend_edges = tuple(int(np.ceil(edge)) for edge in np.quantile(spend_events, SPEND_QUARTILES) if edge > 0)
    spend = bucketed("spend events", spend_events, spend_edges)
    return [read, positive, spend, crossed(read, positive), crossed(read, spend)]


def best_per_group(values: np.ndarray, labels: np.ndarray, n_groups: int,
                   rows: np.ndarray | None = None) -> np.ndarray:
    """Per group, the cell (row of `values` [cells, users]) with the highest mean over the group's
    cardholders among `rows` (bool mask; default all); a group with none there takes the cell best over
    all of `rows`, ties the first cell."""
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels)
    rows = np.ones(values.shape[1], dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    if values.ndim != 2 or labels.shape != (values.shape[1],) or rows.shape != labels.shape:
        raise ValueError("values must be [cells, users] with one label and one row flag per user")
    overall = int(values[:, rows].mean(axis=1).argmax()) if rows.any() else 0
    sums = np.stack([np.bincount(labels[rows], weights=cell[rows], minlength=n_groups) for cell in values])
    sizes = np.bincount(labels[rows], minlength=n_groups)
    return np.where(sizes > 0, sums.argmax(axis=0), overall)


def cross_fitted(values: np.ndarray, labels: np.ndarray, n_groups: int, half: np.ndarray) -> np.ndarray:
    """Per cardholder, the cell its group chose on the other half of the cardholders (`half`: bool
    per user), so that the choice never sees the cardholder it is scored on."""
    half = np.asarray(half, dtype=bool)
    cell = np.empty(len(half), dtype=np.int64)
    for side in (True, False):
        chosen = best_per_group(values, labels, n_groups, half != side)
        cell[half == side] = chosen[np.asarray(labels)[half == side]]
    return cell


def composed(picks: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Each cardholder's ranked items from its own cell: `picks` [cells, users, k], `cell` [users]."""
    picks = np.asarray(picks)
    return picks[np.asarray(cell), np.arange(picks.shape[1])]
