"""Per-item appeal to a pushed cardholder: the push open rate, shrunk toward a prior read from engagement.

An item's engagement per day on offer, log((cardholders who read or opened it + 1) / days), is known for
every item but is not exposure-corrected for pushes: an item pushed to many is opened by many. Where an
item was pushed, its open rate (opens / sends) measures exactly what a push ranker needs. The two are
joined empirically: logit(open rate) is regressed on engagement over the pushed items (weighted by
sends), which gives every item a prior open rate, and each pushed item's rate is shrunk toward its prior
as a Beta posterior mean with `prior_sends` pseudo-sends. Items never pushed keep their prior.
"""

from __future__ import annotations

import numpy as np

MIN_PUSHED_ITEMS = 3  # a prior regression needs more pushed items than it has coefficients


def engagement_rate(engaged: np.ndarray, exposure_days: np.ndarray) -> np.ndarray:
    """log((engaged + 1) / days on offer) per item."""
    return np.log((np.asarray(engaged, dtype=np.float64) + 1.0) / np.asarray(exposure_days, dtype=np.float64))


def open_rate_logit(sends: np.ndarray, opens: np.ndarray, engagement: np.ndarray,
                    prior_sends: float) -> np.ndarray | None:
    """Per item, the logit of its shrunk push open rate (see the module); None when fewer than
    `MIN_PUSHED_ITEMS` items were pushed or no push was opened (then there is nothing to learn from)."""
    sends = np.asarray(sends, dtype=np.float64)
    opens = np.asarray(opens, dtype=np.float64)
    engagement = np.asarray(engagement, dtype=np.float64)
    pushed = sends > 0
    if pushed.sum() < MIN_PUSHED_ITEMS or opens.sum() <= 0:
        return None
    overall = opens.sum() / sends.sum()
    # each pushed item's own rate, shrunk a little toward the overall rate so 0 and 1 have a logit
    own = (opens[pushed] + overall) / (sends[pushed] + 1.0)
    design = np.column_stack([np.ones(pushed.sum()), engagement[pushed]])
    root = np.sqrt(sends[pushed])
    coefficients = np.linalg.lstsq(design * root[:, None], np.log(own / (1.0 - own)) * root, rcond=None)[0]
    prior = 1.0 / (1.0 + np.exp(-(coefficients[0] + coefficients[1] * engagement)))
    rate = (opens + prior_sends * prior) / (sends + prior_sends)
    rate = np.clip(rate, 1e-6, 1.0 - 1e-6)
    return np.log(rate / (1.0 - rate))
