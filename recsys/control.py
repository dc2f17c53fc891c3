"""The decision's control share: a stable set of cardholders sent whatever the caps allow, to measure it.

A cardholder is in the control share of `share` when a keyed hash of their id falls below it, so the same
cardholders are in it on every call, in every process and after every retrain, and a larger share
contains a smaller one. Their pushes were not chosen by the send-or-hold decision (only by the ranking and
the caps): the value of the decision is the treated cardholders' value per cardholder against theirs, and
they are the evidence a response-model refit can learn from without learning the decision's own choices
(README, "The control share").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

# a fixed key: another would draw another control share, and every retrain and report must see the same
_KEY = b"qianmian-control"
_SCALE = float(2 ** 64)
CONTROL_REASON = "control share: sent whatever its value (the decision's uplift is measured against it)"


def control_points(user_ids: Iterable[str]) -> np.ndarray:
    """float [n] in [0, 1): each cardholder's fixed position; those below a share are in its control."""
    return np.array([int.from_bytes(hashlib.blake2b(str(user_id).encode(), digest_size=8, key=_KEY).digest(),
                                    "big") / _SCALE for user_id in user_ids], dtype=np.float64)


def in_control(user_ids: Iterable[str], share: float) -> np.ndarray:
    """bool [n]: whether each cardholder is in the control share `share` (all False for 0)."""
    ids = list(user_ids)
    if share <= 0.0:
        return np.zeros(len(ids), dtype=bool)
    return control_points(ids) < share
