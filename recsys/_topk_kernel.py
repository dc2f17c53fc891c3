"""Compiled scoring and top-k selection behind `recsys.ranking.top_k` (numba, GIL released).

The users are split into one contiguous slice per worker thread (plain Python threads: the compiled
function releases the GIL, and unlike an OpenMP team, idle threads do not spin on a busy machine, and
concurrent callers such as API request threads are safe). Each worker takes tiles of a few dozen users:
one single-threaded BLAS product (numpy's) scores the tile into a buffer that stays in cache, then the
compiled selection runs over it, per user:
1. seen items are set to -inf;
2. the row is cut into `n_groups` strided groups (column j, j + n_groups, j + 2 n_groups, ...) and each
   group's maximum is taken: an element-wise max over contiguous slices, which vectorises;
3. the k-th largest group maximum (`bound`) is a lower bound of the row's k-th largest score, so only
   groups whose maximum reaches it can hold a top-k item, and only their scores >= bound (about k of
   them) go through the sorted k-buffer.
Group size ~ sqrt(m / k) balances the two scans of step 3 (m / g group maxima, k * g candidates).
The caller must limit BLAS to one thread around the call: the parallelism is across tiles here, and
BLAS threads spinning beside these workers would only contend for the same cores.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

_POOL: ThreadPoolExecutor | None = None


def group_size(n_columns: int, k: int) -> int:
    """Columns per group for the selection step."""
    return max(1, int(round(math.sqrt(n_columns / max(k, 1)))))


def default_threads() -> int:
    """Worker threads for top-k: RECSYS_TOPK_THREADS, else the machine's cores."""
    configured = os.environ.get("RECSYS_TOPK_THREADS")
    return max(1, int(configured)) if configured else max(1, os.cpu_count() or 1)


def score_and_select(users, items_t, rows, seen_indptr, seen_indices, column_of, item_ids,
                     out_index, out_score, tile, threads):
    """Score users `rows` against `items_t` [d, m] and write their k best into the output rows."""
    group = group_size(items_t.shape[1], out_index.shape[1])
    workers = max(1, min(threads, rows.size // (2 * tile)))
    arguments = (users, items_t, seen_indptr, seen_indices, column_of, item_ids, out_index, out_score,
                 group, tile)
    if workers == 1:
        _score_slice(rows, *arguments)
        return
    global _POOL
    if _POOL is None or _POOL._max_workers < workers:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="topk")
    futures = [_POOL.submit(_score_slice, part, *arguments) for part in np.array_split(rows, workers)]
    for future in futures:
        future.result()


def _score_slice(rows, users, items_t, seen_indptr, seen_indices, column_of, item_ids, out_index,
                 out_score, group, tile):
    scores = np.empty((tile, items_t.shape[1]), dtype=np.float32)
    contiguous = rows.size > 0 and rows[-1] - rows[0] == rows.size - 1
    for start in range(0, rows.size, tile):
        part = rows[start:start + tile]
        block = users[part[0]:part[-1] + 1] if contiguous else users[part]
        out = scores[:part.size]
        np.matmul(block, items_t, out=out)
        _select(out, part, seen_indptr, seen_indices, column_of, item_ids, out_index, out_score, group)


@njit(cache=True, nogil=True)
def _select(scores, rows, seen_indptr, seen_indices, column_of, item_ids, out_index, out_score,
            group):  # pragma: no cover - compiled
    """Row r of `scores` holds user `rows[r]`'s scores (modified in place: seen items become -inf).

    `column_of` maps an item index to its column of `scores` (-1: not in this item set);
    `item_ids` maps a column back to the item index. -inf never enters the k-buffer, so users with
    fewer than k eligible items keep the caller's -1 / -inf padding. Ties keep the lower column first.
    """
    n, m = scores.shape
    k = out_index.shape[1]
    n_groups = (m + group - 1) // group
    maxima = np.empty(n_groups, dtype=np.float32)
    kth = np.empty(k, dtype=np.float32)
    values = np.empty(k, dtype=np.float32)
    columns = np.empty(k, dtype=np.int64)
    for r in range(n):
        user = rows[r]
        row = scores[r]
        for p in range(seen_indptr[user], seen_indptr[user + 1]):
            column = column_of[seen_indices[p]]
            if column >= 0:
                row[column] = -np.inf
        for j in range(n_groups):
            maxima[j] = -np.inf
        for t in range(group):
            base = t * n_groups
            for j in range(min(n_groups, m - base)):
                value = row[base + j]
                maxima[j] = value if value > maxima[j] else maxima[j]
        # branch-free first bound: the least of k strided super-group maxima (k distinct
        # group maxima reach it), so only group maxima >= it enter the sorted buffer below
        for i in range(k):
            kth[i] = -np.inf
        for base in range(0, n_groups, k):
            for i in range(min(k, n_groups - base)):
                value = maxima[base + i]
                kth[i] = value if value > kth[i] else kth[i]
        first_bound = kth[0]
        for i in range(1, k):
            first_bound = kth[i] if kth[i] < first_bound else first_bound
        for i in range(k):
            kth[i] = -np.inf
        bound = kth[k - 1]
        for j in range(n_groups):
            value = maxima[j]
            if value >= first_bound and value > bound:
                i = k - 1
                while i > 0 and kth[i - 1] < value:
                    kth[i] = kth[i - 1]
                    i -= 1
                kth[i] = value
                bound = kth[k - 1]
        for i in range(k):
            values[i] = -np.inf
            columns[i] = -1
        threshold = values[k - 1]
        for j in range(n_groups):
            if maxima[j] < bound or maxima[j] == -np.inf:
                continue
            for t in range(group):
                c = t * n_groups + j
                if c >= m:
                    break
                value = row[c]
                if value < bound:
                    continue
                if value > threshold or (value == threshold and value > -np.inf
                                         and c < columns[k - 1]):
                    i = k - 1
                    while i > 0 and (values[i - 1] < value
                                     or (values[i - 1] == value and columns[i - 1] > c)):
                        values[i] = values[i - 1]
                        columns[i] = columns[i - 1]
                        i -= 1
                    values[i] = value
                    columns[i] = c
                    threshold = values[k - 1]
        for i in range(k):
            if columns[i] >= 0:
                out_index[user, i] = item_ids[columns[i]]
                out_score[user, i] = values[i]
