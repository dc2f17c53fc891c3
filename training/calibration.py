"""Calibration metrics of predicted probabilities against 0/1 outcomes, as pure functions."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from recsys import metrics

EPS = 1e-12


def _check(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"predictions {p.shape} and outcomes {y.shape} must be 1-d of the same length")
    if len(p) and (np.nanmin(p) < 0 or np.nanmax(p) > 1 or np.isnan(p).any()):
        raise ValueError("predictions must be probabilities in [0, 1]")
    return p, y


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood (natural log); nan for no rows."""
    p, y = _check(p, y)
    if not len(p):
        return float("nan")
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def brier(p: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of the probabilities; nan for no rows."""
    p, y = _check(p, y)
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")


def auc(p: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); nan when one class is absent."""
    p, y = _check(p, y)
    return float(metrics.weighted_auc(p, y > 0.5)[0])


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float  # smallest prediction in the bin
    upper: float  # largest prediction in the bin
    count: int
    mean_predicted: float
    observed_rate: float


def reliability_curve(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[ReliabilityBin]:
    """Predictions sorted into `bins` bins of equal count; mean prediction beside observed rate per bin.

    Equal-count bins, because push probabilities crowd below 0.1 where equal-width bins would put
    almost every push in one bin.
    """
    p, y = _check(p, y)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    order = np.argsort(p, kind="stable")
    out = []
    for chunk in np.array_split(order, min(bins, len(p))) if len(p) else []:
        out.append(ReliabilityBin(float(p[chunk].min()), float(p[chunk].max()), len(chunk),
                                  float(p[chunk].mean()), float(y[chunk].mean())))
    return out


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Count-weighted mean |mean prediction - observed rate| over the reliability curve's bins."""
    curve = reliability_curve(p, y, bins)
    total = sum(b.count for b in curve)
    if not total:
        return float("nan")
    return float(sum(b.count * abs(b.mean_predicted - b.observed_rate) for b in curve) / total)


@dataclass(frozen=True)
class Calibration:
    """How well probabilities `p` forecast outcomes, beside the constant forecast `base_rate`."""

    n: int
    positives: int
    observed_rate: float
    base_rate: float  # the constant forecast (the training period's rate)
    mean_predicted: float
    log_loss: float
    base_log_loss: float
    brier: float
    base_brier: float
    ece: float
    ece_noise: float  # mean ECE of outcomes drawn from `p` itself: a calibrated model's floor at this n
    auc: float
    curve: list[ReliabilityBin]

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"n={self.n:,} rate={self.observed_rate:.4f} predicted={self.mean_predicted:.4f} "
                f"log-loss={self.log_loss:.5f} (base {self.base_log_loss:.5f}) brier={self.brier:.6f} "
                f"(base {self.base_brier:.6f}) ECE={self.ece:.4f} (noise {self.ece_noise:.4f}) "
                f"AUC={self.auc:.3f}")


def calibration(p: np.ndarray, y: np.ndarray, base_rate: float, bins: int = 10) -> Calibration:
    """Every figure of `Calibration` for predictions `p` of outcomes `y`."""
    p, y = _check(p, y)
    constant = np.full(len(p), float(base_rate))
    return Calibration(
        n=len(p), positives=int(y.sum()), observed_rate=float(y.mean()) if len(y) else float("nan"),
        base_rate=float(base_rate), mean_predicted=float(p.mean()) if len(p) else float("nan"),
        log_loss=log_loss(p, y), base_log_loss=log_loss(constant, y), brier=brier(p, y),
        base_brier=brier(constant, y), ece=expected_calibration_error(p, y, bins),
        ece_noise=ece_noise_floor(p, bins), auc=auc(p, y), curve=reliability_curve(p, y, bins),
    )


def ece_noise_floor(p: np.ndarray, bins: int = 10, draws: int = 20, seed: int = 0) -> float:
    """Mean ECE when outcomes are drawn from `p` itself (seeded): what sampling noise alone gives."""
    p = np.asarray(p, dtype=np.float64)
    if not len(p):
        return float("nan")
    rng = np.random.default_rng(seed)
    return float(np.mean([expected_calibration_error(p, rng.random(len(p)) < p, bins) for _ in range(draws)]))
