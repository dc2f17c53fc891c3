"""Batch top-k: score every (user, item) with one BLAS product per block of users, keep the k best
eligible items per user.

Eligibility is applied before selection, never after: items not allowed at all (outside their validity
window, transactional, or barred for every tier group) are dropped from the item matrix before the
product; items outside a user's tier group and already-seen items are set to -inf inside the selection
kernel. So an ineligible item can never be returned; rows with fewer than k eligible items are padded
with index -1 / score -inf. Tier groups are masked rather than scored as separate item sets, so users
stay in their order: blocks are contiguous slices of the factor matrix (no gather, no scattered writes).

Scoring and selection run in compiled (numba) code over small blocks of users, claimed one by one by
worker threads: each worker scores its block with a single-threaded BLAS product into a buffer that
stays in cache and selects from it at once (see `recsys._topk_kernel`), instead of materialising large
score matrices and making the several passes `argpartition` plus sorting would.

BLAS threads: while a large request runs, BLAS in this process is limited to one thread (the
libraries only have a process-wide setting; the workers are the parallelism, and BLAS threads beside
them would contend for the same cores). Concurrent calls share one limit, restored when the last one
finishes. Requests of at most `SMALL_REQUEST_SCORES` pairs (one API request's cardholders) take a
plain numpy path that never touches the setting, so a serving process keeps its own configuration.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)

# a block's score matrix stays within this many bytes, so it is still in cache when selected from
DEFAULT_BLOCK_BYTES = 1024 * 1024
# larger blocks were measured no faster (1,024 users took as long as 512 at 200 items)
MAX_BLOCK_USERS = 512
# requests scoring at most this many (user, item) pairs take the plain numpy path
SMALL_REQUEST_SCORES = 50_000

_BLAS_CONTROLLER = None  # threadpoolctl controller, built on first use (it inspects loaded libraries)
_BLAS_CONTROLLER_MODULES = 0
_BLAS_LIMITER = None
_BLAS_USERS = 0
_BLAS_LOCK = threading.Lock()


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
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k highest-scoring eligible items per user, best first.

    Scores are `user_factors @ item_factors.T` in float32. Returns `(indices int32 [n, k],
    scores float32 [n, k])`; where a user has fewer than k eligible items, the tail is index -1 and
    score -inf. `block_size` is the number of users scored per BLAS product (default: as many as keep
    a block's score matrix within 1 MB, between 16 and 512). Ties keep the lower item index first.
    Blocks are spread over `threads` worker threads (default: `RECSYS_TOPK_THREADS`, else all cores).
    """
    users = _as_factors(user_factors, "user_factors")
    items = _as_factors(item_factors, "item_factors")
    _require_finite(items, "item_factors")
    if users.shape[1] != items.shape[1]:
        raise RankingError(
            f"user_factors have {users.shape[1]} columns, item_factors {items.shape[1]}: "
            "they must come from the same model"
        )
    if int(k) < 1:
        raise RankingError(f"k must be >= 1, got {k}")
    if threads is not None and int(threads) < 1:
        raise RankingError(f"threads must be >= 1, got {threads}")
    if block_size is not None and int(block_size) < 1:
        raise RankingError(f"block_size must be >= 1, got {block_size}")
    k = int(k)
    n_users, n_items = users.shape[0], items.shape[0]
    eligibility = eligibility or Eligibility()
    eligibility.check(n_users, n_items)

    if n_users == 0:
        return _padding(0, k)
    allowed = np.ones(n_items, dtype=bool) if eligibility.item_allowed is None else np.asarray(
        eligibility.item_allowed, dtype=bool)

    if n_users * int(allowed.sum()) <= SMALL_REQUEST_SCORES:
        _require_finite(users, "user_factors")
        out_index, out_score = _padding(n_users, k)
        for rows, columns in _groups(n_users, allowed, eligibility):
            if columns.size:
                _select_small(users, items, rows, columns, eligibility.seen, out_index, out_score)
        return out_index, out_score

    from recsys._topk_kernel import default_threads, score_and_select

    if eligibility.seen is not None:
        seen = sp.csr_matrix(eligibility.seen)
        # scipy's int32 or int64 index arrays as they are: the kernel is compiled for either
        seen_indptr, seen_indices = seen.indptr, seen.indices
    else:
        seen_indptr = np.zeros(n_users + 1, dtype=np.int32)
        seen_indices = np.zeros(0, dtype=np.int32)
    if eligibility.user_group is not None:
        table = np.asarray(eligibility.group_item_allowed, dtype=bool)
        allowed = allowed & table.any(axis=0)
    columns = np.flatnonzero(allowed)
    if columns.size == 0:
        _require_finite(users, "user_factors")
        return _padding(n_users, k)
    if eligibility.user_group is not None:
        user_group = np.asarray(eligibility.user_group, dtype=np.int64)
        group_penalty = np.ascontiguousarray(
            np.where(table[:, columns], np.float32(0), np.float32(-np.inf)), dtype=np.float32)
    else:
        user_group = np.zeros(n_users, dtype=np.int64)
        group_penalty = np.zeros((1, columns.size), dtype=np.float32)
    column_of = np.full(n_items, -1, dtype=np.int64)
    column_of[columns] = np.arange(columns.size)
    tile = int(block_size) if block_size is not None else int(
        np.clip(DEFAULT_BLOCK_BYTES // (4 * columns.size), 16, MAX_BLOCK_USERS))
    threads = int(threads) if threads is not None else default_threads()
    # the kernel writes every entry, padding included, from the worker threads
    out_index, out_score = _outputs(n_users, k)
    with _single_threaded_blas():
        finite = score_and_select(users, np.ascontiguousarray(items[columns].T), seen_indptr, seen_indices,
                                  column_of, columns.astype(np.int32), user_group, group_penalty, out_index,
                                  out_score, tile, threads)
    if not finite:
        raise _damaged("user_factors")
    return out_index, out_score


def _outputs(n_users: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Uninitialised index and score arrays, carved from one allocation: at 100k users x k=10 each
    alone falls just short of the size numpy backs with huge pages, and faulting in 2,000 small pages
    costs as much as a tenth of the selection."""
    shared = np.empty(2 * n_users * k, dtype=np.int32)
    return (shared[:n_users * k].reshape(n_users, k),
            shared[n_users * k:].view(np.float32).reshape(n_users, k))


def _padding(n_users: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Outputs with no item found yet: index -1, score -inf."""
    return np.full((n_users, k), -1, dtype=np.int32), np.full((n_users, k), -np.inf, dtype=np.float32)


def _select_small(users: np.ndarray, items: np.ndarray, rows: np.ndarray, columns: np.ndarray,
                  seen: sp.spmatrix | None, out_index: np.ndarray, out_score: np.ndarray) -> None:
    """Plain numpy path for requests too small to repay starting the parallel kernel."""
    k = out_index.shape[1]
    scores = users[rows] @ items[columns].T
    if seen is not None:
        blocked = sp.csr_matrix(seen)[rows][:, columns].tocoo()
        scores[blocked.row, blocked.col] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    found = np.isfinite(best)
    width = order.shape[1]
    out_index[rows, :width] = np.where(found, columns[order], -1)
    out_score[rows, :width] = np.where(found, best, -np.inf)


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread while any top-k call in the process is running.

    The limit is process-wide (BLAS libraries have no per-thread setting), so concurrent calls share
    one: the first applies it and the last restores the original thread counts. Nesting
    `threadpool_limits` per call instead would let an early finisher restore the count under a call
    still running, and a late one "restore" the limit of 1 for good.
    """
    global _BLAS_LIMITER, _BLAS_USERS
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            _BLAS_LIMITER = _blas_controller().limit(limits=1, user_api="blas")
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                _BLAS_LIMITER.restore_original_limits()
                _BLAS_LIMITER = None


def _blas_controller():
    """A threadpoolctl controller that knows every BLAS loaded so far.

    A controller only sees the libraries loaded when it was built (building one takes milliseconds),
    so it is rebuilt whenever modules were imported since: a new BLAS (scipy.linalg's, implicit's)
    comes with an import.
    """
    global _BLAS_CONTROLLER, _BLAS_CONTROLLER_MODULES
    if _BLAS_CONTROLLER is None or _BLAS_CONTROLLER_MODULES != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER = ThreadpoolController()
        _BLAS_CONTROLLER_MODULES = len(sys.modules)
    return _BLAS_CONTROLLER


def _groups(n_users: int, allowed: np.ndarray, eligibility: Eligibility):
    """(user rows, allowed item columns) per tier group; one group when there are no tiers."""
    if eligibility.user_group is None:
        yield np.arange(n_users, dtype=np.int64), np.flatnonzero(allowed)
        return
    groups = np.asarray(eligibility.user_group, dtype=np.int64)
    table = np.asarray(eligibility.group_item_allowed, dtype=bool)
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    for rows in np.split(order, bounds):
        if rows.size:
            yield rows, np.flatnonzero(allowed & table[groups[rows[0]]])


def _as_factors(factors: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(factors)
    if array.ndim != 2:
        raise RankingError(f"{name} must be a 2-d array, got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _require_finite(factors: np.ndarray, name: str) -> None:
    """Refuse NaN or infinite factors (the compiled path checks the user factors in its workers)."""
    if not np.isfinite(factors).all():
        raise _damaged(name)


def _damaged(name: str) -> RankingError:
    return RankingError(f"{name} hold NaN or infinite values: the model is damaged, retrain it")
