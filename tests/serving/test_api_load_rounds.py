"""`benchmarks/api_load.py`'s scheduler-wave rounds: each figure the rounds' median, ratios per round."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import api_load  # noqa: E402


def wave(rate: float, ratio: float, p99: float, api_ms: float, shares: list[float],
         beside: float | None) -> dict:
    return {"decisions_per_s": rate, "p50_ms": p99 / 2, "p99_ms": p99, "max_ms": p99 + 1, "ratio": ratio,
            "in_flight": 2, "batches": 10, "cpu_ms_per_batch": {"api": api_ms, "redis": 10.0, "client": 2.0},
            "api_cpu_shares": shares, "beside_share": beside}


def test_rounds_report_medians_and_every_round_ratio() -> None:
    rounds = [wave(20_000, 0.40, 150, 50, [0.6, 0.4], 0.3), wave(30_000, 0.50, 120, 40, [0.5, 0.5], None),
              wave(25_000, 0.45, 90, 45, [0.55, 0.45], 0.2)]
    row = api_load.median_wave(rounds)
    assert row["decisions_per_s"] == 25_000 and row["ratio"] == 0.45 and row["p99_ms"] == 120
    assert row["round_ratios"] == [0.40, 0.50, 0.45]
    assert row["cpu_ms_per_batch"] == {"api": 45, "redis": 10.0, "client": 2.0}
    assert row["batches"] == 30 and row["in_flight"] == 2
    assert row["beside_share"] == 0.25  # the rounds that counted it
    assert row["api_cpu_shares"] == [0.55, 0.45]  # from the median-throughput round
