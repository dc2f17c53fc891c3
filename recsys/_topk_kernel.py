"""Compiled scoring and top-k selection behind `recsys.ranking.top_k` (numba, GIL released).

Worker threads claim four tiles of at most 512 users at a time (plain Python threads: the compiled
function releases the GIL, and unlike an OpenMP team, idle threads do not spin on a busy machine, and
concurrent callers such as API request threads are safe). Per tile, one single-threaded BLAS product
(numba's np.dot, scipy's BLAS) scores the tile into a buffer that stays in cache, then the compiled
selection runs over it, per user, with the 16-wide vector primitives defined below:
1. seen items are set to -inf (a row ahead); the tier group's penalty (-inf outside the group) is
   added on the fly by the steps that read the row;
2. the row's maximum per lane is taken, lane j holding columns j, j + L, j + 2L, ... for L = 16 (up
   to 64 for larger k), in vector registers;
3. the k-th largest lane maximum (`bound`, found by counting in vector lanes) is a lower bound of the
   row's k-th largest score, since k disjoint lanes each hold a score that reaches it;
4. the columns whose score reaches `bound` (about 1.5 k of them) are packed, with their scores, by
   vector compress, 16 columns at a time;
5. each is placed at its rank among them (how many beat it, ties to the lower column), counted with
   two vector compares, so no unpredictable branch is taken; only a list longer than 32 (large k, many
   ties) goes through a sorted k-buffer.
The caller must limit BLAS to one thread around the call: the parallelism is across tiles here, and
BLAS threads spinning beside these workers would only contend for the same cores.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# numba's np.dot calls the BLAS that scipy ships; loaded here, before `recsys.ranking` limits the
# threads of every loaded BLAS around a call, so that limit covers it from the first call on
import scipy.linalg.cython_blas  # noqa: F401
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

LANES = 16
# candidate lists up to this long are ranked by counting; longer ones go through a sorted k-buffer
RANKED = 32
LOWEST_FINITE = np.float32(np.finfo(np.float32).min)
# lane maxima beyond 64 cost more (counting is quadratic in lanes) than the k-buffer they would spare
MAX_BLOCKS = 4

# A worker claims this many tiles at a time and scores them in one compiled call: every return to
# Python needs the GIL, and when the other worker holds it, waking up for it costs more than a tile.
TILES_PER_CLAIM = 4

_POOL: ThreadPoolExecutor | None = None


# 16-wide vector primitives, as numba intrinsics over LLVM's generic vector IR. numba's auto-vectoriser
# leaves the selection loops scalar (it cannot prove that the row, the lane maxima and the candidate
# lists do not overlap, and it has no compress), so these spell the vector operations out. Only
# target-independent IR is used (vector compare, `llvm.experimental.vector.compress`, integer min
# reduction, `ctpop`): LLVM lowers it to AVX-512 mask registers and `vcompressps` where the CPU has them
# and to AVX2 or SSE sequences where it does not. They live in this file because numba's on-disk cache
# of `_select` is invalidated by changes to this file only.
# Every primitive reads or writes 16 consecutive elements from an offset. Score rows are read up to an
# `end` (the last, partial vector through a masked load); other arrays must hold `offset + 16` elements
# (packing stores write all 16 lanes, the packed ones first, so a destination needs 16 elements of slack
# after its last packed element).

_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_FLOATS = ir.VectorType(_F32, LANES)
_INTS = ir.VectorType(_I32, LANES)
_BITS = ir.VectorType(ir.IntType(1), LANES)


def _contiguous(*arrays) -> None:
    """Vector loads and stores need consecutive elements: refuse strided arrays when compiling."""
    for array in arrays:
        if not isinstance(array, types.Array) or array.ndim != 1 or array.layout != "C":
            raise TypingError(f"expected a contiguous 1-d array, got {array}")


def _element_pointer(context, builder, array_type, array, offset):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.gep(data, [offset])


def _load(context, builder, array_type, array, offset, vector_type=_FLOATS):
    pointer = _element_pointer(context, builder, array_type, array, offset)
    return builder.load(builder.bitcast(pointer, vector_type.as_pointer()), align=4)


def _store(context, builder, array_type, array, offset, vector):
    pointer = _element_pointer(context, builder, array_type, array, offset)
    builder.store(vector, builder.bitcast(pointer, vector.type.as_pointer()), align=4)


def _splat(builder, value, vector_type):
    undefined = ir.Constant(vector_type, ir.Undefined)
    first = builder.insert_element(undefined, value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(first, undefined, ir.Constant(_INTS, [0] * LANES))


def _compress(builder, vector, lanes, suffix):
    """The lanes of `vector` selected by `lanes`, packed to the front (the rest undefined)."""
    signature = ir.FunctionType(vector.type, [vector.type, _BITS, vector.type])
    function = cgutils.get_or_insert_function(builder.module, signature,
                                              f"llvm.experimental.vector.compress.{suffix}")
    return builder.call(function, [vector, lanes, ir.Constant(vector.type, ir.Undefined)])


def _masked_load(context, builder, array_type, array, offset, valid, fill):
    """The first `valid` (< 16) elements from `offset`, the other lanes `fill`; nothing past is read."""
    element = _element_pointer(context, builder, array_type, array, offset)
    pointer = builder.bitcast(element, _FLOATS.as_pointer())
    lanes = builder.icmp_signed("<", ir.Constant(_INTS, list(range(LANES))),
                                _splat(builder, builder.trunc(valid, _I32), _INTS))
    signature = ir.FunctionType(_FLOATS, [pointer.type, _I32, _BITS, _FLOATS])
    function = cgutils.get_or_insert_function(builder.module, signature, "llvm.masked.load.v16f32.p0")
    filler = ir.Constant(_FLOATS, [fill] * LANES)
    return builder.call(function, [pointer, ir.Constant(_I32, 4), lanes, filler])


def _scores(context, builder, sig, row, penalty, base, valid=None):
    """row[base:base + 16] + penalty[base:base + 16]; with `valid`, lanes from `valid` on are -inf."""
    if valid is None:
        return builder.fadd(_load(context, builder, sig.args[0], row, base),
                            _load(context, builder, sig.args[1], penalty, base))
    return builder.fadd(_masked_load(context, builder, sig.args[0], row, base, valid, float("-inf")),
                        _masked_load(context, builder, sig.args[1], penalty, base, valid, 0.0))


@intrinsic
def pack_reaching(typingctx, row, penalty, base, end, bound, columns, values, count):
    """Append the columns c = base + j (j < 16, c < end) where row[c] + penalty[c] >= bound, and those
    sums, to columns[count:] and values[count:] (in column order); return the new count.

    The 16 scores are loaded once for the compare and both packs: loaded again after a store, which
    the compiler cannot prove to miss the row, the load would wait on the store.
    """
    _contiguous(row, penalty, columns, values)
    signature = types.intp(row, penalty, types.intp, types.intp, types.float32, columns, values, types.intp)

    def codegen(context, builder, sig, args):
        row_array, penalty_array, base_value, end_value, bound_value = args[:5]
        columns_array, values_array, count_value = args[5:]
        valid = builder.sub(end_value, base_value)
        whole = builder.icmp_signed(">=", valid, ir.Constant(_I64, LANES))
        with builder.if_else(whole) as (then, otherwise):
            with then:
                loaded = _scores(context, builder, sig, row_array, penalty_array, base_value)
                loaded_block = builder.block
            with otherwise:
                partial = _scores(context, builder, sig, row_array, penalty_array, base_value, valid)
                partial_block = builder.block
        scores = builder.phi(_FLOATS)
        scores.add_incoming(loaded, loaded_block)
        scores.add_incoming(partial, partial_block)
        above = builder.fcmp_ordered(">=", scores, _splat(builder, bound_value, _FLOATS))
        first_column = builder.trunc(base_value, _I32)
        indices = builder.add(_splat(builder, first_column, _INTS), ir.Constant(_INTS, list(range(LANES))))
        packed_scores = _compress(builder, scores, above, "v16f32")
        packed_columns = _compress(builder, indices, above, "v16i32")
        _store(context, builder, sig.args[6], values_array, count_value, packed_scores)
        _store(context, builder, sig.args[5], columns_array, count_value, packed_columns)
        selected = builder.ctpop(builder.zext(builder.bitcast(above, ir.IntType(LANES)), _I64))
        return builder.add(count_value, selected)

    return signature, codegen


@intrinsic
def lane_maxima(typingctx, row, penalty, start, end, step, out, out_offset):
    """out[out_offset + j] = max(row[c] + penalty[c] for c = base + j < end, base in range(start, end,
    step)), for j < 16; -inf where no column falls in lane j.

    Two running maxima, taking alternate bases, halve the chain of dependent max instructions; the
    last, partial base (if any) is read with a masked load.
    """
    _contiguous(row, penalty, out)
    signature = types.void(row, penalty, types.intp, types.intp, types.intp, out, types.intp)

    def codegen(context, builder, sig, args):
        row_array, penalty_array, start_value, end_value, step_value, out_array, offset = args
        lowest = ir.Constant(_FLOATS, [float("-inf")] * LANES)
        running = [cgutils.alloca_once_value(builder, lowest), cgutils.alloca_once_value(builder, lowest)]

        def take(scores, slot):
            current = builder.load(running[slot])
            builder.store(builder.select(builder.fcmp_ordered(">", scores, current), scores, current),
                          running[slot])

        zero, one = ir.Constant(_I64, 0), ir.Constant(_I64, 1)
        # bases whose 16 columns all lie before `end`
        room = builder.sub(builder.sub(end_value, start_value), ir.Constant(_I64, LANES))
        whole = builder.select(builder.icmp_signed(">=", room, zero),
                               builder.add(builder.sdiv(room, step_value), one), zero)
        with cgutils.for_range(builder, builder.ashr(whole, one)) as loop:
            first = builder.add(start_value, builder.mul(builder.shl(loop.index, one), step_value))
            take(_scores(context, builder, sig, row_array, penalty_array, first), 0)
            take(_scores(context, builder, sig, row_array, penalty_array, builder.add(first, step_value)), 1)
        with builder.if_then(builder.icmp_signed("!=", builder.and_(whole, one), zero)):
            last = builder.add(start_value, builder.mul(builder.sub(whole, one), step_value))
            take(_scores(context, builder, sig, row_array, penalty_array, last), 0)
        partial = builder.add(start_value, builder.mul(whole, step_value))
        valid = builder.sub(end_value, partial)
        with builder.if_then(builder.icmp_signed(">", valid, zero)):
            take(_scores(context, builder, sig, row_array, penalty_array, partial, valid), 1)
        first_half, second_half = builder.load(running[0]), builder.load(running[1])
        merged = builder.select(builder.fcmp_ordered(">", second_half, first_half), second_half, first_half)
        _store(context, builder, sig.args[5], out_array, offset, merged)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def rank_candidates(typingctx, values, columns, count, ranked_values, ranked_columns):
    """Place candidate p (p < count <= 32; values[p], columns[p], in column order) at its rank among
    them: how many values beat it, a tie beating it when it comes first. `values` needs 32 readable
    elements; lanes from `count` on are ignored.

    The 32 values stay in two vector registers while each candidate is counted against them.
    """
    _contiguous(values, columns, ranked_values, ranked_columns)
    signature = types.void(values, columns, types.intp, ranked_values, ranked_columns)

    def codegen(context, builder, sig, args):
        values_array, columns_array, count_value, ranked_values_array, ranked_columns_array = args
        count32 = _splat(builder, builder.trunc(count_value, _I32), _INTS)
        lowest = ir.Constant(_FLOATS, [float("-inf")] * LANES)
        halves = []
        for half in range(2):
            loaded = _load(context, builder, sig.args[0], values_array, ir.Constant(_I64, LANES * half))
            lane = ir.Constant(_INTS, [LANES * half + j for j in range(LANES)])
            halves.append(builder.select(builder.icmp_signed("<", lane, count32), loaded, lowest))

        def bits(predicate, used):
            masks = [builder.zext(builder.bitcast(predicate(half), ir.IntType(LANES)), _I64) for half in used]
            return masks[0] if len(masks) == 1 else builder.or_(
                masks[0], builder.shl(masks[1], ir.Constant(_I64, LANES)))

        def place_all(used):
            with cgutils.for_range(builder, count_value) as loop:
                p = loop.index
                value = builder.load(_element_pointer(context, builder, sig.args[0], values_array, p))
                column = builder.load(_element_pointer(context, builder, sig.args[1], columns_array, p))
                splat = _splat(builder, value, _FLOATS)
                beaten_by = bits(lambda half: builder.fcmp_ordered(">", half, splat), used)
                ties = bits(lambda half: builder.fcmp_ordered("==", half, splat), used)
                earlier = builder.sub(builder.shl(ir.Constant(_I64, 1), p), ir.Constant(_I64, 1))
                rank = builder.ctpop(builder.or_(beaten_by, builder.and_(ties, earlier)))
                ranked = sig.args[3], ranked_values_array, sig.args[4], ranked_columns_array
                builder.store(value, _element_pointer(context, builder, ranked[0], ranked[1], rank))
                builder.store(column, _element_pointer(context, builder, ranked[2], ranked[3], rank))

        # most lists fit the first vector: half the compares
        with builder.if_else(builder.icmp_signed("<=", count_value, ir.Constant(_I64, LANES))) as (one, two):
            with one:
                place_all(halves[:1])
            with two:
                place_all(halves)
        return context.get_dummy_value()

    return signature, codegen


def _smallest_lane(builder, vector):
    """The smallest lane of a NaN-free float vector.

    Reduced as integers that order like the floats (negative floats with their magnitude bits
    flipped): LLVM turns a float min reduction, however it is spelled, into a lane-by-lane chain with
    a NaN check per lane, while an integer min reduction is a few vector steps.
    """
    bits = builder.bitcast(vector, _INTS)
    keys = builder.xor(bits, builder.and_(builder.ashr(bits, ir.Constant(_INTS, [31] * LANES)),
                                          ir.Constant(_INTS, [0x7FFFFFFF] * LANES)))
    reduce = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I32, [_INTS]),
                                            "llvm.vector.reduce.smin.v16i32")
    key = builder.call(reduce, [keys])
    flipped = builder.xor(key, builder.and_(builder.ashr(key, ir.Constant(_I32, 31)),
                                            ir.Constant(_I32, 0x7FFFFFFF)))
    return builder.bitcast(flipped, _F32)


def _kth_largest(vectors: int):
    @intrinsic
    def kth_largest(typingctx, values, k):
        _contiguous(values)
        signature = types.float32(values, types.intp)

        def codegen(context, builder, sig, args):
            values_array, k_value = args
            loaded = [_load(context, builder, sig.args[0], values_array, ir.Constant(_I64, LANES * v))
                      for v in range(vectors)]
            # above[j]: how many values are strictly larger than value j, one vector lane per j
            above = [ir.Constant(_INTS, [0] * LANES) for _ in range(vectors)]
            for i in range(LANES * vectors):
                element = builder.extract_element(loaded[i // LANES], ir.Constant(_I32, i % LANES))
                value = _splat(builder, element, _FLOATS)
                for v in range(vectors):
                    above[v] = builder.add(above[v], builder.zext(builder.fcmp_ordered(">", value, loaded[v]),
                                                                  _INTS))
            # the k-th largest is the smallest value with fewer than k values above it
            limit = _splat(builder, builder.trunc(k_value, _I32), _INTS)
            infinity = ir.Constant(_FLOATS, [float("inf")] * LANES)
            smallest = None
            for v in range(vectors):
                kept = builder.select(builder.icmp_signed("<", above[v], limit), loaded[v], infinity)
                smallest = kept if smallest is None else builder.select(
                    builder.fcmp_ordered("<", kept, smallest), kept, smallest)
            return _smallest_lane(builder, smallest)

        return signature, codegen

    kth_largest.__doc__ = (f"The k-th largest of values[:{LANES * vectors}] (ties counted), "
                           f"for 1 <= k <= {LANES * vectors}.")
    return kth_largest


kth_largest_16 = _kth_largest(1)
kth_largest_32 = _kth_largest(2)
kth_largest_48 = _kth_largest(3)
kth_largest_64 = _kth_largest(4)


@njit(cache=True, nogil=True)
def all_finite(values):  # pragma: no cover - compiled
    """Whether every element of a C-contiguous float32 array is finite, read as bits (an integer max
    vectorises, unlike a float test; np.isfinite would also build a temporary)."""
    bits = values.reshape(-1).view(np.uint32)
    largest = np.uint32(0)  # the largest magnitude, as bits: NaN and infinity have all exponent bits set
    for i in range(bits.size):
        magnitude = bits[i] & np.uint32(0x7FFFFFFF)
        largest = magnitude if magnitude > largest else largest
    return largest < np.uint32(0x7F800000)


def lane_blocks(k: int) -> int:
    """16-lane blocks of column maxima for top-`k`: about 1.6 k lanes keep the candidate list short."""
    return int(min(MAX_BLOCKS, max(1, -(-(8 * k) // (5 * LANES)))))


def default_threads() -> int:
    """Worker threads for top-k: RECSYS_TOPK_THREADS, else the machine's cores."""
    configured = os.environ.get("RECSYS_TOPK_THREADS")
    return max(1, int(configured)) if configured else max(1, os.cpu_count() or 1)


def score_and_select(users: np.ndarray, items_t: np.ndarray, seen_indptr: np.ndarray,
                     seen_indices: np.ndarray, column_of: np.ndarray, item_ids: np.ndarray,
                     user_group: np.ndarray, group_penalty: np.ndarray,
                     out_index: np.ndarray, out_score: np.ndarray, tile: int, threads: int) -> bool:
    """Score every user against `items_t` [d, m] and write their k best into the output rows; return
    False when some user factor is NaN or infinite (checked tile by tile in the workers, so the
    check costs no serial pass over the factors; the outputs are then meaningless).

    Column c of `items_t` is item `item_ids[c]`; `column_of` maps an item back to its column (-1:
    not scored). `group_penalty[user_group[u]]` is added to user u's scores: 0 where the user's tier
    group may receive the column, -inf where not (one group of zeros when there are no tiers).
    """
    n_users = users.shape[0]
    blocks = lane_blocks(out_index.shape[1])
    workers = max(1, min(threads, n_users // (2 * tile)))
    # workers claim a few tiles at a time (next() on a count is atomic under the GIL), so a worker slowed
    # by other processes on a shared machine takes fewer tiles instead of holding up the others
    claims = itertools.count()
    damaged = np.zeros(1, dtype=np.bool_)
    arguments = (claims, damaged, users, items_t, seen_indptr, seen_indices, column_of, item_ids, user_group,
                 group_penalty, out_index, out_score, blocks, tile)
    if workers == 1:
        _score_tiles(*arguments)
        return not damaged[0]
    global _POOL
    if _POOL is None or _POOL._max_workers < workers:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="topk")
    futures = [_POOL.submit(_score_tiles, *arguments) for _ in range(workers)]
    for future in futures:
        future.result()
    return not damaged[0]


def _score_tiles(claims, damaged, users, items_t, seen_indptr, seen_indices, column_of, item_ids, user_group,
                 group_penalty, out_index, out_score, blocks, tile):
    n_users = users.shape[0]
    span = tile * TILES_PER_CLAIM
    scores = np.empty((tile, items_t.shape[1]), dtype=np.float32)
    while (first := next(claims) * span) < n_users:
        _score_span(users, items_t, scores, first, min(first + span, n_users), damaged, seen_indptr,
                    seen_indices, column_of, item_ids, user_group, group_penalty, out_index, out_score,
                    blocks)


@njit(cache=True, nogil=True)
def _score_span(users, items_t, scores, first, last, damaged, seen_indptr, seen_indices, column_of, item_ids,
                user_group, group_penalty, out_index, out_score, blocks):  # pragma: no cover - compiled
    """Users first..last-1, a tile (the rows of `scores`) at a time: one BLAS product (numba calls
    scipy's BLAS), then the selection."""
    tile = scores.shape[0]
    for start in range(first, last, tile):
        end = min(start + tile, last)
        block = scores[:end - start]
        np.dot(users[start:end], items_t, block)
        _select(block, users[start:end], damaged, start, seen_indptr, seen_indices, column_of, item_ids,
                user_group, group_penalty, out_index, out_score, blocks)


@njit(cache=True, nogil=True, inline="always")
def _mark_seen(row, user, seen_indptr, seen_indices, column_of):  # pragma: no cover - compiled
    """Set the user's seen items in their score row to -inf."""
    for p in range(seen_indptr[user], seen_indptr[user + 1]):
        column = column_of[seen_indices[p]]
        if column >= 0:
            row[column] = -np.inf


@njit(cache=True, nogil=True)
def _select(scores, users, damaged, first, seen_indptr, seen_indices, column_of, item_ids, user_group,
            group_penalty, out_index, out_score, blocks):  # pragma: no cover - compiled
    """Row r of `scores` holds user `first + r`'s scores before their group's penalty (seen items are
    set to -inf in place), from row r of `users`; `damaged[0]` is set when `users` is not all finite.

    `column_of` maps an item index to its column of `scores` (-1: not in this item set);
    `item_ids` maps a column back to the item index; `blocks` is the number of 16-lane blocks of
    column maxima. Every output entry of the tile's users is written: users with fewer than k
    eligible items get index -1 / score -inf after them. Ties keep the lower column first.
    """
    if not all_finite(users):
        damaged[0] = True
    n, m = scores.shape
    k = out_index.shape[1]
    lanes = LANES * blocks
    maxima = np.empty(lanes, dtype=np.float32)
    # compressing stores write 16 lanes: LANES of slack after the last packed candidate
    candidates = np.empty(m + LANES, dtype=np.int32)
    values = np.empty(max(m, RANKED) + LANES, dtype=np.float32)
    ranked_columns = np.empty(RANKED, dtype=np.int32)
    ranked_values = np.empty(RANKED, dtype=np.float32)
    top_values = np.empty(k, dtype=np.float32)
    top_columns = np.empty(k, dtype=np.int32)
    if n:
        _mark_seen(scores[0], first, seen_indptr, seen_indices, column_of)
    for r in range(n):
        user = first + r
        row = scores[r]
        penalty = group_penalty[user_group[user]]
        for h in range(0, lanes, LANES):
            lane_maxima(row, penalty, h, m, lanes, maxima, h)
        # seen items are marked a row ahead: a vector load right after a scalar store into it would
        # wait for the store to reach the cache
        if r + 1 < n:
            _mark_seen(scores[r + 1], user + 1, seen_indptr, seen_indices, column_of)
        bound = np.float32(-np.inf)
        if k <= lanes:
            if blocks == 1:
                bound = kth_largest_16(maxima, k)
            elif blocks == 2:
                bound = kth_largest_32(maxima, k)
            elif blocks == 3:
                bound = kth_largest_48(maxima, k)
            else:
                bound = kth_largest_64(maxima, k)
        # -inf (ineligible) never reaches the bound
        bound = max(bound, LOWEST_FINITE)
        count = 0
        for base in range(0, m, LANES):
            count = pack_reaching(row, penalty, base, m, bound, candidates, values, count)
        if count <= RANKED:
            rank_candidates(values, candidates, count, ranked_values, ranked_columns)
            found = min(k, count)
            for i in range(found):
                out_index[user, i] = item_ids[ranked_columns[i]]
                out_score[user, i] = ranked_values[i] + np.float32(0.0)  # -0.0 as 0.0, as it compares
            for i in range(found, k):
                out_index[user, i] = -1
                out_score[user, i] = -np.inf
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
            out_score[user, i] = top_values[i] + np.float32(0.0)
        for i in range(found, k):
            out_index[user, i] = -1
            out_score[user, i] = -np.inf
