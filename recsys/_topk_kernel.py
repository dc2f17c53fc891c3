"""Compiled scoring and top-k selection behind `recsys.ranking.top_k` (numba, parallel over tiles).

Each worker thread takes tiles of a few dozen users: one single-threaded BLAS product scores the tile
into a buffer that stays in cache, then, per user:
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

import numpy as np
from numba import get_num_threads, njit, prange


def group_size(n_columns: int, k: int) -> int:
    """Columns per group for the selection step."""
    return max(1, int(round(math.sqrt(n_columns / max(k, 1)))))


def score_and_select(users, items_t, rows, seen_indptr, seen_indices, column_of, item_ids,
                     out_index, out_score, tile):
    """Score users `rows` against `items_t` [d, m] and write their k best into the output rows."""
    n_tiles = (rows.size + tile - 1) // tile
    n_chunks = max(1, min(n_tiles, 8 * get_num_threads()))
    _score_and_select(users, items_t, rows, seen_indptr, seen_indices, column_of, item_ids,
                      out_index, out_score, group_size(items_t.shape[1], out_index.shape[1]), tile,
                      n_chunks)


@njit(parallel=True, cache=True, nogil=True)
def _score_and_select(users, items_t, rows, seen_indptr, seen_indices, column_of, item_ids,
                      out_index, out_score, group, tile, n_chunks):  # pragma: no cover - compiled
    """`column_of` maps an item index to its column of `items_t` (-1: not in this item set);
    `item_ids` maps a column back to the item index. -inf never enters the k-buffer, so users with
    fewer than k eligible items keep the caller's -1 / -inf padding. Ties keep the lower column first.
    """
    n = rows.shape[0]
    d = users.shape[1]
    m = items_t.shape[1]
    k = out_index.shape[1]
    n_groups = (m + group - 1) // group
    n_tiles = (n + tile - 1) // tile
    per_chunk = (n_tiles + n_chunks - 1) // n_chunks
    for chunk in prange(n_chunks):
        tile_users = np.empty((tile, d), dtype=np.float32)
        scores = np.empty((tile, m), dtype=np.float32)
        maxima = np.empty(n_groups, dtype=np.float32)
        kth = np.empty(k, dtype=np.float32)
        values = np.empty(k, dtype=np.float32)
        columns = np.empty(k, dtype=np.int64)
        for t_index in range(chunk * per_chunk, min(n_tiles, (chunk + 1) * per_chunk)):
            start = t_index * tile
            stop = min(n, start + tile)
            for r in range(stop - start):
                tile_users[r, :] = users[rows[start + r], :]
            if stop - start < tile:
                tile_users[stop - start:, :] = 0.0
            np.dot(tile_users, items_t, scores)
            for r in range(stop - start):
                user = rows[start + r]
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
