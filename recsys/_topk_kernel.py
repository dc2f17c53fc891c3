"""Compiled scoring and top-k selection behind `recsys.ranking.top_k` (numba, GIL released).

Worker threads claim tiles of at most 256 users in turn (plain Python threads: the compiled function
releases the GIL, and unlike an OpenMP team, idle threads do not spin on a busy machine, and concurrent
callers such as API request threads are safe). Per tile, one single-threaded BLAS product (numpy's)
scores the tile into a buffer that stays in cache, then the compiled selection runs over it, per user:
1. items outside the user's tier group and seen items are set to -inf;
2. the row's maximum per lane is taken, lane j holding columns j, j + L, j + 2L, ... for L = 16 (up
   to 64 for larger k): an element-wise max over contiguous 16-wide slices, which compiles to vector
   instructions;
3. the k-th largest lane maximum (`bound`, found by counting, without branches) is a lower bound of the
   row's k-th largest score, since k disjoint lanes each hold a score that reaches it;
4. one branch-free pass lists the columns whose score reaches `bound` (about 1.5 k of them), and each
   is placed at its rank among them (how many keys beat it, ties to the lower column), which again
   needs no unpredictable branch; only a list longer than 32 (large k, many ties) goes through a
   sorted k-buffer.
On a 200-item catalogue selection then costs about 1.3 times the product itself; the sorted k-buffer
fed by strided group maxima it replaces cost about 3 times.
The caller must limit BLAS to one thread around the call: the parallelism is across tiles here, and
BLAS threads spinning beside these workers would only contend for the same cores.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

LANES = 16
# candidate lists up to this long are ranked by counting; longer ones go through a sorted k-buffer
RANKED = 32
LOWEST_KEY = np.iinfo(np.int64).min
# lane maxima beyond 64 cost more (counting is quadratic in lanes) than the k-buffer they would spare
MAX_BLOCKS = 4

_POOL: ThreadPoolExecutor | None = None


def lane_blocks(k: int) -> int:
    """16-lane blocks of column maxima for top-`k`: about 1.6 k lanes keep the candidate list short."""
    return int(min(MAX_BLOCKS, max(1, -(-(8 * k) // (5 * LANES)))))


def default_threads() -> int:
    """Worker threads for top-k: RECSYS_TOPK_THREADS, else the machine's cores."""
    configured = os.environ.get("RECSYS_TOPK_THREADS")
    return max(1, int(configured)) if configured else max(1, os.cpu_count() or 1)


def score_and_select(users: np.ndarray, items_t: np.ndarray, seen_indptr: np.ndarray,
                     seen_indices: np.ndarray, column_of: np.ndarray, item_ids: np.ndarray,
                     user_group: np.ndarray, group_penalty: np.ndarray, grouped: bool,
                     out_index: np.ndarray, out_score: np.ndarray, tile: int, threads: int) -> None:
    """Score every user against `items_t` [d, m] and write their k best into the output rows.

    Column c of `items_t` is item `item_ids[c]`; `column_of` maps an item back to its column (-1:
    not scored). When `grouped`, `group_penalty[user_group[u]]` is added to user u's scores: 0 where
    the user's tier group may receive the column, -inf where not.
    """
    n_users = users.shape[0]
    blocks = lane_blocks(out_index.shape[1])
    workers = max(1, min(threads, n_users // (2 * tile)))
    # workers claim tiles one at a time (next() on a count is atomic under the GIL), so a worker slowed
    # by other processes on a shared machine takes fewer tiles instead of holding up the others
    claims = itertools.count()
    arguments = (claims, users, items_t, seen_indptr, seen_indices, column_of, item_ids, user_group,
                 group_penalty, grouped, out_index, out_score, blocks, tile)
    if workers == 1:
        _score_tiles(*arguments)
        return
    global _POOL
    if _POOL is None or _POOL._max_workers < workers:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="topk")
    futures = [_POOL.submit(_score_tiles, *arguments) for _ in range(workers)]
    for future in futures:
        future.result()


def _score_tiles(claims, users, items_t, seen_indptr, seen_indices, column_of, item_ids, user_group,
                 group_penalty, grouped, out_index, out_score, blocks, tile):
    n_users = users.shape[0]
    scores = np.empty((tile, items_t.shape[1]), dtype=np.float32)
    while (first := next(claims) * tile) < n_users:
        last = min(first + tile, n_users)
        out = scores[:last - first]
        np.matmul(users[first:last], items_t, out=out)
        _select(out, first, seen_indptr, seen_indices, column_of, item_ids, user_group, group_penalty,
                grouped, out_index, out_score, blocks)


@njit(cache=True, nogil=True)
def _select(scores, first, seen_indptr, seen_indices, column_of, item_ids, user_group, group_penalty,
            grouped, out_index, out_score, blocks):  # pragma: no cover - compiled
    """Row r of `scores` holds user `first + r`'s scores (modified in place: ineligible items become
    -inf: seen ones, and with `grouped` those outside the user's group).

    `column_of` maps an item index to its column of `scores` (-1: not in this item set);
    `item_ids` maps a column back to the item index; `blocks` is the number of 16-lane blocks of
    column maxima. -inf is never returned, so users with fewer than k eligible items keep the
    caller's -1 / -inf padding. Ties keep the lower column first.
    """
    n, m = scores.shape
    k = out_index.shape[1]
    lanes = LANES * blocks
    maxima = np.empty(lanes, dtype=np.float32)
    candidates = np.empty(m, dtype=np.int64)
    values = np.empty(m, dtype=np.float32)
    value_bits = values.view(np.int32)
    top_values = np.empty(k, dtype=np.float32)
    top_columns = np.empty(k, dtype=np.int64)
    keys = np.empty(RANKED, dtype=np.int64)
    full = m - m % lanes
    for r in range(n):
        user = first + r
        row = scores[r]
        if grouped:
            penalty = group_penalty[user_group[user]]
            for c in range(m):
                row[c] += penalty[c]
        for p in range(seen_indptr[user], seen_indptr[user + 1]):
            column = column_of[seen_indices[p]]
            if column >= 0:
                row[column] = -np.inf
        for j in range(lanes):
            maxima[j] = -np.inf
        for base in range(0, full, lanes):
            for h in range(0, lanes, LANES):
                # a constant trip count, so this compiles to vector max instructions
                for j in range(LANES):
                    value = row[base + h + j]
                    maxima[h + j] = value if value > maxima[h + j] else maxima[h + j]
        for c in range(full, m):
            value = row[c]
            maxima[c - full] = value if value > maxima[c - full] else maxima[c - full]
        bound = np.float32(-np.inf)
        if k <= lanes:
            bound = np.float32(np.inf)
            for j in range(lanes):
                value = maxima[j]
                above = 0
                for i in range(lanes):
                    above += maxima[i] > value
                if above < k and value < bound:
                    bound = value
        floor = np.nextafter(bound, np.float32(-np.inf))
        count = 0
        for c in range(m):
            candidates[count] = c
            count += row[c] > floor
        for p in range(count):
            values[p] = row[candidates[p]] + np.float32(0.0)  # -0.0 becomes 0.0, as it compares
        if count <= RANKED:
            # a unique integer key per candidate that orders as (score, then lower column first), so
            # a candidate's rank is how many keys beat it: a constant-length, vectorised count
            for p in range(count):
                bits = np.int64(value_bits[p])
                keys[p] = ((bits if bits >= 0 else bits ^ 0x7FFFFFFF) << 32) | (0xFFFFFFFF - candidates[p])
            for p in range(count, RANKED):
                keys[p] = LOWEST_KEY
            for p in range(count):
                rank = 0
                for q in range(RANKED):
                    rank += keys[q] > keys[p]
                if rank < k:
                    out_index[user, rank] = item_ids[candidates[p]]
                    out_score[user, rank] = values[p]
            continue
        found = 0
        for p in range(count):
            value = values[p]
            if found == k and not value > top_values[k - 1]:
                continue
            i = found if found < k else k - 1
            while i > 0 and top_values[i - 1] < value:
                top_values[i] = top_values[i - 1]
                top_columns[i] = top_columns[i - 1]
                i -= 1
            top_values[i] = value
            top_columns[i] = candidates[p]
            found = min(found + 1, k)
        for i in range(found):
            out_index[user, i] = item_ids[top_columns[i]]
            out_score[user, i] = top_values[i]
