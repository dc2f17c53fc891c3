"""The send-or-hold decision's uplift, measured against its control share: value per cardholder, treated
against control, with a 95% interval.

Value is opens - mute_weight x mutes, the decision's own price of a mute. Each group's figure is a mean
over every cardholder in it, pushed or not (a cardholder the decision held all month counts as 0), so the
two means are comparable only because the groups are drawn by a fixed hash of the id (`recsys.control`).
The interval of the ratio is the delta method's on its logarithm: one pass at any number of cardholders,
and close to a bootstrap's at the thousands a control share holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.control import in_control

Z_95 = 1.959964


class UpliftError(ValueError):
    """Inputs that cannot measure an uplift (no control share, no cardholders in a group)."""


@dataclass(frozen=True)
class Ratio:
    """The ratio of two groups' mean values and its 95% interval (NaN where a mean is not positive)."""

    value: float
    low: float
    high: float

    def text(self) -> str:
        if not np.isfinite(self.value):
            return "no ratio (the control share's value is not positive)"
        interval = f" (95% {self.low:.2f}-{self.high:.2f})" if np.isfinite(self.low) else ""
        return f"{self.value:.2f}x{interval}"


def mean_ratio(treated: np.ndarray, control: np.ndarray) -> Ratio:
    """The ratio of the mean of `treated` to the mean of `control` (per-cardholder values) with the delta
    method's 95% interval on its logarithm."""
    treated, control = np.asarray(treated, dtype=np.float64), np.asarray(control, dtype=np.float64)
    if not len(treated) or not len(control):
        raise UpliftError(f"a group is empty ({len(treated)} treated, {len(control)} control cardholders)")
    first, second = treated.mean(), control.mean()
    if first <= 0 or second <= 0:
        return Ratio(first / second if second > 0 else float("nan"), float("nan"), float("nan"))
    # the variance of log(mean) is about var / (n x mean^2) in each group; a group of one has no spread
    terms = [values.var(ddof=1) / (len(values) * mean ** 2) if len(values) > 1 else 0.0
             for values, mean in ((treated, first), (control, second))]
    spread, ratio = float(np.sqrt(sum(terms))), first / second
    return Ratio(ratio, ratio * np.exp(-Z_95 * spread), ratio * np.exp(Z_95 * spread))


@dataclass(frozen=True)
class Group:
    """One group's cardholders and their pushes, opens, mutes and value per cardholder."""

    cardholders: int
    pushes: float
    opens: float
    mutes: float
    value: float


@dataclass(frozen=True)
class Uplift:
    """The decision's uplift over a period: each group's figures and the value ratio, treated to control."""

    share: float
    since: pd.Timestamp
    until: pd.Timestamp
    mute_weight: float
    treated: Group
    control: Group
    ratio: Ratio

    def lines(self) -> list[str]:
        header = (f"the decision's uplift from {self.since.isoformat()} to {self.until.isoformat()}, control "
                  f"share {self.share:g}, value = opens - {self.mute_weight:g} x mutes")
        groups = (("treated (decided)", self.treated), ("control (sent whatever the value)", self.control))
        rows = [f"| {name} | {group.cardholders:,} | {group.pushes:.3f} | {group.opens:.3f} | "
                f"{1000 * group.mutes:.2f} | {group.value:.4f} |" for name, group in groups]
        return [header, "",
                "| cardholders | count | pushes each | opens each | mutes per 1,000 | value each |",
                "|---|---|---|---|---|---|", *rows, "",
                f"value per cardholder, treated / control: {self.ratio.text()}"]


def push_log_uplift(push_log: pd.DataFrame, user_ids: np.ndarray, share: float, since: pd.Timestamp,
                    until: pd.Timestamp, mute_weight: float = 10.0) -> Uplift:
    """The uplift over the pushes of `push_log` (the contract's columns) sent in [since, until), among the
    cardholders `user_ids` (those the scheduler asks about: opted in), split by the control share
    `share` the policy had over that period."""
    if not 0.0 < share <= 0.5:
        raise UpliftError(f"control share {share:g}: give the policy's decision.control_share over the "
                          "period (above 0, at most 0.5); without one there is nothing to measure against")
    if until <= since:
        raise UpliftError(f"the period is empty: --until {until.isoformat()} is not after --since "
                          f"{since.isoformat()}")
    ids = pd.Index(np.asarray(user_ids).astype(str)).unique()
    sent = pd.to_datetime(push_log["sent_ts"], utc=True)
    period = push_log.loc[((sent >= since) & (sent < until)).to_numpy()]
    rows = ids.get_indexer(period["user_id"].astype(str))
    known = rows >= 0
    rows = rows[known]
    opened = period["opened_ts"].notna().to_numpy()[known]
    muted = period["muted"].astype("boolean").fillna(False).to_numpy(dtype=bool)[known]
    per_user = np.zeros((len(ids), 3))
    np.add.at(per_user, rows, np.column_stack([np.ones(len(rows)), opened, muted]))
    value = per_user[:, 1] - mute_weight * per_user[:, 2]
    control = in_control(ids, share)

    def group(mask: np.ndarray) -> Group:
        if not mask.any():
            raise UpliftError(f"no cardholder of the {len(ids):,} is in the "
                              f"{'control share' if mask is control else 'treated group'} of {share:g}")
        means = per_user[mask].mean(axis=0)
        return Group(int(mask.sum()), *map(float, means), float(value[mask].mean()))

    treated_group, control_group = group(~control), group(control)
    return Uplift(share, since, until, mute_weight, treated_group, control_group,
                  mean_ratio(value[~control], value[control]))
