"""Learned cardholder segments: soft k-means memberships over behaviour profiles.

A profile is a cardholder's purchase-count shares per raw MCC beside their menu-click shares per key,
each column weighted by its inverse document frequency over the fitted population (a code nearly
everyone uses says little about a lifestyle) and the row scaled to unit length. Clustering those
profiles finds behaviour types that show as a mix of codes and menu needs, a nonlinear summary the
linear feature embeddings and the wide ridge only approximate. A cardholder's memberships are a
softmax over negative squared distances to the centres, the `TOP` largest kept and renormalised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import MiniBatchKMeans

TOP = 3


@dataclass(frozen=True)
class LearnedSegments:
    """Fitted segment centres over idf-weighted, unit-length profiles."""

    idf: np.ndarray
    centres: np.ndarray
    temperature: float

    @classmethod
    def fit(cls, profiles: sp.csr_matrix, count: int, temperature: float, seed: int) -> LearnedSegments:
        """Centres of `count` segments over the rows of `profiles` (float [n, d], one row per
        cardholder of the fitted population; rows of zeros, cardholders with no behaviour, are left
        out). Deterministic for a `seed`."""
        profiles = sp.csr_matrix(profiles, dtype=np.float64)
        active = profiles[np.flatnonzero(profiles.getnnz(axis=1) > 0)]
        document_frequency = np.bincount(active.indices, minlength=profiles.shape[1])
        idf = np.log((1.0 + active.shape[0]) / (1.0 + document_frequency)) + 1.0
        if active.shape[0] < count:
            return cls(idf, np.zeros((0, profiles.shape[1])), temperature)
        points = unit_rows(active @ sp.diags(idf))
        kmeans = MiniBatchKMeans(n_clusters=count, random_state=seed, n_init=3, batch_size=4096)
        centres = kmeans.fit(points).cluster_centers_
        return cls(idf, centres, temperature)

    @classmethod
    def none(cls) -> LearnedSegments:
        """No segments (none learned): no membership columns."""
        return cls(np.zeros(0), np.zeros((0, 0)), 1.0)

    @property
    def count(self) -> int:
        return self.centres.shape[0]

    def memberships(self, profiles: sp.csr_matrix) -> sp.csr_matrix:
        """float32 csr [n, count]: each cardholder's soft membership of the `TOP` nearest segments
        (summing to 1); an empty row for a cardholder with no behaviour."""
        n = profiles.shape[0]
        if not self.count:
            return sp.csr_matrix((n, 0), dtype=np.float32)
        points = unit_rows(sp.csr_matrix(profiles, dtype=np.float64) @ sp.diags(self.idf))
        active = np.flatnonzero(points.getnnz(axis=1) > 0)
        squared = (1.0 - 2.0 * np.asarray(points[active] @ self.centres.T)
                   + (self.centres ** 2).sum(axis=1)[None, :])
        logits = -squared / self.temperature
        top = min(TOP, self.count)
        nearest = np.argpartition(-logits, top - 1, axis=1)[:, :top]
        kept = np.take_along_axis(logits, nearest, axis=1)
        weights = np.exp(kept - kept.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        return sp.csr_matrix((weights.ravel(), (np.repeat(active, top), nearest.ravel())),
                             shape=(n, self.count), dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"idf": self.idf.tolist(), "centres": self.centres.tolist(), "temperature": self.temperature}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LearnedSegments:
        idf = np.asarray(data["idf"], dtype=np.float64)
        centres = np.asarray(data["centres"], dtype=np.float64).reshape(len(data["centres"]), len(idf))
        return cls(idf, centres, float(data["temperature"]))


def unit_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit Euclidean length (rows of zeros stay zero)."""
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ matrix)
