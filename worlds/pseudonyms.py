"""Pseudonymous ids as Arrow string arrays, built without a Python loop.

A world index ``n`` becomes ``prefix`` + ``bits/4`` hex digits of a seeded bijection of ``n`` on
``bits``-bit integers, so ids are unique, look random, differ between seeds and never form a
13-19 digit number (the prefix is a letter).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _mix(numbers: np.ndarray, seed: int, salt: int, bits: int) -> np.ndarray:
    mask = np.uint64((1 << bits) - 1)
    keys = np.random.default_rng([seed, salt]).integers(1, 1 << (bits - 1), size=4, dtype=np.uint64)
    x = numbers.astype(np.uint64) & mask
    with np.errstate(over="ignore"):
        for round_ in range(2):
            x = (x * (keys[2 * round_] | np.uint64(1)) + keys[2 * round_ + 1]) & mask
            x ^= x >> np.uint64(bits // 2)
    return x


def pseudonyms(prefix: str, numbers: np.ndarray, seed: int, salt: int, bits: int = 40) -> pa.StringArray:
    """Ids for world indices ``numbers`` (distinct numbers give distinct ids)."""
    if bits % 4 or not 8 <= bits <= 60:
        raise ValueError(f"bits must be a multiple of 4 between 8 and 60, got {bits}")
    x = _mix(np.asarray(numbers), seed, salt, bits)
    width = bits // 4
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    digits = _HEX[((x[:, None] >> shifts[None, :]) & np.uint64(15)).astype(np.int64)]
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    chars = np.concatenate([np.broadcast_to(head, (len(x), len(head))), digits], axis=1)
    length = len(head) + width
    offsets = np.arange(len(x) + 1, dtype=np.int32) * length
    return pa.StringArray.from_buffers(
        len(x), pa.py_buffer(offsets.tobytes()), pa.py_buffer(np.ascontiguousarray(chars).tobytes())
    )
