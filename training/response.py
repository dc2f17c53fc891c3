"""Fit the push response model on `push_log`, calibrate it on a later slice, report calibration out of time.

The time line, for an as-of time `T`, holdout `H` and validation `V` days:

    ...pushes...  | validation (V days) | holdout (H days) |
                T-H-V                  T-H                T

0. the open model's evidence on hours is chosen first (`choose_open_fit`): an open model is fitted on
   pushes up to T-H-V with each L2 weight of the per-cardholder daily wave in `user_hour_grid`, with and
   without the transactional reminders' opens (`reminder_opens` None; True or False fixes it), and the
   pair whose Platt-mapped log-loss of the validation pushes' opens is lowest is used for every fit below;
1. model A is fitted on pushes up to T-H-V (its open model is step 0's chosen fit, not fitted again); a
   Platt map is fitted on A's logits of the validation pushes;
2. model B is fitted on pushes up to T-H, with the slope of A's Platt map and an intercept levelled on B's
   own latest `level_days` of training pushes (`levelled`): its holdout figures are the report (log-loss,
   Brier, ECE, AUC and the reliability curve beside the training base rate), for opens and mutes;
3. with `refit`, the published model C is fitted on every push up to T, with the slope of a Platt map
   fitted on B's logits of the holdout and an intercept levelled on C's latest training pushes.

Each fit keeps every event and a sample of the non-events, reweighted (`negative_sample`), and starts from
the previous fit's coefficients (`warm_start`). Outcomes are censored at each fit's cutoff (an open after
the cutoff is not yet known). No MLflow here: `ResponseFitReport.metrics()` is a flat dict the training job
can log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import brentq, minimize

from features.bundle_inputs import feature_builder
from recsys.cells import UNKNOWN
from recsys.control import in_control
from recsys.response_model import (
    BIN_HOURS,
    HOUR_BINS,
    SEGMENT_FIELDS,
    TARGETS,
    WAVE_UPPER,
    WINDOW_DAYS,
    Layout,
    Platt,
    PushResponseModel,
    daily_cycle,
    design_matrix,
    hour_bin,
    local_hours,
    recent_counts,
    sigmoid,
)
from recsys.times import utc_timestamp
from training.calibration import Calibration, calibration

if TYPE_CHECKING:
    from features.loader import Dataset

logger = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""`scorer(user_ids, content_ids)`: the ranking model's score of each (cardholder, content) pair."""

ACTIVITY_TABLES = (("transactions", "ts"), ("menu_clicks", "ts"), ("article_reads", "ts"))
LIFT_PRIOR = 8.0  # pseudo-events at everyone's day-part shares: a cardholder with few events has lift ~0
MIN_PUSHES = 100
MIN_HOUR_SHARE = 0.005  # an hour with fewer of the fitted pushes is not offered by best_hours
MIN_CALIBRATION_POSITIVES = 20

# L2 weight per term (a Gaussian prior of variance 1 / weight); the per-cardholder terms are the
# strongest, so a cardholder's own coefficients move off the segment only with their own evidence.
# The cardholder's daily wave (user_hour) is the exception: its direction is what ranks the hours, and
# a weight of 4 kept cardholders with two or three opens on the population's hours. By default the fit
# chooses it on the validation slice (`ResponseFitConfig.user_hour_grid`); this value serves an empty grid.
DEFAULT_PENALTIES: dict[str, dict[str, float]] = {
    "open": {"intercept": 0.0, "user": 2.0, "item": 1.0, "kind": 1.0, "segment": 1.0, "hour": 1.0,
             "segment_hour": 2.0, "user_hour": 0.25, "activity": 0.01, "recent": 0.0, "excess": 0.0,
             "score": 0.01},
    "mute": {"intercept": 0.0, "user": 20.0, "item": 4.0, "kind": 4.0, "segment": 4.0, "hour": 4.0,
             "segment_hour": 10.0, "user_hour": 50.0, "activity": 1.0, "recent": 0.0, "excess": 0.0,
             "score": 1.0},
}
DEFAULT_NEGATIVE_SHARE = {"open": 0.3, "mute": 0.05}
# sign constraints: more recent pushes never raise opens nor lower mutes
SIGNS = {"open": {"recent": -1.0, "excess": -1.0}, "mute": {"recent": 1.0, "excess": 1.0}}


class ResponseFitError(ValueError):
    """The push log cannot support a fitted, evaluated response model."""


@dataclass(frozen=True)
class ResponseFitConfig:
    holdout_days: int = 14
    validation_days: int = 14
    refit: bool = True
    bins: int = 10
    activity_days: int = 90
    default_timezone: str = "Asia/Shanghai"
    penalties: Mapping[str, Mapping[str, float]] = field(default_factory=lambda: DEFAULT_PENALTIES)
    # share of the non-events (unopened, unmuted pushes) each fit keeps, reweighted (`negative_sample`)
    negative_share: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_NEGATIVE_SHARE))
    # fits on fewer pushes keep them all: they are fast, and with few events the weights only add noise
    sample_above: int = 200_000
    # the open model also learns from transactional reminders' opens (their own item and kind terms take
    # their level): a cardholder's hours show in every push they open, not only in marketing ones.
    # None: chosen on the validation slice with the daily wave's weight (`choose_open_fit`)
    reminder_opens: bool | None = None
    warm_start: bool = True  # each fit starts from the one at the earlier cutoff
    # the solver stops when a Newton step moves the coefficients by less than this on average
    tolerance: float = 1e-6
    level_days: int = 14  # latest training days the Platt intercept is levelled on (`levelled`); 0: off
    # L2 weights of the open model's daily wave tried on the validation slice (`choose_open_fit`);
    # empty: penalties["open"]["user_hour"] as given
    user_hour_grid: tuple[float, ...] = (1.0, 0.25)
    sample_seed: int = 0
    # the pushes the send-or-hold decision chose are not evidence (`evidence`): those sent from
    # `decided_since` on to cardholders outside the policy's `control_share`. They still count in the
    # recent count and the published push history. None: every push is evidence
    decided_since: pd.Timestamp | None = None
    control_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("holdout_days", "validation_days", "bins", "activity_days"):
            if int(getattr(self, name)) < 1:
                raise ResponseFitError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < float(self.tolerance) < 1.0:
            raise ResponseFitError(f"tolerance must be in (0, 1), got {self.tolerance}")
        if any(not float(w) > 0.0 for w in self.user_hour_grid):
            raise ResponseFitError(f"user_hour_grid weights must be > 0, got {self.user_hour_grid}")
        if int(self.level_days) < 0:
            raise ResponseFitError(f"level_days must be >= 0, got {self.level_days}")
        if not 0.0 <= float(self.control_share) <= 0.5:
            raise ResponseFitError("control_share must be in [0, 0.5] (the policy's "
                                   f"decision.control_share), got {self.control_share}")
        if self.control_share and self.decided_since is None:
            raise ResponseFitError("control_share says whose pushes the decision did not choose: give it "
                                   "with decided_since, the time the decision began")
        for target in TARGETS:
            share = self.negative_share.get(target) if isinstance(self.negative_share, Mapping) else None
            if share is None or not 0.0 < float(share) <= 1.0:
                raise ResponseFitError(f"negative_share[{target!r}] must be in (0, 1], got {share}")


@dataclass
class ResponseFitReport:
    """Out-of-time calibration of the response model (see the module docstring)."""

    as_of: pd.Timestamp
    validation_from: pd.Timestamp
    holdout_from: pd.Timestamp
    pushes: dict[str, int]  # slice -> marketing pushes
    holdout: dict[str, Calibration]  # target -> calibrated figures on the holdout
    holdout_raw: dict[str, Calibration]  # target -> before the Platt map
    platt: dict[str, tuple[float, float]]
    timings: dict[str, float]
    uses_score: bool
    # (daily-wave L2 weight, reminders' opens used) -> Platt-mapped validation log-loss of opens
    # (empty: nothing to choose)
    open_fit_losses: dict[tuple[float, bool], float] = field(default_factory=dict)
    user_hour_penalty: float = float("nan")
    reminder_opens: bool = False

    def metrics(self) -> dict[str, float]:
        """Flat figures for a tracker, e.g. `response.open.ece`."""
        out: dict[str, float] = {f"response.pushes.{k}": float(v) for k, v in self.pushes.items()}
        out["response.open.user_hour_penalty"] = float(self.user_hour_penalty)
        out["response.open.reminder_opens"] = float(self.reminder_opens)
        for prefix, figures in (("", self.holdout), ("raw.", self.holdout_raw)):
            for target, c in figures.items():
                for name in ("observed_rate", "base_rate", "mean_predicted", "log_loss", "base_log_loss",
                             "brier", "base_brier", "ece", "auc"):
                    out[f"response.{prefix}{target}.{name}"] = float(getattr(c, name))
        return out

    def summary(self) -> str:
        lines = [f"response model: holdout {self.holdout_from.isoformat()} .. {self.as_of.isoformat()}, "
                 f"pushes {self.pushes}, daily-wave L2 weight {self.user_hour_penalty:g}, reminders' opens "
                 f"{'used' if self.reminder_opens else 'not used'}"]
        if self.open_fit_losses:
            lines.append("  validation log-loss of opens by daily-wave L2 weight and reminders' opens: "
                         + ", ".join(f"{w:g} {'with' if r else 'without'} {loss:.5f}"
                                     for (w, r), loss in self.open_fit_losses.items()))
        for target in TARGETS:
            lines.append(f"  P({target}) raw        {self.holdout_raw[target].summary()}")
            lines.append(f"  P({target}) calibrated {self.holdout[target].summary()}")
        return "\n".join(lines)


# ---------------------------------------------------------------------- inputs from the data contract
def log_pushes(dataset: Dataset, as_of: pd.Timestamp, default_timezone: str) -> pd.DataFrame:
    """Pushes of known content sent up to `as_of`: ids, send time, local hour, recent count, opened time,
    muted, and `marketing` (False for transactional reminders). `recent` counts the cardholder's marketing
    pushes in the trailing `WINDOW_DAYS`, this one included when it is one: reminders do not count."""
    pushes = dataset.push_log
    content = dataset.content.drop_duplicates("content_id").set_index("content_id")
    transactional = content["transactional"].astype("boolean").fillna(False)
    item_flag = transactional.reindex(pushes["content_id"].astype(str).to_numpy())
    pushes = pushes.loc[item_flag.notna().to_numpy() & (pushes["sent_ts"] <= as_of).to_numpy()]
    pushes = pushes.reset_index(drop=True)
    marketing = ~transactional.reindex(pushes["content_id"].astype(str).to_numpy()).astype(bool).to_numpy()
    holders = dataset.cardholders.drop_duplicates("user_id").set_index("user_id")
    zones = holders["timezone"].reindex(pushes["user_id"].astype(str).to_numpy()).to_numpy(dtype=object)
    users = pd.factorize(pushes["user_id"].astype(str))[0]
    sent = pushes["sent_ts"].to_numpy(dtype="datetime64[s]").astype(np.int64)
    recent = np.zeros(len(pushes), dtype=np.int64)
    if marketing.any():
        recent[marketing] = recent_counts(users[marketing], sent[marketing], WINDOW_DAYS * 86400)
    if (~marketing).any() and marketing.any():
        recent[~marketing] = counts_before(users[marketing], sent[marketing], users[~marketing],
                                           sent[~marketing], WINDOW_DAYS * 86400)
    return pd.DataFrame({
        "user_id": pushes["user_id"].astype(str).to_numpy(dtype=object),
        "content_id": pushes["content_id"].astype(str).to_numpy(dtype=object),
        "sent_ts": pushes["sent_ts"].array,
        "opened_ts": pushes["opened_ts"].array,
        "muted": pushes["muted"].astype("boolean").fillna(False).to_numpy(dtype=bool),
        "hour": local_hours(pushes["sent_ts"], zones, default_timezone),
        "recent": recent,
        "marketing": marketing,
    })


def counts_before(user_codes: np.ndarray, sent: np.ndarray, at_users: np.ndarray, at: np.ndarray,
                  window_seconds: int) -> np.ndarray:
    """For each (`at_users`, `at`): the pushes in (`user_codes`, `sent`) to that cardholder in
    `(at - window, at]`."""
    span = int(max(sent.max(), at.max()) - min(sent.min(), at.min()) + 2 * window_seconds + 1)
    origin = min(sent.min(), at.min()) - window_seconds
    keys = np.sort(user_codes.astype(np.int64) * span + (sent - origin))
    query = at_users.astype(np.int64) * span + (at - origin)
    return np.searchsorted(keys, query, side="right") - np.searchsorted(keys, query - window_seconds,
                                                                         side="right")


def marketing_pushes(dataset: Dataset, as_of: pd.Timestamp, default_timezone: str) -> pd.DataFrame:
    """Marketing pushes sent up to `as_of` (`log_pushes` without the reminders or the flag)."""
    pushes = log_pushes(dataset, as_of, default_timezone)
    return pushes.loc[pushes["marketing"].to_numpy()].drop(columns="marketing").reset_index(drop=True)


def segment_labels(dataset: Dataset, as_of: pd.Timestamp, user_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Card tier, age band and city tier of each cardholder as text ("unknown" when missing)."""
    from features.builder import AGE_EDGES, AGE_LABELS, band

    holders = dataset.cardholders.drop_duplicates("user_id").set_index("user_id").reindex(user_ids)
    age = as_of.year - holders["birth_year"].to_numpy(dtype=np.float64, na_value=np.nan)
    return {
        "card_tier": holders["card_tier"].astype("string").fillna(UNKNOWN).to_numpy(dtype=object),
        "age_band": band(age, AGE_EDGES, AGE_LABELS),
        "city_tier": holders["city_tier"].astype("string").fillna(UNKNOWN).to_numpy(dtype=object),
    }


def activity_events(dataset: Dataset, as_of: pd.Timestamp, user_ids: np.ndarray,
                    default_timezone: str) -> pd.DataFrame:
    """Spend, menu clicks and reads up to `as_of` of `user_ids`: cardholder row, time, local day part."""
    lookup = pd.Index(user_ids)
    zones_of = dataset.cardholders.drop_duplicates("user_id").set_index("user_id")["timezone"]
    parts = []
    for name, column in ACTIVITY_TABLES:
        frame = dataset.table(name)
        if not len(frame):
            continue
        frame = frame.loc[(frame[column] <= as_of).to_numpy()]
        ids = frame["user_id"].astype(str).to_numpy(dtype=object)
        rows = lookup.get_indexer(ids)
        zones = zones_of.reindex(ids).to_numpy(dtype=object)
        parts.append(pd.DataFrame({"row": rows, "ts": frame[column].array,
                                   "bin": hour_bin(local_hours(frame[column], zones, default_timezone))}
                                  ).loc[rows >= 0])
    if not parts:
        return pd.DataFrame({"row": np.zeros(0, np.int64), "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
                             "bin": np.zeros(0, np.int64)})
    return pd.concat(parts, ignore_index=True)


def activity_lift(events: pd.DataFrame, as_of: pd.Timestamp, n_users: int, days: int) -> np.ndarray:
    """float32 [n, HOUR_BINS]: log of each cardholder's share of own events in each day part over everyone's.

    `events` come from `activity_events`; those in the `days` before `as_of` count. Shares are smoothed
    with `LIFT_PRIOR` pseudo-events, so a cardholder with no events has lift 0.
    """
    since = as_of - pd.Timedelta(days=days)
    recent = events.loc[((events["ts"] > since) & (events["ts"] <= as_of)).to_numpy()]
    counts = np.zeros((n_users, HOUR_BINS))
    np.add.at(counts, (recent["row"].to_numpy(), recent["bin"].to_numpy()), 1.0)
    overall = (counts.sum(axis=0) + 1.0) / (counts.sum() + HOUR_BINS)
    share = (counts + LIFT_PRIOR * overall[None, :]) / (counts.sum(axis=1, keepdims=True) + LIFT_PRIOR)
    return np.log(share / overall[None, :]).astype(np.float32)


# ---------------------------------------------------------------------- penalised maximum likelihood
def fit_logistic(design: sp.csr_matrix, outcomes: np.ndarray, penalties: np.ndarray,
                 signs: Mapping[int, float], weights: np.ndarray | None = None,
                 start: np.ndarray | None = None, tolerance: float = 1e-6) -> np.ndarray:
    """Coefficients minimising the (row-`weights`ed) logistic log-loss sum plus
    `0.5 * sum(penalties * coef**2)`, from `start` (zeros by default).

    `signs` maps a column to the sign its coefficient must keep (+1: >= 0, -1: <= 0). Columns no push
    uses stay at 0 (their penalised optimum); a signed coefficient that comes out on the wrong side is
    held at 0 and the rest refitted (an active set: scipy's bounded solvers are many times slower here).
    """
    y = np.asarray(outcomes, dtype=np.float64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    used = np.flatnonzero(design.getnnz(axis=0) > 0)
    coef = np.zeros(design.shape[1]) if start is None else np.array(start, dtype=np.float64)
    coef[np.setdiff1d(np.arange(design.shape[1]), used)] = 0.0
    for column, sign in signs.items():
        coef[column] = coef[column] if coef[column] * sign >= 0 else 0.0
    held: set[int] = set()
    for _ in range(len(signs) + 1):
        free = np.array([c for c in used if c not in held], dtype=np.int64)
        sub = design[:, free].tocsr()
        result = _newton(sub, y, w, penalties[free], coef[free], tolerance)
        if not np.isfinite(result.x).all():
            raise ResponseFitError("the response model fit diverged: check the push log for broken rows")
        coef[:] = 0.0
        coef[free] = result.x
        wrong = {c for c, sign in signs.items() if coef[c] * sign < 0}
        if not wrong:
            return coef
        held |= wrong
    coef[list(held)] = 0.0
    return coef


def _newton(design: sp.csr_matrix, y: np.ndarray, w: np.ndarray, penalties: np.ndarray, start: np.ndarray,
            tolerance: float):
    """Truncated Newton (scipy's Newton-CG) with exact Hessian-vector products of the penalised loss."""
    transposed = design.T.tocsr()
    curvature: dict[str, Any] = {}

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        z = design @ beta
        value = float(np.sum(w * (np.logaddexp(0.0, z) - y * z)) + 0.5 * np.sum(penalties * beta**2))
        return value, transposed @ (w * (sigmoid(z) - y)) + penalties * beta

    def hessp(beta: np.ndarray, vector: np.ndarray) -> np.ndarray:
        key = beta.tobytes()
        if curvature.get("key") != key:
            p = sigmoid(design @ beta)
            curvature.update(key=key, weight=w * p * (1.0 - p))
        return transposed @ (curvature["weight"] * (design @ vector)) + penalties * vector

    return minimize(loss, start, jac=True, hessp=hessp, method="Newton-CG", options={"xtol": tolerance})


def fit_platt(logit: np.ndarray, outcomes: np.ndarray) -> Platt:
    """Slope and intercept on the logit, held near the identity map when positives are few."""
    y = np.asarray(outcomes, dtype=np.float64)
    if y.sum() < 1 or len(y) - y.sum() < 1:
        return Platt()
    z = np.asarray(logit, dtype=np.float64)
    # a prior on the slope worth a few pushes keeps thin slices (a few mutes) near the identity
    slope_weight = 50.0 if y.sum() < MIN_CALIBRATION_POSITIVES else 5.0

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = params
        u = a * z + b
        residual = sigmoid(u) - y
        value = float(np.sum(np.logaddexp(0.0, u) - y * u) + 0.5 * slope_weight * (a - 1.0) ** 2)
        return value, np.array([np.sum(residual * z) + slope_weight * (a - 1.0), np.sum(residual)])

    result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return Platt(float(result.x[0]), float(result.x[1]))


@dataclass(frozen=True)
class _Inputs:
    """What every fit shares: vocabularies and the per-push table."""

    user_ids: np.ndarray
    content_ids: np.ndarray
    kinds: tuple[str, ...]
    item_kind: np.ndarray
    labels: dict[str, tuple[str, ...]]
    pushes: pd.DataFrame  # marketing pushes that are evidence (`evidence`): fitted, calibrated and evaluated
    sent: pd.DataFrame  # every marketing push (user_id, sent_ts): the published history (`push_history`)
    events: pd.DataFrame
    scores: np.ndarray | None
    reminders: pd.DataFrame  # transactional pushes: more opens by hour for the open model (`reminder_opens`)
    reminder_scores: np.ndarray | None


def _prepare(dataset: Dataset, as_of: pd.Timestamp, config: ResponseFitConfig,
             scorer: Scorer | None) -> _Inputs:
    every = log_pushes(dataset, as_of, config.default_timezone)
    flags = every.pop("marketing").to_numpy()
    marketing = every.loc[flags].reset_index(drop=True)
    pushes = marketing.loc[evidence(marketing, config)].reset_index(drop=True)
    reminders = every.loc[~flags].reset_index(drop=True)
    user_ids = dataset.cardholders["user_id"].astype(str).drop_duplicates().to_numpy(dtype=object)
    content = dataset.content.drop_duplicates("content_id")
    content_ids = content["content_id"].astype(str).to_numpy(dtype=object)
    kinds, item_kind = np.unique(content["kind"].astype(str).to_numpy(dtype=object), return_inverse=True)
    segments = segment_labels(dataset, as_of, user_ids)
    labels = {name: (*sorted(set(values.astype(str)) - {UNKNOWN}), UNKNOWN)
              for name, values in segments.items()}
    def score(table: pd.DataFrame) -> np.ndarray | None:
        if scorer is None:
            return None
        values = np.asarray(scorer(table["user_id"].to_numpy(), table["content_id"].to_numpy()), np.float64)
        if values.shape != (len(table),) or not np.isfinite(values).all():
            raise ResponseFitError(f"the scorer returned {values.shape} values, not {len(table)} finite "
                                   "scores (one per push): score every (cardholder, content) pair")
        return values

    events = activity_events(dataset, as_of, user_ids, config.default_timezone)
    return _Inputs(user_ids, content_ids, tuple(str(k) for k in kinds), item_kind.astype(np.int64), labels,
                   pushes, marketing[["user_id", "sent_ts"]], events, score(pushes), reminders,
                   score(reminders) if len(reminders) else None)


def evidence(pushes: pd.DataFrame, config: ResponseFitConfig) -> np.ndarray:
    """bool [n]: the `pushes` (user_id, sent_ts) a fit learns from: all but those the value-aware decision
    chose, which were sent from `config.decided_since` on to cardholders outside its control share.

    Refitted on the decision's own choices, the models learn that choice back: it sent where they
    predicted opens, so their terms come out flatter and rank worse (README, "What the retrain at 20,000
    cardholders changes, checked"); the control share's pushes went whatever the value."""
    if config.decided_since is None:
        return np.ones(len(pushes), dtype=bool)
    before = (pushes["sent_ts"] < utc_timestamp(config.decided_since)).to_numpy()
    codes, users = pd.factorize(pushes["user_id"])  # each cardholder hashed once, not each push
    return before | in_control(users, config.control_share)[codes]


def _fit(dataset: Dataset, inputs: _Inputs, cutoff: pd.Timestamp, config: ResponseFitConfig,
         start: PushResponseModel | None = None, targets: tuple[str, ...] = TARGETS) -> PushResponseModel:
    """Coefficients fitted on pushes sent up to `cutoff`, outcomes known at `cutoff`; identity calibration.

    `start`: a model fitted at an earlier cutoff on the same inputs, whose coefficients start the solver.
    `targets`: the models fitted (the others keep zero coefficients)."""
    rows = (inputs.pushes["sent_ts"] <= cutoff).to_numpy()
    train = inputs.pushes.loc[rows]
    if len(train) < MIN_PUSHES:
        raise ResponseFitError(
            f"the push log has {len(train)} marketing pushes up to {cutoff.isoformat()}: at least "
            f"{MIN_PUSHES} are needed to fit a response model; shorten the holdout and validation slices "
            "or add push history")
    segments = segment_labels(dataset, cutoff, inputs.user_ids)
    codes = np.stack([pd.Index(inputs.labels[name]).get_indexer(segments[name].astype(str))
                      for name in SEGMENT_FIELDS], axis=1)
    unknown = np.array([len(inputs.labels[n]) - 1 for n in SEGMENT_FIELDS])
    codes = np.where(codes >= 0, codes, unknown[None, :])
    lift = activity_lift(inputs.events, cutoff, len(inputs.user_ids), config.activity_days)
    scores = None if inputs.scores is None else inputs.scores[rows]
    center = float(scores.mean()) if scores is not None else 0.0
    scale = float(scores.std()) if scores is not None and scores.std() > 0 else 1.0
    layout = Layout(len(inputs.user_ids), len(inputs.content_ids), len(inputs.kinds),
                    tuple(len(inputs.labels[n]) for n in SEGMENT_FIELDS))
    model = PushResponseModel(
        user_ids=inputs.user_ids, content_ids=inputs.content_ids, kinds=inputs.kinds, labels=inputs.labels,
        user_segments=codes.astype(np.int64), user_lift=lift, item_kind=inputs.item_kind,
        coef={t: np.zeros(layout.size) for t in TARGETS},
        calibration={t: Platt() for t in TARGETS}, score_center=center, score_scale=scale,
        uses_score=scores is not None, default_timezone=config.default_timezone,
        send_hours=send_hours(train["hour"].to_numpy()),
    )
    users = model.user_rows(train["user_id"].to_numpy())
    items = model.item_rows(train["content_id"].to_numpy())
    design = design_matrix(model.layout, users, items, train["hour"].to_numpy(), train["recent"].to_numpy(),
                           model.standardise(scores))
    opened = (train["opened_ts"].notna() & (train["opened_ts"] <= cutoff)).to_numpy(dtype=np.float64)
    muted = train["muted"].to_numpy(dtype=np.float64)
    offsets = model.layout.offsets()
    rng = np.random.default_rng(config.sample_seed)
    designs = {"open": design, "mute": design}
    outcomes = {"open": opened, "mute": muted}
    open_users, open_hours = users.index, train["hour"].to_numpy()
    if config.reminder_opens:
        reminder_rows = (inputs.reminders["sent_ts"] <= cutoff).to_numpy()
        reminders = inputs.reminders.loc[reminder_rows]
        if len(reminders):
            extra = design_matrix(
                model.layout, model.user_rows(reminders["user_id"].to_numpy()),
                model.item_rows(reminders["content_id"].to_numpy()), reminders["hour"].to_numpy(),
                reminders["recent"].to_numpy(),
                None if scores is None else model.standardise(inputs.reminder_scores[reminder_rows]))
            designs["open"] = sp.vstack([design, extra], format="csr")
            known = reminders["opened_ts"].notna() & (reminders["opened_ts"] <= cutoff)
            outcomes["open"] = np.concatenate([opened, known.to_numpy(dtype=np.float64)])
            open_users = np.concatenate([open_users, model.user_rows(reminders["user_id"].to_numpy()).index])
            open_hours = np.concatenate([open_hours, reminders["hour"].to_numpy()])
    for target in ("open", "mute"):
        if target not in targets:
            continue
        design, outcome = designs[target], outcomes[target]
        penalties = np.empty(model.layout.size)
        for block, (first, size) in offsets.items():
            penalties[first:first + size] = config.penalties[target][block.split(":")[0]]
        signs = {offsets[block][0]: sign for block, sign in SIGNS[target].items()}
        share = config.negative_share[target] if len(train) > config.sample_above else 1.0
        keep, weights = negative_sample(outcome, share, rng)
        model.coef[target] = fit_logistic(design[keep], outcome[keep], penalties, signs, weights,
                                          None if start is None else start.coef[target], config.tolerance)
    if "open" in targets:
        model.wave_precision = wave_precision(designs["open"] @ model.coef["open"], open_users, open_hours,
                                              len(inputs.user_ids), config.penalties["open"])
    model.history, model.history_until = push_history(inputs, cutoff), int(cutoff.timestamp())
    model.info.update({"fitted_to": cutoff.isoformat(), "pushes": int(len(train)),
                       "open_rate": float(opened.mean()), "mute_rate": float(muted.mean()),
                       "hour_bin_hours": BIN_HOURS})
    return model


def wave_precision(logit: np.ndarray, users: np.ndarray, hours: np.ndarray, n_users: int,
                   penalties: Mapping[str, float]) -> np.ndarray:
    """float32 [n_users, 6]: the curvature of the open fit's penalised loss in each cardholder's level
    and daily wave (`user` and `user_hour` terms) at the fitted coefficients: every push of theirs the
    fit saw (`logit`, `users`: model index, -1 none; `hours`: local send hour), plus the penalties; a
    symmetric 3 x 3 kept as its upper triangle (`WAVE_UPPER` order).
    The prior that the pushes after the fit update (`PushResponseModel.live_wave`)."""
    known = users >= 0
    p = sigmoid(logit[known])
    weight = p * (1.0 - p)
    terms = np.column_stack([np.ones(len(p)), daily_cycle(hours[known])])
    diagonal = {0: penalties["user"], 1: penalties["user_hour"], 2: penalties["user_hour"]}
    out = np.empty((n_users, len(WAVE_UPPER[0])), dtype=np.float32)
    for column, (a, b) in enumerate(zip(*WAVE_UPPER, strict=True)):
        entry = np.bincount(users[known], weight * terms[:, a] * terms[:, b], minlength=n_users)
        out[:, column] = entry + diagonal[a] if a == b else entry
    return out


def level_shift(logit: np.ndarray, outcome: np.ndarray) -> float:
    """The shift of `logit` that makes the mean prediction equal the observed rate (0 when the slice has
    fewer than `MIN_CALIBRATION_POSITIVES` events or no non-event)."""
    y = np.asarray(outcome, dtype=np.float64)
    events = float(y.sum())
    if events < MIN_CALIBRATION_POSITIVES or events >= len(y):
        return 0.0
    z = np.asarray(logit, dtype=np.float64)
    return float(brentq(lambda shift: float(sigmoid(z + shift).sum()) - events, -20.0, 20.0))


def negative_sample(outcome: np.ndarray, share: float, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Rows to fit on and their weights: every event, and each non-event with chance `share` weighted
    1 / share, so the weighted log-loss is an unbiased estimate of the whole log's."""
    if share >= 1.0:
        return np.arange(len(outcome)), np.ones(len(outcome))
    keep = np.flatnonzero((outcome > 0) | (rng.random(len(outcome)) < share))
    return keep, np.where(outcome[keep] > 0, 1.0, 1.0 / share)


def push_history(inputs: _Inputs, cutoff: pd.Timestamp) -> np.ndarray:
    """int64 [n_users, m]: each cardholder's marketing push times (epoch seconds, 0 pads) in the
    `WINDOW_DAYS` up to `cutoff`, for the recent count at serving (`PushResponseModel.history`)."""
    sent = inputs.sent["sent_ts"]
    window = ((sent > cutoff - pd.Timedelta(days=WINDOW_DAYS)) & (sent <= cutoff)).to_numpy()
    rows = pd.Index(inputs.user_ids).get_indexer(inputs.sent["user_id"].to_numpy()[window])
    epoch = pd.Timestamp(0, tz="UTC")
    seconds = ((pd.to_datetime(sent[window], utc=True) - epoch) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    keep = rows >= 0
    rows, seconds = rows[keep], seconds[keep]
    order = np.lexsort((seconds, rows))
    rows, seconds = rows[order], seconds[order]
    position = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    out = np.zeros((len(inputs.user_ids), int(position.max()) + 1 if len(rows) else 0), dtype=np.int64)
    out[rows, position] = seconds
    return out


def send_hours(hours: np.ndarray) -> tuple[int, ...]:
    """The local hours that carried at least `MIN_HOUR_SHARE` of the pushes."""
    counts = np.bincount(np.asarray(hours, dtype=np.int64), minlength=24)
    return tuple(int(h) for h in np.flatnonzero(counts >= MIN_HOUR_SHARE * max(counts.sum(), 1)))


def _slice_logits(model: PushResponseModel, inputs: _Inputs, start: pd.Timestamp, end: pd.Timestamp,
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Logits and outcomes (known at `end`) of the pushes sent in (start, end]."""
    rows = ((inputs.pushes["sent_ts"] > start) & (inputs.pushes["sent_ts"] <= end)).to_numpy()
    part = inputs.pushes.loc[rows]
    users, items = model.user_rows(part["user_id"].to_numpy()), model.item_rows(part["content_id"].to_numpy())
    scores = None if inputs.scores is None else inputs.scores[rows]
    logits = model.logits(users, items, part["hour"].to_numpy(), part["recent"].to_numpy(), scores)
    outcomes = {"open": (part["opened_ts"].notna() & (part["opened_ts"] <= end)).to_numpy(dtype=np.float64),
                "mute": part["muted"].to_numpy(dtype=np.float64)}
    return logits, outcomes


def levelled(model: PushResponseModel, inputs: _Inputs, cutoff: pd.Timestamp, days: int,
             platt: Mapping[str, Platt]) -> dict[str, Platt]:
    """Each Platt map's slope, with the intercept that matches the mean prediction to the observed rate
    of `model`'s own latest `days` of training pushes, up to `cutoff` (`platt` unchanged when `days` is 0).

    Who is pushed drifts (cardholders who mute leave for good), so a model fitted on the whole log
    over-predicts its latest weeks, the more so the older its cutoff; an intercept taken from the
    earlier model's slice (the Platt map's own) carries that model's larger drift into the later one.
    On a 20k world's holdout: mean P(mute) 0.0066 that way, 0.0101 levelled, 0.0087 observed."""
    if not days:
        return dict(platt)
    logits, outcomes = _slice_logits(model, inputs, cutoff - pd.Timedelta(days=days), cutoff)
    return {t: Platt(p.slope, level_shift(p.slope * logits[t], outcomes[t]) or p.intercept)
            for t, p in platt.items()}


def with_user_hour(config: ResponseFitConfig, weight: float) -> ResponseFitConfig:
    """`config` with `weight` as the L2 weight of the open model's daily wave."""
    penalties = {target: dict(weights) for target, weights in config.penalties.items()}
    penalties["open"]["user_hour"] = float(weight)
    return replace(config, penalties=penalties)


def choose_open_fit(dataset: Dataset, inputs: _Inputs, validation_from: pd.Timestamp,
                    holdout_from: pd.Timestamp, config: ResponseFitConfig
                    ) -> tuple[dict[tuple[float, bool], float], PushResponseModel]:
    """Platt-mapped log-loss of the opens of the marketing pushes in (validation_from, holdout_from] for
    an open model fitted up to `validation_from` with each L2 weight of the daily wave in
    `config.user_hour_grid` (or the configured one), with and without the reminders' opens (unless
    `config.reminder_opens` fixes it): (weight, reminders) -> loss; and the open model of the lowest loss,
    which is the chosen settings' open model at `validation_from` (no need to fit it again).

    The weight sets how far a cardholder's few opens move their own hours off the population's; the
    log-loss after the Platt map scores the model's ordering of pushes, not its overall scale, which the
    map (slope and intercept) sets anyway. With `config.warm_start`, each fit starts from the previous
    weight's (strongest prior first), and the first weight with the reminders' opens from the first
    without: the solver then stops at the same optimum (within its tolerance) in fewer steps."""
    weights = config.user_hour_grid or (float(config.penalties["open"]["user_hour"]),)
    choices = (False, True) if config.reminder_opens is None else (bool(config.reminder_opens),)
    losses: dict[tuple[float, bool], float] = {}
    best: PushResponseModel | None = None
    first: PushResponseModel | None = None
    for reminders in choices:
        start = first if config.warm_start else None
        for weight in sorted(weights, reverse=True):
            candidate = replace(with_user_hour(config, weight), reminder_opens=reminders)
            model = _fit(dataset, inputs, validation_from, candidate, start, ("open",))
            logits, outcomes = _slice_logits(model, inputs, validation_from, holdout_from)
            y = outcomes["open"]
            predicted = np.clip(fit_platt(logits["open"], y).apply(logits["open"]), 1e-12, 1.0 - 1e-12)
            loss = float(-np.mean(y * np.log(predicted) + (1.0 - y) * np.log1p(-predicted)))
            if best is None or loss < min(losses.values()):
                best = model
            losses[(float(weight), reminders)] = loss
            first = first or model
            start = model if config.warm_start else None
    assert best is not None  # at least one weight and one choice
    return losses, best


def fit_response_models(dataset: Dataset, as_of: pd.Timestamp, config: ResponseFitConfig | None = None,
                        scorer: Scorer | None = None) -> tuple[PushResponseModel, ResponseFitReport]:
    """Fit, calibrate and evaluate the open and mute models (see the module docstring).

    Returns the model to publish (fitted up to `as_of` with `config.refit`, else up to the holdout) and
    its out-of-time report. `scorer` adds the ranking model's score of each pair as an input; it must
    not have learned from the outcomes of the pushes it scores (a ranking model trained on push opens
    and unopened pushes knows the answers of the training pushes, and the score's weight comes out far
    too large): fit it on spend, clicks and reads, or before the first push of the fit.
    """
    from threadpoolctl import threadpool_limits

    # the solver's vector products on one BLAS thread: OpenBLAS splits every dot product of more than
    # 10,000 coefficients over its threads, and on a busy machine the waits cost far more than the work
    # (one open fit on a 30k world: 7.6 -> 2.7 CPU s, the same optimum within the solver's tolerance)
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_response_models(dataset, as_of, config, scorer)


def _fit_response_models(dataset: Dataset, as_of: pd.Timestamp, config: ResponseFitConfig | None,
                         scorer: Scorer | None) -> tuple[PushResponseModel, ResponseFitReport]:
    config = config or ResponseFitConfig()
    as_of = utc_timestamp(as_of)
    holdout_from = as_of - pd.Timedelta(days=config.holdout_days)
    validation_from = holdout_from - pd.Timedelta(days=config.validation_days)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    inputs = _prepare(dataset, as_of, config, scorer)
    timings["prepare"] = time.perf_counter() - clock
    sent = inputs.pushes["sent_ts"]
    counts = {"train": int((sent <= validation_from).sum()),
              "validation": int(((sent > validation_from) & (sent <= holdout_from)).sum()),
              "holdout": int((sent > holdout_from).sum())}
    for name in ("validation", "holdout"):
        if not counts[name]:
            raise ResponseFitError(
                f"no marketing pushes in the {name} slice ({counts}); as of {as_of.isoformat()} with "
                f"{config.holdout_days} holdout and {config.validation_days} validation days: choose an "
                "as-of time inside the push log or shorter slices" + (
                    "" if config.decided_since is None else
                    f" (pushes the decision chose from {utc_timestamp(config.decided_since).isoformat()} on "
                    f"are not counted; the control share {config.control_share:g} is)"))

    losses: dict[tuple[float, bool], float] = {}
    chosen_open: PushResponseModel | None = None
    if len(config.user_hour_grid) > 1 or config.reminder_opens is None:
        clock = time.perf_counter()
        losses, chosen_open = choose_open_fit(dataset, inputs, validation_from, holdout_from, config)
        weight, reminders = min(losses, key=losses.__getitem__)
        config = replace(with_user_hour(config, weight), reminder_opens=reminders)
        timings["choose the open model's evidence"] = time.perf_counter() - clock
    elif config.user_hour_grid:
        config = with_user_hour(config, config.user_hour_grid[0])
    level = config.level_days
    clock = time.perf_counter()
    if chosen_open is None:
        early = _fit(dataset, inputs, validation_from, config)
    else:
        early = _fit(dataset, inputs, validation_from, config, targets=("mute",))
        early.coef["open"], early.wave_precision = chosen_open.coef["open"], chosen_open.wave_precision
    logits, outcomes = _slice_logits(early, inputs, validation_from, holdout_from)
    platt = {t: fit_platt(logits[t], outcomes[t]) for t in TARGETS}
    timings["fit before validation"] = time.perf_counter() - clock

    clock = time.perf_counter()
    scored = _fit(dataset, inputs, holdout_from, config, early if config.warm_start else None)
    platt = levelled(scored, inputs, holdout_from, level, platt)
    scored.calibration.update(platt)
    logits, outcomes = _slice_logits(scored, inputs, holdout_from, as_of)
    base = {"open": scored.info["open_rate"], "mute": scored.info["mute_rate"]}
    holdout = {t: calibration(platt[t].apply(logits[t]), outcomes[t], base[t], config.bins) for t in TARGETS}
    raw = {t: calibration(sigmoid(logits[t]), outcomes[t], base[t], config.bins) for t in TARGETS}
    timings["fit before holdout"] = time.perf_counter() - clock

    model = scored
    if config.refit:
        clock = time.perf_counter()
        model = _fit(dataset, inputs, as_of, config, scored if config.warm_start else None)
        model.calibration.update(levelled(model, inputs, as_of, level,
                                          {t: fit_platt(logits[t], outcomes[t]) for t in TARGETS}))
        timings["refit"] = time.perf_counter() - clock
    model.info.update({"holdout_from": holdout_from.isoformat(), "as_of": as_of.isoformat(),
                       "holdout_open_ece": holdout["open"].ece, "holdout_mute_ece": holdout["mute"].ece})
    report = ResponseFitReport(as_of=as_of, validation_from=validation_from, holdout_from=holdout_from,
                               pushes=counts, holdout=holdout, holdout_raw=raw,
                               platt={t: (p.slope, p.intercept) for t, p in platt.items()}, timings=timings,
                               uses_score=scorer is not None, open_fit_losses=losses,
                               user_hour_penalty=float(config.penalties["open"]["user_hour"]),
                               reminder_opens=bool(config.reminder_opens))
    logger.info("%s", report.summary())
    return model, report


def bundle_scorer(bundle: Any, dataset: Dataset, as_of: pd.Timestamp) -> Scorer:
    """A `Scorer` from a ranking model bundle: its factor dot products (0 for pairs it does not know).

    Give a bundle fitted without the push log (see `fit_response_models`)."""
    def score(user_ids: np.ndarray, content_ids: np.ndarray) -> np.ndarray:
        distinct, rows = np.unique(np.asarray(user_ids).astype(str), return_inverse=True)
        features = feature_builder(bundle).transform_users(dataset, as_of, distinct.astype(object))
        factors = bundle.model.user_factors(bundle.users.index_of(distinct.astype(object)), features)
        items = bundle.items.index_of(np.asarray(content_ids).astype(str).astype(object))
        item_factors = bundle.model.item_factors()
        out = np.einsum("ij,ij->i", factors[rows], item_factors[np.maximum(items, 0)])
        return np.where(items >= 0, out, 0.0)

    return score


def fit_for_training(dataset: Dataset, as_of: pd.Timestamp, echo: Callable[[str], None],
                     config: ResponseFitConfig | None = None
                     ) -> tuple[PushResponseModel | None, ResponseFitReport | None]:
    """The response models for `recsys train`: fitted, or (None, None) with the reason echoed when the
    push log cannot support them (the bundle then ranks without a decision model)."""
    try:
        model, report = fit_response_models(dataset, as_of, config)
    except ResponseFitError as error:
        echo(f"  response models not fitted: {error}")
        return None, None
    if config is not None and config.decided_since is not None:
        echo(f"  response models fitted on {sum(report.pushes.values()):,} pushes the decision did not "
             f"choose: those before {utc_timestamp(config.decided_since).isoformat()} and the control share "
             f"{config.control_share:g}'s after")
    for target in TARGETS:
        echo(f"  P({target}) holdout: {report.holdout[target].summary()}")
    chosen = " (chosen on the validation slice)" if report.open_fit_losses else ""
    echo(f"  P(open) hours: daily-wave L2 weight {report.user_hour_penalty:g}, reminders' opens "
         f"{'used' if report.reminder_opens else 'not used'}{chosen}")
    return model, report


def kept_response_models(uri: str, tracking_uri: str) -> PushResponseModel:
    """The response models of the bundle at `uri` (a bundle path, or a models:/ or runs:/ URI in the store
    at `tracking_uri`), for a training run that refits the ranking model and keeps them.

    After the engine has decided a month, the push log's latest weeks are the pushes it chose, for a taste
    the response models do not see; refitted on them, their terms take in that choice (README, "What the
    retrain at 20,000 cardholders changes"), so a retrain may keep the champion's response models."""
    from recsys.bundle import ModelBundle
    from training.tracking import resolved_bundle

    with resolved_bundle(uri, tracking_uri) as path:
        response = ModelBundle.load(path).response
    if response is None:
        raise ResponseFitError(f"the bundle at {uri} has no response models to keep: train without "
                               "--response-from, or give a bundle trained with a push log")
    return response


def log_report(run: Any, report: ResponseFitReport) -> None:
    """Log `report` on a `training.tracking.Tracker` run: its figures and the reliability curves."""
    run.log_metrics(report.metrics())
    run.log_dict({"as_of": report.as_of.isoformat(), "holdout_from": report.holdout_from.isoformat(),
                  "pushes": report.pushes, "platt": {t: list(p) for t, p in report.platt.items()},
                  "holdout": {t: c.to_dict() for t, c in report.holdout.items()},
                  "holdout_raw": {t: c.to_dict() for t, c in report.holdout_raw.items()}},
                 "response/calibration.json")
