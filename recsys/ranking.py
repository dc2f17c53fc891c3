"""Batch top-k: score every (user, item) with one BLAS product per block of users, keep the k best
eligible items per user (numpy `partition`, ties to the lower item index).

Eligibility is applied before selection, never after: items not allowed at all (outside their validity
window, transactional, or barred for every tier group) are dropped from the item matrix before the
product; items outside a user's tier group and already-seen items are set to -inf in the block's scores.
So an ineligible item can never be returned; rows with fewer than k eligible items are padded with
index -1 / score -inf. Users stay in their order: blocks are contiguous slices of the factor matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# a block's score matrix stays within this many bytes: large enough for BLAS to run at full speed,
# small enough that selection reads it back from cache
BLOCK_BYTES = 4 * 1024 * 1024
MIN_BLOCK_USERS = 16
MAX_BLOCK_USERS = 8192


class RankingError(ValueError):
    """Inputs to top-k that disagree in shape or hold invalid values."""


@dataclass(frozen=True)
class Eligibility:
    """Which items each user may receive.

    - `item_allowed`: bool [n_items]; False = never (not valid at the as-of time, transactional).
    - `user_group` int [n_users] with `group_item_allowed` bool [n_groups, n_items]: tier
      restrictions; user u may receive item i only if `group_item_allowed[user_group[u], i]`.
      Give both or neither.
    - `seen`: csr [n_users, n_items]; a stored entry (any value) excludes that item for that user
      (already read or already pushed).
    Every part is optional; `Eligibility()` allows everything.
    """

    item_allowed: np.ndarray | None = None
    user_group: np.ndarray | None = None
    group_item_allowed: np.ndarray | None = None
    seen: sp.csr_matrix | None = None

    def check(self, n_users: int, n_items: int) -> None:
        """Raise `RankingError` unless every part fits `n_users` x `n_items`."""
        if self.item_allowed is not None:
            allowed = np.asarray(self.item_allowed)
            if allowed.dtype != bool or allowed.shape != (n_items,):
                raise RankingError(
                    f"item_allowed must be a bool array of shape ({n_items},), got {allowed.dtype} "
                    f"{allowed.shape}"
                )
        if (self.user_group is None) != (self.group_item_allowed is None):
            raise RankingError("user_group and group_item_allowed go together: give both or neither")
        if self.user_group is not None:
            groups = np.asarray(self.user_group)
            table = np.asarray(self.group_item_allowed)
            if groups.shape != (n_users,) or not np.issubdtype(groups.dtype, np.integer):
                raise RankingError(f"user_group must be an int array of shape ({n_users},), got "
                                   f"{groups.dtype} {groups.shape}")
            if table.ndim != 2 or table.shape[1] != n_items or table.dtype != bool:
                raise RankingError(f"group_item_allowed must be bool [n_groups, {n_items}], got "
                                   f"{table.dtype} {table.shape}")
            if groups.size and (groups.min() < 0 or groups.max() >= table.shape[0]):
                bad = groups[(groups < 0) | (groups >= table.shape[0])][0]
                raise RankingError(f"user_group holds {int(bad)}, outside [0, {table.shape[0]}): "
                                   "every user needs a row of group_item_allowed")
        if self.seen is not None:
            if not sp.issparse(self.seen) or self.seen.shape != (n_users, n_items):
                shape = getattr(self.seen, "shape", None)
                raise RankingError(f"seen must be a sparse matrix of shape {(n_users, n_items)}, got {shape}")

    def allows(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """bool per (user row, item column) pair: may that user be offered that item?"""
        rows, columns = np.asarray(rows, dtype=np.int64), np.asarray(columns, dtype=np.int64)
        allowed = np.ones(rows.shape, dtype=bool)
        if self.item_allowed is not None:
            allowed &= np.asarray(self.item_allowed)[columns]
        if self.user_group is not None:
            allowed &= np.asarray(self.group_item_allowed)[np.asarray(self.user_group)[rows], columns]
        if self.seen is not None:
            allowed &= ~np.asarray(sp.csr_matrix(self.seen)[rows, columns]).ravel().astype(bool)
        return allowed

    def subset(self, rows: np.ndarray) -> Eligibility:
        """The eligibility of the users at `rows` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        return Eligibility(
            item_allowed=self.item_allowed,
            user_group=None if self.user_group is None else np.asarray(self.user_group)[rows],
            group_item_allowed=self.group_item_allowed,
            seen=None if self.seen is None else sp.csr_matrix(self.seen)[rows],
        )


def top_k(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    k: int,
    eligibility: Eligibility | None = None,
    block_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k highest-scoring eligible items per user, best first.

    Scores are `user_factors @ item_factors.T` in float32. Returns `(indices int32 [n, k],
    scores float32 [n, k])`; where a user has fewer than k eligible items, the tail is index -1 and
    score -inf. `block_size` is the number of users scored per BLAS product (default: as many as keep
    a block's score matrix within `BLOCK_BYTES`). Ties keep the lower item index first.
    """
    users = _as_factors(user_factors, "user_factors")
    items = _as_factors(item_factors, "item_factors")
    _require_finite(items, "item_factors")
    _require_finite(users, "user_factors")
    if users.shape[1] != items.shape[1]:
        raise RankingError(
            f"user_factors have {users.shape[1]} columns, item_factors {items.shape[1]}: "
            "they must come from the same model"
        )
    if int(k) < 1:
        raise RankingError(f"k must be >= 1, got {k}")
    if block_size is not None and int(block_size) < 1:
        raise RankingError(f"block_size must be >= 1, got {block_size}")
    k = int(k)
    n_users, n_items = users.shape[0], items.shape[0]
    eligibility = eligibility or Eligibility()
    eligibility.check(n_users, n_items)

    out_index, out_score = _padding(n_users, k)
    allowed = np.ones(n_items, dtype=bool) if eligibility.item_allowed is None else np.asarray(
        eligibility.item_allowed, dtype=bool)
    if eligibility.user_group is not None:
        table = np.asarray(eligibility.group_item_allowed, dtype=bool)
        allowed = allowed & table.any(axis=0)
    columns = np.flatnonzero(allowed)
    if n_users == 0 or columns.size == 0:
        return out_index, out_score
    items_t = np.ascontiguousarray(items[columns].T)
    penalty = None
    if eligibility.user_group is not None:
        penalty = np.where(table[:, columns], np.float32(0), np.float32(-np.inf)).astype(np.float32)
        user_group = np.asarray(eligibility.user_group, dtype=np.int64)
    seen = None if eligibility.seen is None else sp.csr_matrix(eligibility.seen)
    column_of = np.full(n_items, -1, dtype=np.int64)
    column_of[columns] = np.arange(columns.size)
    step = int(block_size) if block_size is not None else int(
        np.clip(BLOCK_BYTES // (4 * columns.size), MIN_BLOCK_USERS, MAX_BLOCK_USERS))
    for start in range(0, n_users, step):
        stop = min(start + step, n_users)
        scores = users[start:stop] @ items_t
        if penalty is not None:
            scores += penalty[user_group[start:stop]]
        if seen is not None:
            _mask_seen(scores, seen, start, stop, column_of)
        _select(scores, columns, out_index[start:stop], out_score[start:stop])
    return out_index, out_score


def best_per_row(scores: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The `width` best columns of each score row and their scores, best first, ties to the lower
    column; index -1 and score -inf past a row's finite scores."""
    out_index, out_score = _padding(scores.shape[0], width)
    _select(scores, np.arange(scores.shape[1]), out_index, out_score)
    return out_index, out_score


def _mask_seen(scores: np.ndarray, seen: sp.csr_matrix, start: int, stop: int, column_of: np.ndarray) -> None:
    """Set the block's already-seen (user, item) scores to -inf."""
    first, last = seen.indptr[start], seen.indptr[stop]
    if first == last:
        return
    cols = column_of[seen.indices[first:last]]
    rows = np.repeat(np.arange(stop - start), np.diff(seen.indptr[start:stop + 1]))
    kept = cols >= 0
    scores[rows[kept], cols[kept]] = -np.inf


def _select(scores: np.ndarray, columns: np.ndarray, out_index: np.ndarray, out_score: np.ndarray) -> None:
    """The best `k` (out width) of each score row, ties to the lower column, into the outputs.

    Each row's k-th best score comes from `np.partition` (linear time, and on the scores alone about
    three times faster than `argpartition` with its index array); in a row where exactly k scores reach
    it, those k are the best, taken in column order. Rows where more reach it (ties at the k-th place,
    or fewer than k finite scores) are ordered by a full stable sort instead, so the answer never
    depends on the blocks.
    """
    n, m = scores.shape
    width = min(out_index.shape[1], m)
    kth = np.partition(scores, m - width, axis=1)[:, m - width]
    rows, reaching = np.divmod(np.flatnonzero(scores >= kth[:, None]), m)
    exact = np.bincount(rows, minlength=n) == width
    if exact.all():
        part = reaching.reshape(n, width)
    else:
        part = np.zeros((n, width), dtype=np.intp)
        part[exact] = reaching[exact[rows]].reshape(-1, width)
    best = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-best, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    best = np.take_along_axis(best, order, axis=1)
    # the other rows by a stable sort of the row, but for rows with nothing above -inf (nothing eligible,
    # such as an opted-out cardholder's): their scores taken above are not finite already, so padding
    others = np.flatnonzero(~exact)
    for row in others[(scores[others] > -np.inf).any(axis=1)]:
        part[row] = np.argsort(-scores[row], kind="stable")[:width]
        best[row] = scores[row, part[row]]
    found = np.isfinite(best)
    out_index[:, :width] = np.where(found, columns[part], -1)
    out_score[:, :width] = np.where(found, best, -np.inf)


def _padding(n_users: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Outputs with no item found yet: index -1, score -inf."""
    return np.full((n_users, k), -1, dtype=np.int32), np.full((n_users, k), -np.inf, dtype=np.float32)


def _as_factors(factors: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(factors)
    if array.ndim != 2:
        raise RankingError(f"{name} must be a 2-d array, got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _require_finite(factors: np.ndarray, name: str) -> None:
    """Refuse NaN or infinite factors: they would rank as anything."""
    if not np.isfinite(factors).all():
        raise _damaged(name)


def _damaged(name: str) -> RankingError:
    return RankingError(f"{name} hold NaN or infinite values: the model is damaged, retrain it")
